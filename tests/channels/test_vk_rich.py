"""VK's side of rich conversations over real HTTP, on SQLite and PostgreSQL: inline keyboards,
presses (callback buttons' message_event and text buttons' payloads), the snackbar and the edit
of the pressed message, long replies cut in order, images uploaded once, attachments as kinds."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import hypothesis
import pytest
from hypothesis import strategies as st
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from portabot import Button, Context, Flow, Kind, Message, State, link, press, text
from portabot.channels.vk import MAX_IMAGE, VkChannel, random_id
from portabot.messages import Delivery
from portabot.outbound import Outbound, call_now
from portabot.settings import Settings
from portabot.storage.database import Database
from portabot.testing.fakes import FakeVk, ImageServer, png, serve
from tests.conftest import VK_GROUP, VK_SECRET, BotFactory, make_settings, post_vk, query, run
from tests.conftest import vk_event as message_new
from tests.strategies import json_values

IMAGE = "https://img.example/cat.png"
DOCS = "https://docs.example/sizes"
LONG = " ".join(f"word{n:04d}" for n in range(1100))  # 9,899 characters
USER = 3001
TEXT_CLIENT: dict[str, Any] = {
    "button_actions": ["text", "vkpay", "open_app", "location", "open_link", "intent_subscribe"],
    "keyboard": True,
    "inline_keyboard": True,
    "carousel": False,
    "lang_id": 0,
}
FULL_CLIENT = {**TEXT_CLIENT, "button_actions": [*TEXT_CLIENT["button_actions"], "callback"]}
NO_KEYBOARD_CLIENT = {**FULL_CLIENT, "keyboard": False, "inline_keyboard": False}


def describe(message: Message) -> str:
    parts = [f"{message.kind.value}: {message.text!r}"]
    if message.kind is Kind.PRESS:
        parts.append(f"payload={message.payload!r}")
    for a in message.attachments:
        where = f" {a.latitude},{a.longitude}" if a.latitude is not None else ""
        parts.append(f"[{a.kind.value} {a.file_id} {a.url} {a.name} {a.mime_type}{where}]")
    return " ".join(parts)


class MenuState(State):
    """A small menu: payload buttons and a link, a press that edits with a notice, an image."""

    name = "menu"

    @text(r"(?i)menu")
    def menu(self, ctx: Context, message: Message) -> None:
        ctx.reply(
            "Pick a size, see ",
            link("the sizes", DOCS),
            buttons=[
                [Button("Small", "size:s"), Button("Large", "size:l")],
                [Button("Docs", url="https://docs.example/")],
            ],
        )

    @press(r"size:(s|l)")
    def size(self, ctx: Context, message: Message) -> None:
        ctx.notice("Saved")
        ctx.reply(f"Size {ctx.matched[1]} chosen", edit=True)

    @text(r"(?i)cat")
    def cat(self, ctx: Context, message: Message) -> None:
        ctx.reply("A cat", image=IMAGE)

    @text(r"(?i)broken (\w+)")
    def broken(self, ctx: Context, message: Message) -> None:
        ctx.reply("No picture", image=f"https://img.example/{ctx.matched[1]}/x.png")

    @text(r"(?i)show (\S+)")
    def show(self, ctx: Context, message: Message) -> None:
        ctx.reply("Your picture", image=ctx.matched[1])  # a URL a person gave

    @text(r"(?i)long")
    def long(self, ctx: Context, message: Message) -> None:
        ctx.reply(LONG, buttons=[[Button("More", "more")]])

    def handle(self, ctx: Context, message: Message) -> None:
        ctx.reply(describe(message))


@pytest.fixture(scope="module")
def _images() -> Iterator[ImageServer]:
    server = ImageServer()
    with serve(server.app()) as url:
        server.url = url
        yield server


@pytest.fixture
def images(_images: ImageServer) -> ImageServer:
    _images.reset()
    return _images


@pytest.fixture(scope="module")
def not_images() -> Iterator[str]:
    """A host without the images: a web page where one was expected, a 404, a picture too big."""

    async def page(request: Request) -> Response:
        path = request.url.path
        if path.startswith("/gone/"):
            return Response("no such file", status_code=404, media_type="text/plain")
        if path.startswith("/huge/"):
            return Response(png() + bytes(MAX_IMAGE), media_type="image/png")
        return Response("<html>not a picture</html>", media_type="text/html")

    with serve(Starlette(routes=[Route("/{path:path}", page)])) as url:
        yield url


@pytest.fixture
def menu_bot(
    start_bot: BotFactory, images: ImageServer, not_images: str, fake_vk: FakeVk
) -> httpx.Client:
    return start_bot(flow=Flow([MenuState()], initial="menu"), **image_hosts(images, not_images))


def image_hosts(images: ImageServer, not_images: str) -> dict[str, Any]:
    return {
        "vk_image_hosts": {
            "https://img.example/page/": f"{not_images}/page/",
            "https://img.example/gone/": f"{not_images}/gone/",
            "https://img.example/huge/": f"{not_images}/huge/",
            "https://img.example/": f"{images.url}/",
        }
    }


def say(
    bot: httpx.Client, event_id: str, words: str, client_info: Any = None, **extra: Any
) -> None:
    event = message_new(event_id, words, user_id=USER)
    if client_info is not None:
        event["object"]["client_info"] = client_info
    event["object"]["message"].update(extra)
    assert_ok(post_vk(bot, event))


def vk_press(
    event_id: str,
    payload: Any,
    conversation_message_id: int | None = 1,
    *,
    user_id: int = USER,
    **changes: Any,
) -> dict[str, Any]:
    """A callback button pressed, as VK sends message_event."""
    inner: dict[str, Any] = {
        "user_id": user_id,
        "peer_id": user_id,
        "event_id": f"3159dc190b1f{event_id}",
        "payload": payload,
    }
    if conversation_message_id is not None:
        inner["conversation_message_id"] = conversation_message_id
    inner.update(changes)
    return {
        "type": "message_event",
        "event_id": event_id,
        "v": "5.199",
        "group_id": VK_GROUP,
        "secret": VK_SECRET,
        "object": inner,
    }


def assert_ok(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.text == "ok"


MENU_KEYBOARD: dict[str, Any] = {
    "inline": True,
    "buttons": [
        [
            {"action": {"type": "callback", "label": "Small", "payload": '{"p":"size:s"}'}},
            {"action": {"type": "callback", "label": "Large", "payload": '{"p":"size:l"}'}},
        ],
        [{"action": {"type": "open_link", "link": "https://docs.example/", "label": "Docs"}}],
    ],
}
MENU_TEXT = f"Pick a size, see the sizes ({DOCS})"


def test_the_menu_goes_out_with_an_inline_callback_keyboard(
    menu_bot: httpx.Client, fake_vk: FakeVk
) -> None:
    say(menu_bot, "e1", "menu", FULL_CLIENT)
    [sent] = fake_vk.sent()
    assert sent["message"] == MENU_TEXT  # plain text: the link's URL after its text
    assert json.loads(sent["keyboard"]) == MENU_KEYBOARD
    assert sent["random_id"] == str(random_id("e1:0"))
    [message] = fake_vk.messages(USER)
    assert message.keyboard == MENU_KEYBOARD and fake_vk.refused == []


def test_an_old_api_message_without_client_info_gets_callback_buttons(
    menu_bot: httpx.Client, fake_vk: FakeVk
) -> None:
    assert_ok(post_vk(menu_bot, message_new("e1", "menu", user_id=USER, old_shape=True)))
    [sent] = fake_vk.sent()
    assert json.loads(sent["keyboard"]) == MENU_KEYBOARD


def test_a_press_is_answered_with_a_snackbar_and_edits_the_pressed_message(
    menu_bot: httpx.Client, fake_vk: FakeVk
) -> None:
    say(menu_bot, "e1", "menu", FULL_CLIENT)
    [menu] = fake_vk.messages(USER)
    event = vk_press("e2", {"p": "size:l"}, menu.conversation_message_id)
    assert_ok(post_vk(menu_bot, event))
    [answer] = fake_vk.sent("messages.sendMessageEventAnswer")
    assert answer["event_id"] == "3159dc190b1fe2"
    assert (answer["user_id"], answer["peer_id"]) == (str(USER), str(USER))
    assert fake_vk.snackbars() == ["Saved"]
    [edit] = fake_vk.sent("messages.edit")
    assert edit["conversation_message_id"] == str(menu.conversation_message_id)
    assert "keyboard" not in edit  # the edited message has no buttons left
    [edited] = fake_vk.messages(USER)
    assert edited.text == "Size l chosen" and edited.edits == 1 and edited.keyboard is None
    assert len(fake_vk.sent()) == 1  # the menu only: the press's reply was the edit


def test_an_edit_vk_refuses_becomes_a_new_message(menu_bot: httpx.Client, fake_vk: FakeVk) -> None:
    # A message this community never sent (or one too old to edit): VK's "Access denied".
    assert_ok(post_vk(menu_bot, vk_press("e1", {"p": "size:s"}, 99)))
    assert fake_vk.snackbars() == ["Saved"]
    assert [m.text for m in fake_vk.messages(USER)] == ["Size s chosen"]
    [sent] = fake_vk.sent()
    assert sent["random_id"] == str(random_id("e1:1"))


def test_a_press_without_a_message_to_edit_sends_a_new_one(
    menu_bot: httpx.Client, fake_vk: FakeVk
) -> None:
    assert_ok(post_vk(menu_bot, vk_press("e1", {"p": "size:s"}, None)))
    assert fake_vk.sent("messages.edit") == [] and fake_vk.snackbars() == ["Saved"]
    assert fake_vk.texts() == [(str(USER), "Size s chosen")]


def test_one_press_delivered_three_times_at_once_is_answered_and_edits_once(
    menu_bot: httpx.Client, fake_vk: FakeVk, database_url: str
) -> None:
    say(menu_bot, "e1", "menu", FULL_CLIENT)
    [menu] = fake_vk.messages(USER)
    body = json.dumps(vk_press("e2", {"p": "size:s"}, menu.conversation_message_id))

    async def three_at_once() -> list[httpx.Response]:
        headers = {"Content-Type": "application/json"}
        async with httpx.AsyncClient(base_url=str(menu_bot.base_url), timeout=30) as client:
            return await asyncio.gather(
                *(client.post("/webhooks/vk", content=body, headers=headers) for _ in range(3))
            )

    for response in run(three_at_once()):
        assert_ok(response)
    assert len(fake_vk.sent("messages.sendMessageEventAnswer")) == 1
    assert fake_vk.snackbars() == ["Saved"]
    assert len(fake_vk.sent("messages.edit")) == 1
    assert len(fake_vk.sent()) == 1  # the menu; the press's one reply is the edit
    assert [(m.text, m.edits) for m in fake_vk.messages(USER)] == [("Size s chosen", 1)]
    assert len(query(database_url, "SELECT update_id FROM updates")) == 2


def test_a_text_button_client_gets_text_buttons_and_its_press_comes_back(
    menu_bot: httpx.Client, fake_vk: FakeVk
) -> None:
    say(menu_bot, "e1", "menu", TEXT_CLIENT)
    [sent] = fake_vk.sent()
    keyboard = json.loads(sent["keyboard"])
    assert keyboard == {
        "inline": True,
        "buttons": [
            [
                {"action": {"type": "text", "label": "Small", "payload": '{"p":"size:s"}'}},
                {"action": {"type": "text", "label": "Large", "payload": '{"p":"size:l"}'}},
            ],
            MENU_KEYBOARD["buttons"][1],
        ],
    }
    # The person taps "Large": VK sends the label as text, with the button's payload.
    say(menu_bot, "e2", "Large", TEXT_CLIENT, payload='{"p":"size:l"}')
    assert fake_vk.sent("messages.sendMessageEventAnswer") == []  # nothing to answer
    assert fake_vk.sent("messages.edit") == []  # nothing to edit: a new message
    assert [text for _, text in fake_vk.texts()] == [MENU_TEXT, "Size l chosen"]


def test_a_client_without_keyboards_gets_the_buttons_as_lines(
    menu_bot: httpx.Client, fake_vk: FakeVk
) -> None:
    say(menu_bot, "e1", "menu", NO_KEYBOARD_CLIENT)
    [sent] = fake_vk.sent()
    assert "keyboard" not in sent
    assert sent["message"] == f"{MENU_TEXT}\n\nSmall | Large\nDocs: https://docs.example/"


@pytest.mark.parametrize(
    ("payload", "seen"),
    [
        ({"p": "size:s"}, "payload='size:s'"),
        ('{"p": "size:s"}', "payload='size:s'"),  # as a string: read the same
        ({"p": "nonsense"}, "payload='nonsense'"),  # ours in shape: the flow decides
        ({"command": "start"}, "payload=''"),
        ("not json", "payload=''"),
        ([1, 2], "payload=''"),
        ({"p": 5}, "payload=''"),
        ({"p": "x" * 200}, "payload=''"),
        (None, "payload=''"),
    ],
    ids=[
        "ours",
        "ours-as-string",
        "ours-unknown",
        "other",
        "text",
        "list",
        "number",
        "long",
        "none",
    ],
)
def test_a_press_of_any_payload_is_answered_and_only_ours_is_read(
    menu_bot: httpx.Client, fake_vk: FakeVk, payload: Any, seen: str
) -> None:
    assert_ok(post_vk(menu_bot, vk_press("e1", payload, None)))
    assert len(fake_vk.sent("messages.sendMessageEventAnswer")) == 1  # the spinner stops
    if seen == "payload='size:s'":
        assert fake_vk.texts() == [(str(USER), "Size s chosen")]
    else:
        assert fake_vk.texts() == [(str(USER), f"press: '' {seen}")]


def test_a_message_with_another_payload_is_the_message_it_carries(
    menu_bot: httpx.Client, fake_vk: FakeVk
) -> None:
    say(menu_bot, "e1", "Start", FULL_CLIENT, payload='{"command":"start"}')
    say(menu_bot, "e2", "Start", FULL_CLIENT, payload="{")
    edit = message_new("e3", "Large", user_id=USER, kind="message_edit")
    edit["object"]["payload"] = '{"p":"size:l"}'
    assert_ok(post_vk(menu_bot, edit))  # an edit of a pressed text button: not a second press
    seen = [text for _, text in fake_vk.texts()]
    assert seen == ["text: 'Start'", "text: 'Start'", "text: 'Large'"]


@pytest.mark.parametrize(
    "inner",
    [
        {"peer_id": USER, "event_id": "x", "payload": {}},
        {"user_id": str(USER), "peer_id": USER, "event_id": "x"},
        {"user_id": USER, "peer_id": USER, "event_id": ""},
        {"user_id": USER, "peer_id": USER, "event_id": "x" * 65},
        {"user_id": USER, "peer_id": USER, "event_id": "x", "conversation_message_id": "1"},
    ],
    ids=["no-user", "user-str", "empty-event", "long-event", "message-id-str"],
)
def test_a_malformed_press_is_refused(
    menu_bot: httpx.Client, fake_vk: FakeVk, database_url: str, inner: dict[str, Any]
) -> None:
    event = {**vk_press("e1", None), "object": inner}
    response = post_vk(menu_bot, event)
    assert response.status_code == 400 and "message_event" in response.json()["error"]
    assert query(database_url, "SELECT update_id FROM updates") == []
    assert fake_vk.calls == []


def test_a_long_reply_arrives_in_order_with_the_keyboard_on_the_last(
    menu_bot: httpx.Client, fake_vk: FakeVk, database_url: str, settings: Settings
) -> None:
    fake_vk.fail_next(code=10, message="Internal server error")  # the first try fails
    say(menu_bot, "e1", "long", FULL_CLIENT)
    sent = fake_vk.sent()
    assert len(sent) == 3 and all(len(s["message"]) <= 4096 for s in sent)
    assert "".join(s["message"] for s in sent) == LONG
    assert [("keyboard" in s) for s in sent] == [False, False, True]
    more = {"action": {"type": "callback", "label": "More", "payload": '{"p":"more"}'}}
    assert json.loads(sent[2]["keyboard"]) == {"inline": True, "buttons": [[more]]}
    ids = [s["random_id"] for s in sent]
    assert ids == [str(random_id(f"e1:{n}")) for n in range(3)] and len(set(ids)) == 3
    assert [m.text for m in fake_vk.messages(USER)] == [s["message"] for s in sent]

    # Sent again as if VK's answers had been lost: the same random_ids, so VK drops them all.
    query(database_url, "UPDATE outbox SET sent_at = NULL, due_at = 0")
    assert deliver_outbox(settings) == (3, 0)
    assert [d["random_id"] for d in fake_vk.dropped] == ids
    assert len(fake_vk.messages(USER)) == 3


def deliver_outbox(settings: Settings) -> tuple[int, int]:
    """What a later `portabot deliver` does: the outbox's due replies through the VK API."""

    async def deliver() -> tuple[int, int]:
        db = Database(settings.database_url, pool_size=1)
        outbound = Outbound(db, {"vk": VkChannel(settings, db)})
        try:
            return await outbound.deliver_all_due()
        finally:
            await outbound.close()
            await db.close()

    return run(deliver())  # type: ignore[no-any-return]


def test_an_image_is_fetched_and_uploaded_once_ever(
    menu_bot: httpx.Client,
    start_bot: BotFactory,
    fake_vk: FakeVk,
    images: ImageServer,
    not_images: str,
    database_url: str,
) -> None:
    say(menu_bot, "e1", "cat")
    say(menu_bot, "e2", "cat")
    assert images.fetches("/cat.png") == 1 and fake_vk.uploads() == 1
    [upload_server] = fake_vk.sent("photos.getMessagesUploadServer")
    assert upload_server["peer_id"] == str(USER)
    [photo] = fake_vk.saved
    attachment = f"photo{-VK_GROUP}_{photo['id']}_{photo['access_key']}"
    assert [(m.text, m.attachment) for m in fake_vk.messages(USER)] == [("A cat", attachment)] * 2
    [row] = query(database_url, "SELECT platform, url_key, ref FROM media")
    assert row == {
        "platform": "vk",
        "url_key": hashlib.sha256(IMAGE.encode()).hexdigest(),
        "ref": attachment,
    }
    # Another process (a restart, another worker) finds it in the database.
    restarted = start_bot(
        flow=Flow([MenuState()], initial="menu"), **image_hosts(images, not_images)
    )
    say(restarted, "e3", "cat")
    assert images.fetches("/cat.png") == 1 and fake_vk.uploads() == 1
    assert fake_vk.messages(USER)[-1].attachment == attachment


def test_concurrent_replies_with_one_new_image_upload_it_once(
    menu_bot: httpx.Client, fake_vk: FakeVk, images: ImageServer
) -> None:
    async def at_once() -> list[httpx.Response]:
        headers = {"Content-Type": "application/json"}
        async with httpx.AsyncClient(base_url=str(menu_bot.base_url), timeout=30) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        "/webhooks/vk",
                        content=json.dumps(message_new(f"e{n}", "cat", user_id=USER + n)),
                        headers=headers,
                    )
                    for n in range(4)
                )
            )

    for response in run(at_once()):
        assert_ok(response)
    assert images.fetches("/cat.png") == 1 and fake_vk.uploads() == 1
    assert len({m.attachment for n in range(4) for m in fake_vk.messages(USER + n)}) == 1


@pytest.mark.parametrize("where", ["page", "gone", "huge"])
def test_an_image_that_cannot_be_had_leaves_the_text_alone(
    menu_bot: httpx.Client, fake_vk: FakeVk, database_url: str, where: str
) -> None:
    say(menu_bot, "e1", f"broken {where}")
    assert [(m.text, m.attachment) for m in fake_vk.messages(USER)] == [("No picture", "")]
    assert fake_vk.uploads() == 0 and fake_vk.sent("photos.getMessagesUploadServer") == []
    assert query(database_url, "SELECT ref FROM media") == []


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "169.254.169.254", "10.0.0.7", "[::1]", "nowhere.invalid"]
)
def test_an_image_url_from_a_person_never_reaches_the_bots_own_network(
    menu_bot: httpx.Client, fake_vk: FakeVk, images: ImageServer, host: str
) -> None:
    # The image server listens on loopback: a flow that shows a URL a person sent must not make
    # the bot fetch from there (or from a cloud's metadata address), whatever the port.
    port = images.url.rpartition(":")[2]
    say(menu_bot, "e1", f"show https://{host}:{port}/cat.png")
    assert [(m.text, m.attachment) for m in fake_vk.messages(USER)] == [("Your picture", "")]
    assert images.fetches("/cat.png") == 0 and fake_vk.uploads() == 0


PHOTO: dict[str, Any] = {
    "id": 457239017,
    "owner_id": USER,
    "access_key": "a1b2c3",
    "sizes": [
        {"type": "s", "width": 75, "height": 56, "url": "https://sun9-1.userapi.com/s.jpg"},
        {"type": "w", "width": 2560, "height": 1920, "url": "https://sun9-1.userapi.com/w.jpg"},
        {"type": "x", "width": 604, "height": 453, "url": "https://sun9-1.userapi.com/x.jpg"},
    ],
}


@pytest.mark.parametrize(
    ("fields", "seen"),
    [
        (
            {"attachments": [{"type": "photo", "photo": PHOTO}]},
            f"photo: 'look' [photo photo{USER}_457239017_a1b2c3 https://sun9-1.userapi.com/w.jpg"
            " None None]",
        ),
        (
            {
                "attachments": [
                    {"type": "photo", "photo": {**PHOTO, "access_key": None, "sizes": []}}
                ]
            },
            f"photo: 'look' [photo photo{USER}_457239017 None None None]",
        ),
        (
            {
                "attachments": [
                    {
                        "type": "doc",
                        "doc": {
                            "id": 1,
                            "owner_id": USER,
                            "title": "menu.pdf",
                            "ext": "pdf",
                            "size": 1000,
                            "url": "https://vk.com/doc3001_1?hash=h",
                            "access_key": "k9",
                        },
                    }
                ]
            },
            f"document: 'look' [document doc{USER}_1_k9 https://vk.com/doc3001_1?hash=h"
            " menu.pdf None]",
        ),
        (
            {
                "attachments": [
                    {
                        "type": "audio_message",
                        "audio_message": {
                            "id": 2,
                            "owner_id": USER,
                            "duration": 3,
                            "waveform": [0, 1],
                            "link_ogg": "https://psv4.userapi.com/v.ogg",
                            "link_mp3": "https://psv4.userapi.com/v.mp3",
                            "access_key": "k2",
                        },
                    }
                ]
            },
            f"voice: 'look' [voice doc{USER}_2_k2 https://psv4.userapi.com/v.mp3 None audio/mpeg]",
        ),
        (
            {
                "attachments": [
                    {
                        "type": "sticker",
                        "sticker": {
                            "product_id": 4,
                            "sticker_id": 163,
                            "images": [
                                {"url": "https://vk.com/s64.png", "width": 64, "height": 64},
                                {"url": "https://vk.com/s512.png", "width": 512, "height": 512},
                            ],
                        },
                    }
                ]
            },
            "sticker: 'look' [sticker 163 https://vk.com/s512.png None None]",
        ),
        (
            {
                "attachments": [
                    {
                        "type": "video",
                        "video": {"id": 5, "owner_id": -1, "title": "Trailer", "access_key": "v"},
                    }
                ]
            },
            "video: 'look' [video video-1_5_v None Trailer None]",
        ),
        (
            {
                "attachments": [
                    {
                        "type": "audio",
                        "audio": {
                            "id": 6,
                            "owner_id": 2,
                            "artist": "Band",
                            "title": "Song",
                            "url": "https://vk.com/a.mp3",
                        },
                    }
                ]
            },
            "audio: 'look' [audio audio2_6 https://vk.com/a.mp3 Band — Song None]",
        ),
        (
            {"geo": {"type": "point", "coordinates": {"latitude": 59.93, "longitude": 30.31}}},
            "location: 'look' [location  None None None 59.93,30.31]",
        ),
        (
            {
                "attachments": [
                    {"type": "wall", "wall": {"id": 1}},
                    {"type": "photo", "photo": {**PHOTO, "sizes": PHOTO["sizes"][:1]}},
                ],
                "geo": {"coordinates": {"latitude": 1, "longitude": 2}},
            },
            f"photo: 'look' [photo photo{USER}_457239017_a1b2c3 https://sun9-1.userapi.com/s.jpg"
            " None None] [location  None None None 1.0,2.0]",
        ),
        (
            {"attachments": [{"type": "poll", "poll": {"id": 1}}, {"type": "link", "link": {}}]},
            "text: 'look'",
        ),
    ],
    ids=[
        "photo",
        "photo-no-key",
        "doc",
        "voice",
        "sticker",
        "video",
        "audio",
        "geo",
        "first-known-decides",
        "unknown-only",
    ],
)
def test_attachments_arrive_as_their_kinds(
    menu_bot: httpx.Client, fake_vk: FakeVk, fields: dict[str, Any], seen: str
) -> None:
    say(menu_bot, "e1", "look", **fields)
    assert fake_vk.texts() == [(str(USER), seen)]


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"attachments": {"type": "photo"}}, "attachments"),
        ({"attachments": [{"photo": PHOTO}]}, "attachments.0.type"),
        ({"attachments": [{"type": "photo", "photo": {"owner_id": 1}}]}, "photo.id"),
        ({"attachments": [{"type": "photo", "photo": {**PHOTO, "id": "1"}}]}, "photo.id"),
        (
            {"attachments": [{"type": "photo", "photo": {**PHOTO, "sizes": [{"w": 1}]}}]},
            "sizes.0.url",
        ),
        ({"attachments": [{"type": "doc", "doc": {"id": 1}}]}, "doc.owner_id"),
        ({"geo": {"coordinates": {"latitude": "1", "longitude": 2}}}, "geo.coordinates.latitude"),
        ({"geo": {"coordinates": {"latitude": 91, "longitude": 2}}}, "geo.coordinates.latitude"),
        ({"payload": {"p": "size:s"}}, "payload"),
    ],
    ids=[
        "not-a-list",
        "no-type",
        "photo-no-id",
        "photo-id-str",
        "size-no-url",
        "doc-no-owner",
        "latitude-str",
        "latitude-out-of-range",
        "payload-not-str",
    ],
)
def test_malformed_attachments_are_refused(
    menu_bot: httpx.Client, fake_vk: FakeVk, database_url: str, fields: dict[str, Any], where: str
) -> None:
    event = message_new("e1", "look", user_id=USER)
    event["object"]["message"].update(fields)
    response = post_vk(menu_bot, event)
    assert response.status_code == 400, response.text
    assert where in response.json()["error"] and "message_new" in response.json()["error"]
    assert query(database_url, "SELECT update_id FROM updates") == []
    assert fake_vk.calls == []


def test_set_webhook_subscribes_presses(fake_vk: FakeVk, settings: Settings) -> None:
    channel = VkChannel(settings)
    lines = call_now(lambda s: channel.set_webhook(s, "https://bot.example.com/webhooks/vk"))
    assert "message_event" in lines[1]
    [subscribed] = fake_vk.sent("groups.setCallbackSettings")
    assert subscribed["message_event"] == "1" and subscribed["message_new"] == "1"


def test_an_answer_vk_refuses_is_not_tried_again(settings: Settings, fake_vk: FakeVk) -> None:
    fake_vk.fail_next(code=100, message="One of the parameters specified was missing or invalid")

    async def answer() -> None:
        from portabot.channels.base import ApiError
        from portabot.outbound import client_session

        channel = VkChannel(make_settings(**settings.model_dump()))
        async with client_session() as session:
            with pytest.raises(ApiError) as refused:
                await channel.send(session, Delivery("vk", "1", "Saved", answer="1:1:old"))
        assert refused.value.retryable is False

    run(answer())
    assert fake_vk.sent("messages.sendMessageEventAnswer") == []


ATTACHMENT_TYPES = ("photo", "doc", "audio_message", "sticker", "video", "audio", "wall", "x")


@st.composite
def rich_events(draw: st.DrawFn) -> dict[str, Any]:
    """A press or a message whose payload, client_info, attachments and geo are anything."""
    if draw(st.booleans()):
        inner = {"user_id": USER, "peer_id": USER, "event_id": "ev", "payload": draw(json_values)}
        inner.update(draw(st.dictionaries(st.sampled_from(list(inner)), json_values, max_size=2)))
        return {**vk_press("e1", None), "object": inner}
    event = message_new("e1", "look", user_id=USER)
    message = event["object"]["message"]
    if draw(st.booleans()):
        event["object"]["client_info"] = draw(json_values)
    kinds = st.sampled_from(ATTACHMENT_TYPES)
    item = st.builds(lambda kind, value: {"type": kind, kind: value}, kinds, json_values)
    message["attachments"] = draw(st.lists(item, max_size=3) | json_values)
    optional = {"payload": json_values | st.builds(json.dumps, json_values), "geo": json_values}
    message.update(draw(st.fixed_dictionaries({}, optional=optional)))
    return event


def test_any_press_payload_client_info_or_attachment_is_refused_or_taken(
    start_bot: BotFactory, database_url: str
) -> None:
    """Never a 500: a press or message of any shape is a 400 (nothing stored) or processed."""
    bot = start_bot(flow=Flow([MenuState()], initial="menu"))
    seen = 0

    @hypothesis.settings(max_examples=150, deadline=None, database=None)
    @hypothesis.given(event=rich_events())
    def deliver(event: dict[str, Any]) -> None:
        nonlocal seen
        seen += 1
        event = {**event, "event_id": f"g{seen}"}
        response = post_vk(bot, event)
        assert response.status_code in (200, 400), response.text
        stored = query(database_url, f"SELECT 1 FROM updates WHERE update_id = 'g{seen}'")
        assert len(stored) == (1 if response.status_code == 200 else 0)

    deliver()


@pytest.mark.parametrize(
    "hosts",
    [{"img.example/": "http://127.0.0.1/"}, {"https://img.example/": "file:///tmp/"}],
    ids=["prefix-not-a-url", "target-not-http"],
)
def test_image_hosts_map_http_urls_to_http_urls(hosts: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="vk_image_hosts"):
        make_settings(vk_image_hosts=hosts)
