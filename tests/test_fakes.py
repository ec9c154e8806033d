"""The fake Telegram and VK APIs and the image server, called over real HTTP as a bot calls
them: each answers what the real API answers, its refusals included, so that a bot's tests
against the fakes catch what the platforms would refuse."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from portabot.testing.fakes import FakeTelegram, FakeVk, ImageServer, free_port, png, serve

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are"
    " exactly the same as a current content and reply markup of the message"
)
YES = {"text": "Yes", "callback_data": "y"}
KEYBOARD = {"inline_keyboard": [[YES, {"text": "Site", "url": "https://example.org"}]]}


@pytest.fixture
def images() -> Iterator[ImageServer]:
    server = ImageServer()
    with serve(server.app()) as url:
        server.url = url
        yield server


def tg(fake: FakeTelegram, method: str, **payload: Any) -> tuple[int, dict[str, Any]]:
    """One Bot API call as a bot makes it (JSON); the HTTP status and the answer."""
    response = httpx.post(f"{fake.url}/bot{fake.token}/{method}", json=payload, timeout=10)
    body: dict[str, Any] = response.json()
    return response.status_code, body


def ok(fake: FakeTelegram, method: str, **payload: Any) -> Any:
    status, body = tg(fake, method, **payload)
    assert (status, body["ok"]) == (200, True), body
    return body["result"]


def refused(fake: FakeTelegram, method: str, **payload: Any) -> str:
    status, body = tg(fake, method, **payload)
    assert (status, body["ok"], body["error_code"]) == (400, False, 400), body
    description: str = body["description"]
    return description


def test_sent_messages_get_ids_per_chat_and_come_back_as_messages(
    fake_telegram: FakeTelegram,
) -> None:
    first = ok(fake_telegram, "sendMessage", chat_id=5, text="hi", reply_markup=KEYBOARD)
    second = ok(fake_telegram, "sendMessage", chat_id=5, text="<b>bold</b>", parse_mode="HTML")
    elsewhere = ok(fake_telegram, "sendMessage", chat_id=-100, text="there")
    assert (first["message_id"], second["message_id"], elsewhere["message_id"]) == (1, 2, 1)
    assert first["chat"] == {"id": 5, "type": "private"} and first["text"] == "hi"
    assert first["reply_markup"] == KEYBOARD and "reply_markup" not in second
    assert second["text"] == "bold"  # the Message carries the text without the markup
    assert [m.text for m in fake_telegram.messages(5)] == ["hi", "<b>bold</b>"]
    assert fake_telegram.messages("5")[1].parse_mode == "HTML"
    assert len(fake_telegram.sent()) == 3


def test_edits_replace_the_message_and_an_unchanged_edit_is_not_modified(
    fake_telegram: FakeTelegram,
) -> None:
    ok(fake_telegram, "sendMessage", chat_id=5, text="pick", reply_markup=KEYBOARD)
    same = {"chat_id": 5, "message_id": 1, "text": "pick", "reply_markup": KEYBOARD}
    assert refused(fake_telegram, "editMessageText", **same) == NOT_MODIFIED
    edited = ok(fake_telegram, "editMessageText", **{**same, "text": "picked"})
    assert edited["text"] == "picked" and edited["reply_markup"] == KEYBOARD
    assert "edit_date" in edited
    # the markup alone is a change; leaving it out removes the keyboard, as on Telegram
    ok(fake_telegram, "editMessageText", chat_id=5, message_id=1, text="picked")
    [message] = fake_telegram.messages(5)
    assert (message.text, message.reply_markup, message.edits) == ("picked", None, 2)
    ok(fake_telegram, "editMessageReplyMarkup", chat_id=5, message_id=1, reply_markup=KEYBOARD)
    assert fake_telegram.messages(5)[0].reply_markup == KEYBOARD
    for where in ({"chat_id": 5, "message_id": 9}, {"chat_id": 6, "message_id": 1}):
        described = refused(fake_telegram, "editMessageText", **where, text="x")
        assert described == "Bad Request: message to edit not found"
    described = refused(fake_telegram, "editMessageCaption", chat_id=5, message_id=1, caption="c")
    assert described == "Bad Request: there is no caption in the message to edit"
    assert len(fake_telegram.sent("editMessageText")) == 2


def test_a_photo_by_url_is_fetched_only_from_a_mapped_host(
    fake_telegram: FakeTelegram, images: ImageServer
) -> None:
    url = "https://img.example/cat.png"
    unfetched = ok(fake_telegram, "sendPhoto", chat_id=5, photo=url, caption="a cat")
    assert unfetched["caption"] == "a cat" and unfetched["photo"][0]["file_id"]
    assert images.fetches("/cat.png") == 0
    fake_telegram.photo_hosts = {"https://img.example/": f"{images.url}/"}
    sent = ok(fake_telegram, "sendPhoto", chat_id=5, photo=url, reply_markup=KEYBOARD)
    assert images.fetches("/cat.png") == 1 and sent["message_id"] == 2
    assert "caption" not in sent and sent["reply_markup"] == KEYBOARD
    # a file id Telegram gave back is sent again without a fetch
    ok(fake_telegram, "sendPhoto", chat_id=6, photo=sent["photo"][0]["file_id"])
    assert images.fetches("/cat.png") == 1
    wrong = "Bad Request: wrong file identifier/HTTP URL specified"
    assert (
        refused(fake_telegram, "sendPhoto", chat_id=5, photo="https://other.example/a.png") == wrong
    )
    fake_telegram.photo_hosts = {"https://img.example/": f"http://127.0.0.1:{free_port()}/"}
    assert refused(fake_telegram, "sendPhoto", chat_id=5, photo=url) == wrong
    assert refused(fake_telegram, "sendPhoto", chat_id=5, photo="not-a-file-id") == wrong
    assert [m.photo for m in fake_telegram.messages(5)] == [url, url]
    ok(fake_telegram, "editMessageCaption", chat_id=5, message_id=1, caption="a cat, edited")
    assert fake_telegram.messages(5)[0].caption == "a cat, edited"
    described = refused(fake_telegram, "editMessageText", chat_id=5, message_id=1, text="x")
    assert described == "Bad Request: there is no text in the message to edit"


def test_each_press_is_answered_once(fake_telegram: FakeTelegram) -> None:
    assert ok(fake_telegram, "answerCallbackQuery", callback_query_id="q1", text="Saved") is True
    ok(fake_telegram, "answerCallbackQuery", callback_query_id="q2", text="!", show_alert=True)
    described = refused(fake_telegram, "answerCallbackQuery", callback_query_id="q1")
    assert described.startswith("Bad Request: query is too old")
    assert refused(fake_telegram, "answerCallbackQuery", callback_query_id="q3", text="x" * 201)
    assert fake_telegram.answers() == [
        {"callback_query_id": "q1", "text": "Saved"},
        {"callback_query_id": "q2", "text": "!", "show_alert": True},
    ]


def test_lengths_are_counted_after_the_markup(fake_telegram: FakeTelegram) -> None:
    ok(fake_telegram, "sendMessage", chat_id=5, text="x" * 4096)
    ok(fake_telegram, "sendMessage", chat_id=5, text=f"<b>{'x' * 4095}</b>&amp;", parse_mode="HTML")
    assert refused(fake_telegram, "sendMessage", chat_id=5, text="x" * 4097) == (
        "Bad Request: message is too long"
    )
    ok(fake_telegram, "sendPhoto", chat_id=5, photo="https://i.example/a.png", caption="c" * 1024)
    described = refused(
        fake_telegram, "sendPhoto", chat_id=5, photo="https://i.example/a.png", caption="c" * 1025
    )
    assert described == "Bad Request: message caption is too long"
    described = refused(fake_telegram, "editMessageText", chat_id=5, message_id=1, text="x" * 4097)
    assert described == "Bad Request: message is too long"
    assert refused(fake_telegram, "sendMessage", chat_id=5, text="") == (
        "Bad Request: message text is empty"
    )
    assert len(fake_telegram.messages(5)) == 3 and len(fake_telegram.refused) == 4


@pytest.mark.parametrize(
    ("button", "description"),
    [
        ({"text": "x", "callback_data": "é" * 33}, "BUTTON_DATA_INVALID"),  # 66 bytes
        ({"text": "x", "callback_data": ""}, "BUTTON_DATA_INVALID"),
        ({"text": "x"}, "can't parse inline keyboard button"),
        ({**YES, "url": "https://e.org"}, "can't parse inline keyboard button"),
        ({"callback_data": "a"}, "can't parse inline keyboard button"),
        ({"text": "x", "url": "javascript:alert(1)"}, "inline keyboard button URL"),
    ],
)  # fmt: skip
def test_a_bad_inline_button_is_refused(
    fake_telegram: FakeTelegram, button: dict[str, str], description: str
) -> None:
    markup = {"inline_keyboard": [[button]]}
    described = refused(fake_telegram, "sendMessage", chat_id=5, text="x", reply_markup=markup)
    assert described.startswith(f"Bad Request: {description}")
    assert fake_telegram.messages(5) == [] and fake_telegram.sent() == []


def test_inline_buttons_up_to_the_limits_are_taken(fake_telegram: FakeTelegram) -> None:
    button = {"text": "x", "callback_data": "é" * 32}  # 64 bytes
    serialised = json.dumps({"inline_keyboard": [[button]]})
    sent = ok(fake_telegram, "sendMessage", chat_id=5, text="x", reply_markup=serialised)
    assert sent["reply_markup"] == {"inline_keyboard": [[button]]}
    assert refused(fake_telegram, "sendMessage", chat_id=5, text="x", reply_markup="{").startswith(
        "Bad Request: can't parse reply keyboard markup JSON object"
    )


WELL_FORMED = (
    "<b>b</b><strong>s</strong><i>i</i><em>e</em><u>u</u><s>s</s> &lt;&gt;&amp;&quot;&#39;"
    ' <a href="https://e.org/?a=1&amp;b=2">link</a> <tg-spoiler>x</tg-spoiler>'
    ' <span class="tg-spoiler">y</span> <code>c</code>'
    ' <pre><code class="language-python">p</code></pre> <blockquote>q</blockquote>'
)


def test_well_formed_html_is_taken_and_shown_without_its_tags(fake_telegram: FakeTelegram) -> None:
    sent = ok(fake_telegram, "sendMessage", chat_id=5, text=WELL_FORMED, parse_mode="HTML")
    assert sent["text"] == "bsieus <>&\"' link x y c p q"
    # without parse_mode the same characters are plain text
    ok(fake_telegram, "sendMessage", chat_id=5, text="a < b & <b>")


@pytest.mark.parametrize(
    "text",
    [
        "<b>open",
        "close</b>",
        "<b><i>crossed</b></i>",
        "<script>alert(1)</script>",
        "<div>x</div>",
        "a < b",
        "a > b",
        "fish & chips",
        "&nbsp;",
        "line<br/>break",
        "<a>no href</a>",
        '<span class="x">not a spoiler</span>',
        "<!-- comment -->",
    ],
)
def test_malformed_html_is_refused_as_telegram_does(fake_telegram: FakeTelegram, text: str) -> None:
    described = refused(fake_telegram, "sendMessage", chat_id=5, text=text, parse_mode="HTML")
    assert described.startswith("Bad Request: can't parse entities: ")
    ok(fake_telegram, "sendMessage", chat_id=5, text="x")
    edit = {"chat_id": 5, "message_id": 1, "text": text, "parse_mode": "HTML"}
    assert refused(fake_telegram, "editMessageText", **edit).startswith(
        "Bad Request: can't parse entities: "
    )


def test_a_parse_error_names_the_byte_offset(fake_telegram: FakeTelegram) -> None:
    described = refused(fake_telegram, "sendMessage", chat_id=5, text="жж</b>", parse_mode="HTML")
    assert described == "Bad Request: can't parse entities: Unexpected end tag at byte offset 4"


def vk(fake: FakeVk, method: str, **params: Any) -> Any:
    """One VK API call as a bot makes it (a form, HTTP 200 either way); the parsed answer."""
    form = {"access_token": fake.token, "v": "5.199", **{k: str(v) for k, v in params.items()}}
    response = httpx.post(f"{fake.url}/{method}", data=form, timeout=10)
    assert response.status_code == 200
    return response.json()


def vk_ok(fake: FakeVk, method: str, **params: Any) -> Any:
    body = vk(fake, method, **params)
    assert "response" in body, body
    return body["response"]


def vk_error(fake: FakeVk, method: str, **params: Any) -> tuple[int, str]:
    error = vk(fake, method, **params)["error"]
    return error["error_code"], error["error_msg"]


def button(kind: str = "callback", label: str = "Yes", **more: str) -> dict[str, Any]:
    return {"action": {"type": kind, "label": label, **more}}


def keyboard(rows: list[list[dict[str, Any]]], inline: bool = True) -> str:
    return json.dumps({"inline": inline, "buttons": rows})


def test_vk_sends_keyboards_and_answers_message_ids(fake_vk: FakeVk) -> None:
    menu = keyboard(
        [
            [button(payload='{"size":"s"}'), button("text", "No", payload='{"a":1}')],
            [button("open_link", "Site", link="https://example.org")],
        ]
    )
    first = vk_ok(
        fake_vk, "messages.send", peer_id=1001, random_id=1, message="pick", keyboard=menu
    )
    second = vk_ok(fake_vk, "messages.send", peer_id=1001, random_id=2, message="again")
    assert (first, second) == (1, 2)
    [message, _] = fake_vk.messages(1001)
    assert message.text == "pick" and message.keyboard == json.loads(menu)
    assert message.conversation_message_id == 1
    # a community's send to a group chat answers 0; peer_ids answers the ids
    assert vk_ok(fake_vk, "messages.send", peer_id=2000000001, random_id=3, message="x") == 0
    many = vk_ok(fake_vk, "messages.send", peer_ids="2000000001,1002", random_id=4, message="y")
    assert many == [
        {"peer_id": 2000000001, "message_id": 4, "conversation_message_id": 2},
        {"peer_id": 1002, "message_id": 5, "conversation_message_id": 1},
    ]
    # a repeated random_id is dropped, as VK does
    assert vk_ok(fake_vk, "messages.send", peer_id=1001, random_id=1, message="pick") == 0
    assert len(fake_vk.messages(1001)) == 2 and len(fake_vk.dropped) == 1
    assert fake_vk.texts()[:2] == [("1001", "pick"), ("1001", "again")]


@pytest.mark.parametrize(
    ("rows", "inline"),
    [
        ([[button(label="x" * 41)]], True),
        ([[button(label="")]], True),
        ([[button(payload=json.dumps("p" * 254))]], True),  # 256 characters
        ([[button(payload="not json")]], True),
        ([[button("teleport")]], True),
        ([[button("open_link", "Site")]], True),  # no link
        ([[button()] * 6], True),
        ([[button()]] * 7, True),
        ([[button()] * 5] * 3, True),  # 15 buttons, an inline keyboard holds 10
        ([[button()]] * 11, False),
    ],
)
def test_a_keyboard_vk_would_refuse_is_error_911(
    fake_vk: FakeVk, rows: list[list[dict[str, Any]]], inline: bool
) -> None:
    code, message = vk_error(
        fake_vk,
        "messages.send",
        peer_id=1,
        random_id=1,
        message="x",
        keyboard=keyboard(rows, inline),
    )
    assert code == 911 and message.startswith("Keyboard format is invalid")
    assert fake_vk.messages(1) == [] and fake_vk.sent() == [] and len(fake_vk.refused) == 1


def test_keyboards_up_to_vks_limits_are_taken(fake_vk: FakeVk) -> None:
    payload = json.dumps("p" * 253)  # 255 characters
    inline = keyboard([[button(label="x" * 40, payload=payload)] * 5] * 2)
    standard = keyboard([[button("text")] * 4] * 10, inline=False)
    for number, shape in enumerate((inline, standard), 1):
        vk_ok(fake_vk, "messages.send", peer_id=1, random_id=number, message="x", keyboard=shape)
    code, _ = vk_error(fake_vk, "messages.send", peer_id=1, random_id=9, message="x", keyboard="{")
    assert code == 100


def test_vk_refuses_an_empty_or_too_long_message(fake_vk: FakeVk) -> None:
    assert vk_error(fake_vk, "messages.send", peer_id=1, random_id=1, message="")[0] == 100
    assert vk_error(fake_vk, "messages.send", peer_id=1, random_id=2, message="x" * 4097) == (
        914,
        "Message is too long",
    )
    assert vk_error(fake_vk, "messages.send", peer_id=1, random_id=3, attachment="photo")[0] == 100
    vk_ok(fake_vk, "messages.send", peer_id=1, random_id=4, message="x" * 4096)
    vk_ok(fake_vk, "messages.send", peer_id=1, random_id=5, attachment="photo-1_456")
    assert fake_vk.messages(1)[1].attachment == "photo-1_456"


def test_vk_edits_by_either_id_and_refuses_an_unknown_message(fake_vk: FakeVk) -> None:
    menu = keyboard([[button()]])
    vk_ok(fake_vk, "messages.send", peer_id=1, random_id=1, message="pick", keyboard=menu)
    vk_ok(fake_vk, "messages.send", peer_id=2000000001, random_id=2, message="chat")
    edited = vk_ok(
        fake_vk,
        "messages.edit",
        peer_id=1,
        conversation_message_id=1,
        message="picked",
        keyboard=menu,
    )
    assert edited == 1
    [message] = fake_vk.messages(1)
    assert (message.text, message.keyboard, message.edits) == ("picked", json.loads(menu), 1)
    vk_ok(fake_vk, "messages.edit", peer_id=1, message_id=1, message="done")
    assert (message.text, message.keyboard) == ("done", None)
    vk_ok(fake_vk, "messages.edit", peer_id=2000000001, conversation_message_id=1, message="c2")
    assert fake_vk.messages(2000000001)[0].text == "c2"
    for unknown in ({"conversation_message_id": 7}, {"message_id": 2}):
        assert vk_error(fake_vk, "messages.edit", peer_id=1, message="x", **unknown) == (
            15,
            "Access denied",
        )
    assert vk_error(fake_vk, "messages.edit", peer_id=1, message_id=1, message="")[0] == 100


def test_vk_event_answers_show_snackbars(fake_vk: FakeVk) -> None:
    press = {"event_id": "e1", "user_id": 1, "peer_id": 1}
    snackbar = json.dumps({"type": "show_snackbar", "text": "Saved"})
    assert vk_ok(fake_vk, "messages.sendMessageEventAnswer", **press, event_data=snackbar) == 1
    vk_ok(fake_vk, "messages.sendMessageEventAnswer", **{**press, "event_id": "e2"})
    assert fake_vk.snackbars() == ["Saved"]
    assert len(fake_vk.sent("messages.sendMessageEventAnswer")) == 2
    too_long = json.dumps({"type": "show_snackbar", "text": "x" * 91})
    for data in (too_long, json.dumps({"type": "toast"}), "{"):
        assert (
            vk_error(fake_vk, "messages.sendMessageEventAnswer", **press, event_data=data)[0] == 100
        )
    assert vk_error(fake_vk, "messages.sendMessageEventAnswer", event_id="e3")[0] == 100


def test_vk_photo_upload_chain(fake_vk: FakeVk) -> None:
    server = vk_ok(fake_vk, "photos.getMessagesUploadServer", peer_id=1)
    assert server["upload_url"].startswith(fake_vk.url) and server["group_id"] == fake_vk.group_id
    files = {"photo": ("cat.png", png(), "image/png")}
    uploaded = httpx.post(server["upload_url"], files=files, timeout=10).json()
    assert set(uploaded) == {"server", "photo", "hash"} and fake_vk.uploads() == 1
    [photo] = vk_ok(fake_vk, "photos.saveMessagesPhoto", **uploaded)
    assert photo["owner_id"] == -fake_vk.group_id and photo["id"] > 0
    attachment = f"photo{photo['owner_id']}_{photo['id']}_{photo['access_key']}"
    vk_ok(fake_vk, "messages.send", peer_id=1, random_id=1, attachment=attachment, message="c")
    assert fake_vk.messages(1)[0].attachment == attachment
    # an upload without the photo field saves nothing
    empty = httpx.post(server["upload_url"], files={"file": ("a.png", png())}, timeout=10).json()
    assert empty["photo"] == "[]" and fake_vk.uploads() == 1
    assert vk_error(fake_vk, "photos.saveMessagesPhoto", **empty)[0] == 100
    assert vk_error(fake_vk, "photos.saveMessagesPhoto", **{**uploaded, "hash": "forged"})[0] == 100


def test_the_image_server_serves_a_png_and_counts_fetches(images: ImageServer) -> None:
    for _ in range(2):
        response = httpx.get(f"{images.url}/a/cat.png", timeout=10)
        assert response.headers["content-type"] == "image/png"
    httpx.get(f"{images.url}/dog.png", timeout=10)
    assert (images.fetches("/a/cat.png"), images.fetches("/dog.png"), images.fetches("/x")) == (
        2,
        1,
        0,
    )
    image = response.content
    assert image == png() and image.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", image[16:24])
    assert (width, height) == (1, 1)
    idat = image.index(b"IDAT")
    (length,) = struct.unpack(">I", image[idat - 4 : idat])
    assert zlib.decompress(image[idat + 4 : idat + 4 + length]) == b"\x00\xff\x00\x00"
