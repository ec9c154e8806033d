"""Rich conversations on the web chat, over HTTP against the app on loopback: a reply's buttons,
formatting, image and edit as the page gets them (one bubble each, its HTML rendered by the
server and escaped), a press posted back ({"payload", "message"}) reaching the flow once however
often it is sent, and presses the chat refuses. The rendering of formatted text, for the page
and for Telegram, is checked on generated person text too. The page itself: tests/test_browser.py.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portabot import Button, Context, Flow, Message, State, bold, code, command, italic, link
from portabot import press as on_press
from portabot import text as on_text
from portabot.channels.web import COOKIE
from portabot.replies import Part, Reply
from tests.conftest import BotFactory, query
from tests.test_limits import windows

IMAGE = "https://images.example/cat.png"
DOCS = "https://example.com/docs?a=1&b=2"
MENU_BUTTONS = [
    [{"label": "Small", "payload": "size:s"}, {"label": "Large", "payload": "size:l"}],
    [{"label": "Docs", "url": DOCS}],
]


class Menu(State):
    """The flow of these tests and the browser's: a menu whose presses edit it with a notice."""

    name = "menu"

    @command("menu")
    def menu(self, ctx: Context, message: Message) -> None:
        ctx.reply(
            "Pick a ",
            bold("size"),
            buttons=[
                [Button("Small", "size:s"), Button("Large", "size:l")],
                [Button("Docs", url=DOCS)],
            ],
        )

    def __init__(self, image: str = IMAGE) -> None:
        self.image = image

    @command("cat")
    def cat(self, ctx: Context, message: Message) -> None:
        ctx.reply("A cat", image=self.image)

    @command("count")
    def count(self, ctx: Context, message: Message) -> None:
        ctx.reply(f"{ctx.data.get('presses', 0)} presses")

    @on_press(r"size:(s|l)")
    def size(self, ctx: Context, message: Message) -> None:
        ctx.data["presses"] = ctx.data.get("presses", 0) + 1
        ctx.reply("Size ", code(ctx.matched[1]), " it is", edit=True)
        ctx.reply("Anything else?", buttons=[[Button("Again", "again")]])
        ctx.notice("Saved")

    @on_press()
    def other(self, ctx: Context, message: Message) -> None:
        ctx.reply("Pressed ", italic(message.payload))

    @on_text()
    def echo(self, ctx: Context, message: Message) -> None:
        ctx.reply("You said ", bold(message.text))


def rich_flow(image: str = IMAGE) -> Flow:
    """The flow, its /cat showing `image` (an https URL)."""
    return Flow([Menu(image)], name="rich")


@pytest.fixture
def chat(start_bot: BotFactory) -> httpx.Client:
    return start_bot(flow=rich_flow())


def post(client: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    return client.post("/webhooks/web", json=body)


def key(client: httpx.Client, client_id: str, position: int) -> str:
    """The bubble id the app gives a reply: the delivery's key (update id and position)."""
    visitor = client.cookies[COOKIE].split(".")[0]
    update_id = hashlib.sha256(f"{visitor}:{client_id}".encode()).hexdigest()[:40]
    return f"{update_id}:{position}"


def test_a_menu_its_press_an_edit_with_a_notice_and_a_formatted_reply(
    chat: httpx.Client, database_url: str
) -> None:
    post(chat, {"text": "hi", "id": "first"})  # the visitor's cookie, so bubble ids are known
    menu = post(chat, {"text": "/menu", "id": "m1"})
    assert menu.status_code == 200
    menu_id = key(chat, "m1", 0)
    assert menu.json() == {
        "replies": [
            {
                "id": menu_id,
                "text": "Pick a size",
                "html": "Pick a <b>size</b>",
                "buttons": MENU_BUTTONS,
            }
        ],
        "texts": ["Pick a size"],
    }

    pressed = post(chat, {"payload": "size:s", "id": "p1", "message": menu_id})
    assert pressed.status_code == 200
    # Position 0 is the press's answer (its notice), not a bubble.
    assert pressed.json() == {
        "replies": [
            {
                "id": key(chat, "p1", 1),
                "text": "Size s it is",
                "html": "Size <code>s</code> it is",
                "replaces": menu_id,
            },
            {
                "id": key(chat, "p1", 2),
                "text": "Anything else?",
                "html": "Anything else?",
                "buttons": [[{"label": "Again", "payload": "again"}]],
            },
        ],
        "texts": ["Size s it is", "Anything else?"],
        "notice": "Saved",
    }

    # The press comes back to the flow with its payload, whatever it holds.
    other = post(chat, {"payload": "again & <b>", "id": "p2", "message": key(chat, "p1", 2)})
    assert other.json() == {
        "replies": [
            {
                "id": key(chat, "p2", 1),
                "text": "Pressed again & <b>",
                "html": "Pressed <i>again &amp; &lt;b&gt;</i>",
            }
        ],
        "texts": ["Pressed again & <b>"],
    }

    # A person's markup stays text, in bold.
    script = post(chat, {"text": "<script>alert(1)</script>", "id": "s1"})
    assert script.json() == {
        "replies": [
            {
                "id": key(chat, "s1", 0),
                "text": "You said <script>alert(1)</script>",
                "html": "You said <b>&lt;script&gt;alert(1)&lt;/script&gt;</b>",
            }
        ],
        "texts": ["You said <script>alert(1)</script>"],
    }

    cat = post(chat, {"text": "/cat", "id": "c1"})
    assert cat.json() == {
        "replies": [{"id": key(chat, "c1", 0), "text": "A cat", "html": "A cat", "image": IMAGE}],
        "texts": ["A cat"],
    }
    stored = query(database_url, "SELECT count(*) AS n FROM updates WHERE platform = 'web'")
    assert stored == [{"n": 6}]


def test_a_press_without_its_bubble_edits_by_a_new_bubble(chat: httpx.Client) -> None:
    pressed = post(chat, {"payload": "size:l"}).json()
    assert [b.get("replaces") for b in pressed["replies"]] == [None, None]
    assert pressed["texts"] == ["Size l it is", "Anything else?"] and pressed["notice"] == "Saved"
    # A press with no notice is answered without one.
    assert "notice" not in post(chat, {"payload": "zzz", "message": "any-bubble"}).json()


def test_the_same_press_sent_three_times_at_once_is_processed_once(
    chat: httpx.Client, database_url: str
) -> None:
    post(chat, {"text": "/menu", "id": "m1"})
    cookie = {"Cookie": f"{COOKIE}={chat.cookies[COOKIE]}"}
    body = {"payload": "size:s", "id": "press-1", "message": key(chat, "m1", 0)}
    answers: list[dict[str, Any]] = []
    ready = threading.Barrier(3)

    def press() -> None:
        with httpx.Client(base_url=chat.base_url, timeout=30) as client:
            ready.wait()
            response = client.post("/webhooks/web", json=body, headers=cookie)
            assert response.status_code == 200, response.text
            answers.append(response.json())

    threads = [threading.Thread(target=press) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 3
    processed = [a for a in answers if a["replies"]]
    assert len(processed) == 1
    assert [b.get("replaces") for b in processed[0]["replies"]] == [key(chat, "m1", 0), None]
    assert processed[0]["notice"] == "Saved"
    # The others are duplicates: answered as the web chat answers a retried message, with nothing.
    assert [a for a in answers if not a["replies"]] == [{"replies": [], "texts": []}] * 2
    assert post(chat, {"text": "/count"}).json()["texts"] == ["1 presses"]
    pressed = query(database_url, "SELECT count(*) AS n FROM updates WHERE platform = 'web'")
    assert pressed == [{"n": 3}]  # /menu, the press, /count


def test_presses_count_against_the_rate_limits(start_bot: BotFactory) -> None:
    chat = start_bot(flow=rich_flow(), web_chat_per_address=2)
    started, sent = time.time(), 0
    while True:  # until refused: a minute's window may end during the test
        sent += 1
        slowed = post(chat, {"payload": "size:s"})
        if slowed.status_code == 429:
            break
        assert slowed.status_code == 200 and sent <= 2 * windows(started, time.time(), 60)
    assert slowed.json()["error"].startswith("too many messages from your address: try again in")
    assert int(slowed.headers["Retry-After"]) >= 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(
            {"payload": "é" * 31},
            "payload: Value error, a button's payload is at most 60",
            id="long",
        ),
        pytest.param(
            {"payload": ""}, "payload: String should have at least 1 character", id="empty"
        ),
        pytest.param({"text": "hi", "payload": "x"}, 'body: Value error, give "text"', id="both"),
        pytest.param({"id": "x"}, 'body: Value error, give "text"', id="neither"),
        pytest.param({"payload": None, "text": None}, 'body: Value error, give "text"', id="nulls"),
        pytest.param({"payload": 5}, "payload: Input should be a valid string", id="number"),
        pytest.param(
            {"payload": "x", "message": "m" * 101},
            "message: String should have at most 100",
            id="long-message",
        ),
        pytest.param(
            {"payload": "x", "message": "a b"}, "message: String should match pattern", id="space"
        ),
        pytest.param(
            {"text": "hi", "message": "1"},
            'body: Value error, "message" names the bubble',
            id="message-of-text",
        ),
        pytest.param(
            {"payload": "x", "buttons": []}, "buttons: Extra inputs are not permitted", id="extra"
        ),
    ],
)
def test_bad_presses_are_refused_with_a_reason(
    chat: httpx.Client, database_url: str, body: dict[str, Any], reason: str
) -> None:
    response = post(chat, body)
    assert response.status_code == 422
    assert response.json()["error"].startswith(reason), response.json()
    assert query(database_url, "SELECT count(*) AS n FROM updates") == [{"n": 0}]


def test_a_payload_of_exactly_sixty_bytes_is_a_press(chat: httpx.Client) -> None:
    payload = "é" * 30
    assert len(payload.encode()) == 60
    assert post(chat, {"payload": payload}).json()["texts"] == [f"Pressed {payload}"]


def test_the_home_page_may_show_https_images_only(chat: httpx.Client) -> None:
    policy = chat.get("/").headers["Content-Security-Policy"]
    directives = {name: values for name, *values in (d.split() for d in policy.split(";"))}
    assert directives["img-src"] == ["'self'", "https:"]
    costs = chat.get("/costs").headers["Content-Security-Policy"]
    assert "img-src 'self';" in costs


# --- Rendering generated person text ------------------------------------------------------

URL_TAIL = st.text(st.sampled_from("ab<>\"&'=?/#%"), max_size=12)
person_text = st.text(max_size=20)


def spans(depth: int = 2) -> st.SearchStrategy[Part]:
    leaf: st.SearchStrategy[Part] = person_text | person_text.map(code)
    if depth == 0:
        return leaf
    inner = st.lists(spans(depth - 1), max_size=3)
    return (
        leaf
        | inner.map(lambda parts: bold(*parts))
        | inner.map(lambda parts: italic(*parts))
        | st.builds(
            lambda text, tail: link(text, f"https://example.com/{tail}"),
            person_text | person_text.map(bold),
            URL_TAIL,
        )
    )


class Balanced(HTMLParser):
    """Reads rendered HTML: every tag one of ours with exactly our attributes, each closed in
    order; collects the text a reader sees."""

    def __init__(self, web: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.web = web
        self.open: list[str] = []
        self.text: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag in {"b", "i", "code", "a"}, tag
        assert tag not in self.open, f"<{tag}> inside <{tag}>"
        if tag == "a":
            found = dict(attrs)
            assert len(found) == len(attrs)
            href = found.pop("href")
            assert href is not None and href.startswith("https://example.com/")
            self.urls.append(href)
            web = {"target": "_blank", "rel": "noopener noreferrer"}
            assert found == (web if self.web else {})
        else:
            assert attrs == []
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, (tag, self.open)
        self.open.pop()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raise AssertionError(f"<{tag}/>")

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def handle_comment(self, data: str) -> None:
        raise AssertionError(f"a comment: {data!r}")

    def handle_decl(self, decl: str) -> None:
        raise AssertionError(f"a declaration: {decl!r}")

    def handle_pi(self, data: str) -> None:
        raise AssertionError(f"a processing instruction: {data!r}")

    def unknown_decl(self, data: str) -> None:
        raise AssertionError(f"a declaration: {data!r}")


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(spans(), min_size=1, max_size=4), web=st.booleans())
def test_rendered_html_is_balanced_and_escaped(parts: list[Part], web: bool) -> None:
    try:
        reply = Reply.of(*parts)
    except ValueError:  # no text at all: a reply needs some
        return
    rendered = reply.html(web=web)
    parser = Balanced(web)
    parser.feed(rendered)
    parser.close()
    assert parser.open == []
    assert "".join(parser.text) == reply.text
    # What a person wrote never opens a tag: every '<' in the markup is one of ours.
    ours = sum(rendered.count(f"<{tag}") for tag in ("b>", "i>", "code>", "a ", "/b>", "/i>"))
    ours += sum(rendered.count(f"<{tag}") for tag in ("/code>", "/a>"))
    assert rendered.count("<") == ours
    expected = [run.url for run in reply.runs() if run.url]
    assert parser.urls == expected


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=30))
def test_plain_text_is_escaped_for_the_page(text: str) -> None:
    if not text:
        return
    reply = Reply.of(text)
    parser = Balanced(web=True)
    parser.feed(reply.html(web=True))
    parser.close()
    assert "".join(parser.text) == text and "<" not in reply.html(web=True)


def test_the_page_gets_json_it_can_parse(chat: httpx.Client) -> None:
    # Text that JSON and HTML both escape, through a real response.
    answer = post(chat, {"text": '"</script><!-- & \\'}).content
    found = json.loads(answer)
    assert found["replies"][0]["html"] == 'You said <b>"&lt;/script&gt;&lt;!-- &amp; \\</b>'
    assert found["replies"][0]["text"] == 'You said "</script><!-- & \\'
