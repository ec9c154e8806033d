"""Rich conversations on Telegram over real HTTP, on SQLite and PostgreSQL: buttons, presses
(callback queries answered, pressed messages edited), formatting, images and attachments,
against the fake Bot API (which refuses what Telegram refuses)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from portabot.conversation.engine import Context, Flow, State
from portabot.conversation.routing import command, press, text
from portabot.messages import Message
from portabot.replies import Button, bold, code, link
from portabot.testing.fakes import Failure, FakeTelegram, ImageServer, serve
from tests.conftest import SECRET, TOKEN, BotFactory, post_telegram, query, run, telegram_update
from tests.test_poll import polling

ANN = {"id": 1001, "is_bot": False, "first_name": "Ann", "username": "ann"}
CAT = "https://img.example/cat.png"
SIZES = [[Button("Small", "size:s"), Button("Large", "size:l")]]
MENU = [*SIZES, [Button("Docs", url="https://example.org/docs")]]
LONG = " ".join(f"word{n}" for n in range(1700))[:10_000]
FORUM = {"id": -1001934567890, "title": "Portabot forum", "is_forum": True, "type": "supergroup"}


class Menu(State):
    """A small menu: buttons with payloads and a link, a press that edits the menu and says so,
    a formatted echo, an image, a reply longer than one message."""

    name = "menu"

    @command("menu")
    def menu(self, ctx: Context, message: Message) -> None:
        ctx.reply("Pick a ", bold("size"), buttons=MENU)

    @press(r"size:(s|l)")
    def size(self, ctx: Context, message: Message) -> None:
        chosen = {"s": "small", "l": "large"}[ctx.matched[1]]
        ctx.notice("Saved")
        ctx.reply("You chose ", bold(chosen), edit=True, buttons=SIZES)
        ctx.reply(f"Noted: {message.payload}")

    @press("picture")
    def picture(self, ctx: Context, message: Message) -> None:
        ctx.reply("Here it is", image=CAT, edit=True)

    @press("again")
    def again(self, ctx: Context, message: Message) -> None:
        ctx.reply("Still a ", bold("cat"), edit=True, buttons=[[Button("Again", "again")]])

    @press()
    def other(self, ctx: Context, message: Message) -> None:
        pass  # answered without a notice (the spinner stops), nothing said

    @command("cat")
    def cat(self, ctx: Context, message: Message) -> None:
        ctx.reply("A ", bold("cat"), image=CAT, buttons=[[Button("Again", "again")]])

    @command("bigcat")
    def big_cat(self, ctx: Context, message: Message) -> None:
        ctx.reply("m" * 1500, image=CAT)

    @command("long")
    def long(self, ctx: Context, message: Message) -> None:
        ctx.reply(LONG, buttons=[[Button("More", "more")]])

    @command("link")
    def link(self, ctx: Context, message: Message) -> None:
        ctx.reply("See ", link("the docs", "https://example.org/a?b=1&c=2"), " or ", code("x<y"))

    @command("describe")
    def describe_command(self, ctx: Context, message: Message) -> None:
        ctx.reply(describe(message))

    @text()
    def echo(self, ctx: Context, message: Message) -> None:
        ctx.reply("You said: ", bold(message.text))

    def handle(self, ctx: Context, message: Message) -> None:
        ctx.reply(describe(message))


def describe(message: Message) -> str:
    found = [f"{message.kind.value} {message.text!r}"]
    for a in message.attachments:
        found.append(
            f"{a.kind.value} {a.file_id} {a.name} {a.mime_type} {a.latitude} {a.longitude}"
        )
    return "; ".join(found)


def menu_bot(start_bot: BotFactory) -> httpx.Client:
    return start_bot(flow=Flow([Menu()], initial="menu"))


def call(fake: FakeTelegram, method: str, parameters: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{fake.url}/bot{TOKEN}/{method}", json=parameters, timeout=10)


def carry_out(fake: FakeTelegram, response: httpx.Response) -> dict[str, Any]:
    """What Telegram does with a webhook response carrying a method: calls it (here, on the fake,
    which refuses what Telegram would); returns its result. The call is not one the bot made:
    it is not left in `fake.calls`."""
    assert response.status_code == 200, response.text
    body = dict(response.json())
    method = body.pop("method")
    made = len(fake.calls)
    answer = call(fake, method, body).json()
    assert answer["ok"], answer
    del fake.calls[made:]
    result: dict[str, Any] = answer["result"]
    return result


def pressed(
    update_id: int,
    data: str | None,
    message: dict[str, Any] | None,
    *,
    query_id: str | None = None,
    **more: Any,
) -> dict[str, Any]:
    """A callback query as Telegram sends it: Ann pressed a button under `message`."""
    found: dict[str, Any] = {
        "id": query_id or f"4382{update_id}",
        "from": ANN,
        "chat_instance": "-6412785263",
        **more,
    }
    if data is not None:
        found["data"] = data
    if message is not None:
        found["message"] = message
    return {"update_id": update_id, "callback_query": found}


def menu_message(fake: FakeTelegram, bot: httpx.Client, update_id: int = 1) -> dict[str, Any]:
    """Ann asks for the menu; Telegram sends the webhook response's reply: the message sent."""
    return carry_out(fake, post_telegram(bot, telegram_update(update_id, "/menu", user_id=1001)))


def outbox(url: str) -> list[dict[str, Any]]:
    return query(url, "SELECT text, sent_at, attempts, last_error FROM outbox ORDER BY id")


def test_a_menu_goes_out_with_its_keyboard_and_html(
    start_bot: BotFactory, fake_telegram: FakeTelegram
) -> None:
    response = post_telegram(menu_bot(start_bot), telegram_update(1, "/menu", user_id=1001))
    assert response.json() == {
        "method": "sendMessage",
        "chat_id": 1001,
        "text": "Pick a <b>size</b>",
        "parse_mode": "HTML",
        "reply_markup": {
            "inline_keyboard": [
                [
                    {"text": "Small", "callback_data": "size:s"},
                    {"text": "Large", "callback_data": "size:l"},
                ],
                [{"text": "Docs", "url": "https://example.org/docs"}],
            ]
        },
    }
    sent = carry_out(fake_telegram, response)  # Telegram takes it as it is
    assert sent["text"] == "Pick a size"
    assert fake_telegram.refused == []


def test_a_persons_text_is_escaped_in_html(
    start_bot: BotFactory, fake_telegram: FakeTelegram
) -> None:
    bot = menu_bot(start_bot)
    response = post_telegram(bot, telegram_update(1, "<b>&</b> & <i>", user_id=1001))
    body = response.json()
    assert body["parse_mode"] == "HTML"
    assert body["text"] == "You said: <b>&lt;b&gt;&amp;&lt;/b&gt; &amp; &lt;i&gt;</b>"
    assert carry_out(fake_telegram, response)["text"] == "You said: <b>&</b> & <i>"
    links = post_telegram(bot, telegram_update(2, "/link", user_id=1001))
    assert links.json()["text"] == (
        'See <a href="https://example.org/a?b=1&amp;c=2">the docs</a> or <code>x&lt;y</code>'
    )
    assert carry_out(fake_telegram, links)["text"] == "See the docs or x<y"
    plain = post_telegram(bot, telegram_update(3, "/describe", user_id=1001)).json()
    assert "parse_mode" not in plain and "reply_markup" not in plain  # plain text stays plain


@pytest.fixture
def images(fake_telegram: FakeTelegram) -> Iterator[ImageServer]:
    """An image host Telegram fetches photo URLs from (the fake refuses a photo it cannot)."""
    server = ImageServer()
    with serve(server.app()) as url:
        server.url = url
        fake_telegram.photo_hosts["https://img.example/"] = f"{url}/"
        yield server


def test_an_image_reply_is_send_photo_with_its_caption(
    start_bot: BotFactory, fake_telegram: FakeTelegram, images: ImageServer
) -> None:
    response = post_telegram(menu_bot(start_bot), telegram_update(1, "/cat", user_id=1001))
    # Through the API, not in the response: Telegram would say nothing of an image it could
    # not fetch for a response.
    assert response.status_code == 200 and response.content == b""
    assert fake_telegram.sent("sendPhoto") == [
        {
            "chat_id": 1001,
            "photo": CAT,
            "caption": "A <b>cat</b>",
            "parse_mode": "HTML",
            "reply_markup": {"inline_keyboard": [[{"text": "Again", "callback_data": "again"}]]},
        }
    ]
    [sent] = fake_telegram.messages(1001)
    assert sent.caption == "A <b>cat</b>" and sent.photo  # as sent, in its parse_mode
    assert images.fetches("/cat.png") == 1


def test_an_image_with_a_long_text_has_a_caption_then_the_rest(
    start_bot: BotFactory, fake_telegram: FakeTelegram, images: ImageServer, database_url: str
) -> None:
    response = post_telegram(menu_bot(start_bot), telegram_update(1, "/bigcat", user_id=1001))
    [photo] = fake_telegram.sent("sendPhoto")  # the first part, through the API
    assert photo["photo"] == CAT and len(photo["caption"]) == 1024
    assert "parse_mode" not in photo
    rest = response.json()
    assert rest["method"] == "sendMessage" and "photo" not in rest
    assert photo["caption"] + rest["text"] == "m" * 1500
    assert [r["sent_at"] is not None for r in outbox(database_url)] == [True]


def test_a_press_comes_back_to_the_flow_answered_inline_and_edits_the_menu(
    start_bot: BotFactory, fake_telegram: FakeTelegram, database_url: str
) -> None:
    bot = menu_bot(start_bot)
    menu = menu_message(fake_telegram, bot)
    response = post_telegram(bot, pressed(2, "size:s", menu, query_id="77001"))
    # The answer rides in the response (the toast shows at once)...
    assert response.json() == {
        "method": "answerCallbackQuery",
        "callback_query_id": "77001",
        "text": "Saved",
    }
    # ...the edit and the further reply go through the API during the request.
    assert fake_telegram.sent("editMessageText") == [
        {
            "chat_id": 1001,
            "message_id": menu["message_id"],
            "text": "You chose <b>small</b>",
            "parse_mode": "HTML",
            "reply_markup": {
                "inline_keyboard": [
                    [
                        {"text": "Small", "callback_data": "size:s"},
                        {"text": "Large", "callback_data": "size:l"},
                    ]
                ]
            },
        }
    ]
    assert fake_telegram.sent() == [{"chat_id": 1001, "text": "Noted: size:s"}]
    [edited, noted] = fake_telegram.messages(1001)
    assert edited.text == "You chose <b>small</b>" and edited.edits == 1
    assert noted.text == "Noted: size:s"
    carry_out(fake_telegram, response)  # Telegram takes the answer
    assert [r["sent_at"] is not None for r in outbox(database_url)] == [True, True]


def test_pressing_the_same_button_again_is_not_modified_and_done(
    start_bot: BotFactory, fake_telegram: FakeTelegram, database_url: str
) -> None:
    bot = menu_bot(start_bot)
    menu = menu_message(fake_telegram, bot)
    post_telegram(bot, pressed(2, "size:s", menu))
    again = post_telegram(bot, pressed(3, "size:s", menu))
    assert again.json()["callback_query_id"] == "43823"
    refused = [(c.method, why) for c, why in fake_telegram.refused]
    assert len(refused) == 1  # tried once, not again
    assert refused[0][0] == "editMessageText" and "message is not modified" in refused[0][1]
    assert len(fake_telegram.sent("editMessageText")) == 1
    rows = outbox(database_url)
    assert len(rows) == 4
    assert all(r["sent_at"] is not None and r["last_error"] is None for r in rows)
    assert [r["attempts"] for r in rows] == [1, 1, 1, 1]


def test_a_press_delivered_three_times_at_once_is_answered_and_handled_once(
    start_bot: BotFactory, fake_telegram: FakeTelegram, database_url: str
) -> None:
    bot = menu_bot(start_bot)
    menu = menu_message(fake_telegram, bot)
    update = pressed(2, "size:l", menu, query_id="99")

    async def three_copies() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=str(bot.base_url), timeout=30) as client:
            headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
            return await asyncio.gather(
                *(client.post("/webhooks/telegram", json=update, headers=headers) for _ in range(3))
            )

    responses = run(three_copies())
    assert [r.status_code for r in responses] == [200, 200, 200]
    answers = [r.json() for r in responses if r.content]
    assert answers == [
        {"method": "answerCallbackQuery", "callback_query_id": "99", "text": "Saved"}
    ]
    assert [e["text"] for e in fake_telegram.sent("editMessageText")] == ["You chose <b>large</b>"]
    assert fake_telegram.sent() == [{"chat_id": 1001, "text": "Noted: size:l"}]
    assert fake_telegram.refused == []
    assert len(outbox(database_url)) == 2


def test_a_long_reply_arrives_in_order_in_pieces_with_the_buttons_on_the_last(
    start_bot: BotFactory, fake_telegram: FakeTelegram
) -> None:
    assert len(LONG) == 10_000
    response = post_telegram(menu_bot(start_bot), telegram_update(1, "/long", user_id=1001))
    through_api = fake_telegram.sent()
    last = response.json()
    assert last["method"] == "sendMessage"
    pieces = [*through_api, last]
    assert len(pieces) == 3
    assert all(len(p["text"]) <= 4096 for p in pieces)
    assert "".join(p["text"] for p in pieces) == LONG
    assert [("reply_markup" in p) for p in pieces] == [False, False, True]
    assert last["reply_markup"] == {
        "inline_keyboard": [[{"text": "More", "callback_data": "more"}]]
    }
    carry_out(fake_telegram, response)  # the response reaches the chat after the API's messages
    assert "".join(m.text or "" for m in fake_telegram.messages(1001)) == LONG


def test_a_press_on_a_photo_edits_its_caption(
    start_bot: BotFactory, fake_telegram: FakeTelegram, images: ImageServer
) -> None:
    bot = menu_bot(start_bot)
    post_telegram(bot, telegram_update(1, "/cat", user_id=1001))  # sent through the API
    photo = fake_telegram.messages(1001)[0].api("A cat")  # as Telegram shows it in a press
    response = post_telegram(bot, pressed(2, "again", photo))
    assert response.json() == {"method": "answerCallbackQuery", "callback_query_id": "43822"}
    assert fake_telegram.sent("editMessageCaption") == [
        {
            "chat_id": 1001,
            "message_id": photo["message_id"],
            "caption": "Still a <b>cat</b>",
            "parse_mode": "HTML",
            "reply_markup": {"inline_keyboard": [[{"text": "Again", "callback_data": "again"}]]},
        }
    ]
    assert fake_telegram.messages(1001)[0].caption == "Still a <b>cat</b>"
    assert fake_telegram.sent("editMessageText") == []


def test_an_edit_with_an_image_of_a_text_message_is_a_new_photo(
    start_bot: BotFactory, fake_telegram: FakeTelegram, images: ImageServer
) -> None:
    bot = menu_bot(start_bot)
    menu = menu_message(fake_telegram, bot)
    post_telegram(bot, pressed(2, "picture", menu))
    assert fake_telegram.sent("sendPhoto") == [
        {"chat_id": 1001, "photo": CAT, "caption": "Here it is"}
    ]
    assert fake_telegram.sent("editMessageText") == []
    assert fake_telegram.refused == []


def test_a_press_on_a_message_too_old_to_see_replies_with_a_new_message(
    start_bot: BotFactory, fake_telegram: FakeTelegram
) -> None:
    bot = menu_bot(start_bot)
    inaccessible = {"chat": {"id": 1001, "type": "private"}, "message_id": 5, "date": 0}
    response = post_telegram(bot, pressed(2, "size:s", inaccessible))
    assert response.json()["method"] == "answerCallbackQuery"
    assert fake_telegram.sent("editMessageText") == []
    assert [s["text"] for s in fake_telegram.sent()] == ["You chose <b>small</b>", "Noted: size:s"]


def test_an_edit_of_a_deleted_message_becomes_a_new_message(
    start_bot: BotFactory, fake_telegram: FakeTelegram, database_url: str
) -> None:
    bot = menu_bot(start_bot)
    bot_user = {"id": 1, "is_bot": True, "first_name": "Test"}
    chat = {"id": 1001, "type": "private"}
    gone = {"message_id": 404, "from": bot_user, "chat": chat, "date": 1_700_000_000, "text": "P"}
    post_telegram(bot, pressed(2, "size:s", gone))
    assert "message to edit not found" in fake_telegram.refused[0][1]
    assert [s["text"] for s in fake_telegram.sent()] == ["You chose <b>small</b>", "Noted: size:s"]
    assert all(r["last_error"] is None for r in outbox(database_url))


def test_presses_without_data_or_message_are_still_answered(
    start_bot: BotFactory, fake_telegram: FakeTelegram
) -> None:
    bot = menu_bot(start_bot)
    menu = menu_message(fake_telegram, bot)
    game = post_telegram(bot, pressed(2, None, menu, game_short_name="snake"))
    assert game.json() == {"method": "answerCallbackQuery", "callback_query_id": "43822"}
    inline = post_telegram(bot, pressed(3, "size:s", None, inline_message_id="AAAA-inline"))
    assert inline.json()["text"] == "Saved"
    # No chat of ours to edit in: the replies go to Ann's own chat.
    assert [s["chat_id"] for s in fake_telegram.sent()] == [1001, 1001]
    assert fake_telegram.sent("editMessageText") == []


def test_callback_data_over_64_bytes_is_refused(start_bot: BotFactory, database_url: str) -> None:
    response = post_telegram(menu_bot(start_bot), pressed(2, "é" * 33, None))
    assert response.status_code == 400
    assert "callback_query.data" in response.json()["error"]
    assert "64 bytes" in response.json()["error"]
    assert query(database_url, "SELECT update_id FROM updates") == []


ATTACHMENTS = {
    "photo": (
        {
            "photo": [
                {"file_id": "AgAD-small", "file_unique_id": "s", "width": 90, "height": 67},
                {"file_id": "AgAD-large", "file_unique_id": "l", "width": 1280, "height": 960},
                {"file_id": "AgAD-mid", "file_unique_id": "m", "width": 320, "height": 240},
            ],
            "caption": "our cat",
        },
        "photo 'our cat'; photo AgAD-large None None None None",
    ),
    "document": (
        {
            "document": {
                "file_id": "BQAD-doc",
                "file_unique_id": "d",
                "file_name": "report.pdf",
                "mime_type": "application/pdf",
                "file_size": 5000,
            }
        },
        "document ''; document BQAD-doc report.pdf application/pdf None None",
    ),
    "video": (
        {
            "video": {
                "file_id": "BAAD-vid",
                "file_unique_id": "v",
                "width": 1,
                "height": 1,
                "duration": 3,
                "mime_type": "video/mp4",
            }
        },
        "video ''; video BAAD-vid None video/mp4 None None",
    ),
    "audio": (
        {
            "audio": {
                "file_id": "CQAD-aud",
                "file_unique_id": "a",
                "duration": 200,
                "file_name": "song.mp3",
                "mime_type": "audio/mpeg",
            }
        },
        "audio ''; audio CQAD-aud song.mp3 audio/mpeg None None",
    ),
    "voice": (
        {
            "voice": {
                "file_id": "AwAD-voice",
                "file_unique_id": "o",
                "duration": 2,
                "mime_type": "audio/ogg",
            }
        },
        "voice ''; voice AwAD-voice None audio/ogg None None",
    ),
    "sticker": (
        {
            "sticker": {
                "file_id": "CAAD-stk",
                "file_unique_id": "k",
                "type": "regular",
                "width": 512,
                "height": 512,
                "is_animated": False,
                "is_video": False,
                "emoji": "😺",
            }
        },
        "sticker ''; sticker CAAD-stk None None None None",
    ),
    "location": (
        {"location": {"latitude": 59.93863, "longitude": 30.31413}},
        "location ''; location  None None 59.93863 30.31413",
    ),
    "a_command_in_a_caption": (
        {
            "photo": [{"file_id": "AgAD-x", "file_unique_id": "x", "width": 1, "height": 1}],
            "caption": "/describe",
        },
        "command '/describe'; photo AgAD-x None None None None",
    ),
    "a_poll": (
        {
            "poll": {
                "id": "1",
                "question": "?",
                "options": [],
                "total_voter_count": 0,
                "is_closed": False,
                "is_anonymous": True,
                "type": "regular",
                "allows_multiple_answers": False,
            }
        },
        "text ''",
    ),
    "a_dice": ({"dice": {"emoji": "🎲", "value": 4}}, "text ''"),
}


@pytest.mark.parametrize(("fields", "described"), ATTACHMENTS.values(), ids=ATTACHMENTS)
def test_attachments_reach_the_flow_as_their_kinds(
    start_bot: BotFactory, fields: dict[str, Any], described: str
) -> None:
    response = post_telegram(menu_bot(start_bot), telegram_update(1, None, user_id=1001, **fields))
    assert response.json()["text"] == described


@pytest.mark.parametrize(
    "fields",
    [
        {"photo": [{"file_id": "", "width": 1, "height": 1}]},
        {"document": {"file_id": "x" * 513}},
        {"location": {"latitude": 91.0, "longitude": 0}},
        {"location": {"latitude": "59.9", "longitude": 30.3}},
    ],
    ids=["empty-file-id", "long-file-id", "latitude-out-of-range", "latitude-a-string"],
)
def test_a_malformed_attachment_is_refused(
    start_bot: BotFactory, database_url: str, fields: dict[str, Any]
) -> None:
    response = post_telegram(menu_bot(start_bot), telegram_update(1, None, **fields))
    assert response.status_code == 400
    assert response.json()["error"].startswith("not a Telegram update: message.")
    assert query(database_url, "SELECT update_id FROM updates") == []


def in_topic(message: dict[str, Any], thread: int = 42) -> dict[str, Any]:
    return {**message, "message_thread_id": thread, "is_topic_message": True}


def test_a_menu_and_its_press_in_a_forum_topic_stay_in_the_topic(
    start_bot: BotFactory, fake_telegram: FakeTelegram
) -> None:
    bot = menu_bot(start_bot)
    asked = {"message_id": 10, "from": ANN, "chat": FORUM, "date": 1_700_000_000, "text": "/menu"}
    response = post_telegram(bot, {"update_id": 1, "message": in_topic(asked)})
    body = response.json()
    assert body["message_thread_id"] == 42 and body["chat_id"] == FORUM["id"]
    menu = in_topic(carry_out(fake_telegram, response))
    post_telegram(bot, pressed(2, "size:s", menu))
    [edit] = fake_telegram.sent("editMessageText")
    assert edit["chat_id"] == FORUM["id"] and "message_thread_id" not in edit
    assert fake_telegram.sent() == [
        {"chat_id": FORUM["id"], "message_thread_id": 42, "text": "Noted: size:s"}
    ]


def test_a_photo_to_a_group_that_became_a_supergroup_follows_it(
    start_bot: BotFactory, fake_telegram: FakeTelegram, images: ImageServer
) -> None:
    old, new = -4098765432, -1002098765432
    upgraded = {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: group chat was upgraded to a supergroup chat",
        "parameters": {"migrate_to_chat_id": new},
    }
    fake_telegram.failures.append(Failure(400, upgraded, "sendPhoto"))
    update = telegram_update(1, "/bigcat", chat_id=old, chat_type="group")
    post_telegram(menu_bot(start_bot), update)
    assert [call.payload["chat_id"] for call in fake_telegram.failed] == [old]
    [photo] = fake_telegram.sent("sendPhoto")
    assert photo["chat_id"] == new and photo["photo"] == CAT


PRESS_FLOW = """
from portabot.conversation.engine import Flow, State
from portabot.conversation.routing import press
from portabot.replies import Button


class Menu(State):
    name = "menu"

    @press(r"size:(s|l)")
    def size(self, ctx, message):
        ctx.notice("Saved")
        ctx.reply(f"You chose {ctx.matched[1]}", edit=True, buttons=[[Button("Small", "size:s")]])


flow = Flow([Menu()], initial="menu")
"""


def test_polling_asks_for_presses_and_answers_them_through_the_api(
    tmp_path: Path, database_url: str, fake_telegram: FakeTelegram
) -> None:
    (tmp_path / "pressing.py").write_text(PRESS_FLOW, encoding="utf-8")
    keyboard = {"inline_keyboard": [[{"text": "Small", "callback_data": "size:s"}]]}
    menu = call(
        fake_telegram, "sendMessage", {"chat_id": 1001, "text": "Pick", "reply_markup": keyboard}
    ).json()["result"]
    # A second press, which Telegram no longer takes an answer to (too old): nothing to do.
    assert call(fake_telegram, "answerCallbackQuery", {"callback_query_id": "556"}).is_success
    fake_telegram.push(
        pressed(1, "size:s", menu, query_id="555"), pressed(2, "size:s", menu, query_id="556")
    )
    env = {"DATABASE_URL": database_url, "BOT_FLOW": "pressing:flow"}
    with polling(tmp_path, fake_telegram, **env) as poller:
        poller.wait_for(lambda: len(fake_telegram.refused) == 2)
        poller.stop()
    assert fake_telegram.answers() == [
        {"callback_query_id": "556"},  # the test's own
        {"callback_query_id": "555", "text": "Saved"},
    ]
    assert fake_telegram.sent("editMessageText") == [
        {"chat_id": 1001, "message_id": 1, "text": "You chose s", "reply_markup": keyboard}
    ]
    refused = sorted((c.method, why.split(":")[0]) for c, why in fake_telegram.refused)
    assert refused == [
        (
            "answerCallbackQuery",
            "query is too old and response timeout expired or query ID is invalid",
        ),
        ("editMessageText", "message is not modified"),
    ]  # each tried once
    rows = query(database_url, "SELECT text, sent_at, attempts, last_error FROM outbox ORDER BY id")
    assert [(r["sent_at"] is not None, r["attempts"]) for r in rows] == [
        (True, 1), (True, 1), (False, 1), (True, 1)
    ]  # fmt: skip
    assert "query is too old" in rows[2]["last_error"]
    asked = [c.payload["allowed_updates"] for c in fake_telegram.calls if c.method == "getUpdates"]
    assert asked and all("callback_query" in a for a in asked)
    assert "stopped: 2 handled, 0 seen before" in poller.output
