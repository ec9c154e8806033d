"""The portable reply: what a flow builds is checked when it is built (in the flow's own test),
cut to a platform's length without losing a character or a format, stored whole, and routed back
as a press."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portabot import (
    Attachment,
    Button,
    Context,
    Effect,
    EffectRun,
    Feature,
    Flow,
    Kind,
    Message,
    Reply,
    ReplyError,
    State,
    bold,
    code,
    handles,
    italic,
    link,
    on,
    press,
    result,
    text,
)
from portabot.channels import platform_channels
from portabot.messages import Account, Conversation, Delivery, Update
from portabot.outbound import Outbound
from portabot.replies import (
    MAX_BUTTONS,
    MAX_NOTICE,
    MAX_PAYLOAD,
    Part,
    length,
    split,
)
from portabot.storage.database import Database
from portabot.storage.migrate import _config, upgrade
from portabot.storage.people import lock_person_of, person_of, save_person
from portabot.storage.replies import remember_replies, take_replies
from portabot.testing import Harness
from portabot.testing.fakes import FakeTelegram, FakeVk
from tests.conftest import TOKEN, VK_GROUP, VK_TOKEN, make_settings, query, run

# Checks: each a ReplyError naming the problem.


def test_a_payload_is_counted_in_utf8_bytes() -> None:
    assert Button("Ok", "я" * 30).payload == "я" * 30  # 60 bytes: the limit
    assert Button("Ok", "x" * MAX_PAYLOAD).payload
    with pytest.raises(ReplyError, match=r"the payload .* is 62 bytes, over 60"):
        Button("Ok", "я" * 31)
    with pytest.raises(ReplyError, match="over 60"):
        Button("Ok", "x" * 61)
    with pytest.raises(ReplyError, match="the payload is a non-empty str"):
        Button("Ok", "")


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        (lambda: Button("", "a"), "needs a label"),
        (lambda: Button("   ", "a"), "needs a label"),
        (lambda: Button("x" * 41, "a"), "label is over 40"),
        (lambda: Button("Both", "a", url="https://example.com"), "a payload or a url"),
        (lambda: Button("Neither"), "a payload or a url"),
        (lambda: Button("Js", url="javascript:alert(1)"), "must start with https:// or http://"),
        (lambda: Button("Ftp", url="ftp://example.com"), "must start with https:// or http://"),
        (lambda: Button("Sp", url="https://exa mple.com"), "holds spaces"),
        (lambda: link("here", "javascript:alert(1)"), r"link: the URL must start"),
        (lambda: Reply.of("x", image="http://example.com/a.png"), r"image: an https:// URL"),
        (lambda: Reply.of("x", image="javascript:x"), r"image: an https:// URL"),
        (lambda: Reply.of(), "needs text or an image"),
        (lambda: Reply.of(""), "needs text or an image"),
        (lambda: Reply.of(bold("")), "needs text or an image"),
        (lambda: Reply.of(42), r"a part is a str or a span, not int"),  # type: ignore[arg-type]
        (lambda: code(bold("x")), r"code\(\) takes a str"),  # type: ignore[arg-type]
    ],
)
def test_a_reply_no_platform_would_take_is_refused_naming_why(build: Any, problem: str) -> None:
    with pytest.raises(ReplyError, match=problem):
        build()


def buttons(count: int) -> list[Button]:
    return [Button(f"b{i}", f"p{i}") for i in range(count)]


def test_a_keyboard_fits_every_platform() -> None:
    assert len(Reply.of("x", buttons=[buttons(5), buttons(5)]).buttons) == 2
    assert Reply.of("x", buttons=[[b] for b in buttons(6)]).buttons
    assert Reply.of("x", buttons=Button("One", "1")).buttons == ((Button("One", "1"),),)
    assert Reply.of("x", buttons=buttons(3)).buttons == tuple((b,) for b in buttons(3))
    for rows, shape in [
        ([[b] for b in buttons(7)], r"1 \+ 1 \+ 1 \+ 1 \+ 1 \+ 1 \+ 1"),  # 7 rows
        ([buttons(6)], "6 is not"),  # 6 in a row
        ([buttons(5), buttons(5), buttons(1)], r"5 \+ 5 \+ 1"),  # 11 buttons
        ([buttons(1), []], r"1 \+ 0"),  # an empty row
    ]:
        with pytest.raises(ReplyError, match=f"buttons: {shape}.*at most 6 non-empty rows of 5"):
            Reply.of("x", buttons=rows)
    with pytest.raises(ReplyError, match="rows hold Button"):
        Reply.of("x", buttons=[["Yes"]])  # type: ignore[list-item]
    assert MAX_BUTTONS == 10


def test_formatting_is_a_tree_never_markup() -> None:
    reply = Reply.of("Hi ", bold("<b>", italic("&")), " see ", link("docs", "https://e.com/?a=1&b"))
    assert reply.text == "Hi <b>& see docs"
    assert reply.html() == (
        'Hi <b>&lt;b&gt;</b><b><i>&amp;</i></b> see <a href="https://e.com/?a=1&amp;b">docs</a>'
    )
    assert 'target="_blank" rel="noopener noreferrer"' in reply.html(web=True)
    assert reply.plain() == "Hi <b>& see docs (https://e.com/?a=1&b)"
    assert Reply.of("plain").parts == ()  # nothing formatted: nothing more to keep
    assert Reply.of(code("<x>")).html() == "<code>&lt;x&gt;</code>"


# Splitting.


class Balanced(HTMLParser):
    """Whether the HTML closes every tag it opens, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.ok = True
        self.text = ""

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open.pop() != tag:
            self.ok = False

    def handle_data(self, data: str) -> None:
        self.text += data


def balanced(markup: str) -> str:
    """The text of balanced HTML (an AssertionError otherwise)."""
    parser = Balanced()
    parser.feed(markup)
    parser.close()
    assert parser.ok and not parser.open, markup
    return parser.text


def words_text(count: int, seed: int = 7) -> str:
    """Lines of words of varied length (an emoji here and there), as a long reply reads."""
    out, state = [], seed
    for i in range(count):
        state = (state * 1103515245 + 12345) % 2**31
        word = "w" * (1 + state % 9) + ("😀" if i % 17 == 0 else "")
        out.append(word + ("\n" if state % 13 == 0 else " "))
    return "".join(out)


def test_a_long_reply_is_cut_at_line_breaks_and_joins_back() -> None:
    original = words_text(2000)
    original = original[:10_000]
    assert len(original) == 10_000
    pieces = split(Reply(original), 4096)
    assert len(pieces) == 3
    assert "".join(p.text for p in pieces) == original
    for piece in pieces[:-1]:
        assert length(piece.text) <= 4096
        assert piece.text.endswith("\n")  # a line break was near every cut


def test_without_line_breaks_it_cuts_between_words_and_hard_cuts_only_a_long_word() -> None:
    original = ("word " * 2000)[:10_000]
    pieces = split(Reply(original), 4096)
    assert "".join(p.text for p in pieces) == original
    assert all(p.text.endswith(" ") for p in pieces[:-1])
    long_word = "x" * 5000
    original = f"short {long_word} tail"
    pieces = split(Reply(original), 4096)
    assert [p.text for p in pieces] == ["short ", "x" * 4096, "x" * 904 + " tail"]


def test_emoji_count_two_utf16_units() -> None:
    original = "😀" * 3000  # 6000 units, no space
    pieces = split(Reply(original), 4096)
    assert [len(p.text) for p in pieces] == [2048, 952]
    assert all(length(p.text) <= 4096 for p in pieces)
    assert length("😀a") == 3


def test_formatting_survives_a_split() -> None:
    parts: list[Part] = []
    for i in range(400):
        parts += [bold(f"item {i} "), "is ", italic("<fine> ", code(f"c{i}")), " and ", "\n"]
        parts.append(link(f"link {i}", f"https://example.com/{i}"))
        parts.append(" then\n")
    reply = Reply.of(*parts)
    pieces = split(reply, 1000)
    assert len(pieces) > 5
    assert "".join(p.text for p in pieces) == reply.text
    assert "".join(balanced(p.html()) for p in pieces) == reply.text
    assert all(length(p.text) <= 1000 and p.formatted for p in pieces)
    # The styles are where they were: the runs of the pieces are the runs of the whole, cut.
    whole = [(c, r.styles, r.url) for r in reply.runs() for c in r.text]
    cut = [(c, r.styles, r.url) for p in pieces for r in p.runs() for c in r.text]
    assert cut == whole


def test_the_image_rides_on_the_first_piece_and_the_buttons_on_the_last() -> None:
    keyboard = [[Button("Yes", "yes"), Button("No", "no")]]
    image = "https://example.com/cat.png"
    reply = Reply.of(words_text(1500), buttons=keyboard, image=image, edit=True)
    pieces = split(reply, 4096, 1024)
    assert length(pieces[0].text) <= 1024  # the caption's limit
    assert all(length(p.text) <= 4096 for p in pieces)
    assert "".join(p.text for p in pieces) == reply.text
    assert [p.image for p in pieces] == [image] + [None] * (len(pieces) - 1)
    assert [bool(p.buttons) for p in pieces] == [False] * (len(pieces) - 1) + [True]
    assert pieces[-1].buttons == reply.buttons
    assert [p.edit for p in pieces] == [True] + [False] * (len(pieces) - 1)
    # Without an image the caption's limit does not apply; short enough, the reply is whole.
    assert length(split(Reply.of(words_text(1500)), 4096, 1024)[0].text) > 1024
    assert split(reply, None) == [reply]
    short = Reply.of("short", image=image, buttons=keyboard)
    assert split(short, 4096, 1024) == [short]


formatted_parts: st.SearchStrategy[Part] = st.recursive(
    st.text(st.characters(codec="utf-8"), max_size=30) | st.sampled_from(["\n", " ", "😀 "]),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda ps: bold(*ps)),
        st.lists(inner, max_size=3).map(lambda ps: italic(*ps)),
        st.text(max_size=20).map(code),
        st.tuples(inner, st.sampled_from(["https://a.example/", "http://b.example/x?y=1"])).map(
            lambda pair: link(*pair)
        ),
    ),
    max_leaves=8,
)
texts_to_cut = st.lists(
    st.sampled_from(["word", "a", "\n", " ", "😀", "longerword", "\t", "é"]) | st.text(max_size=8),
    max_size=200,
).map("".join)


@settings(max_examples=200, deadline=None)
@given(
    text=texts_to_cut,
    limit=st.integers(2, 60),
    caption=st.none() | st.integers(2, 30),
    image=st.booleans(),
)
def test_any_text_joins_back_and_no_piece_is_over_the_limit(
    text: str, limit: int, caption: int | None, image: bool
) -> None:
    reply = Reply(
        text, image="https://e.com/i.png" if image else None, buttons=((Button("B", "b"),),)
    )
    pieces = split(reply, limit, caption)
    assert "".join(p.text for p in pieces) == text
    assert all(p.text for p in pieces) or text == ""  # no empty piece
    first = caption if image and caption else limit
    for index, piece in enumerate(pieces):
        assert length(piece.text) <= (first if index == 0 else limit)
    assert pieces[-1].buttons == reply.buttons


CHUNKS = ["word " * 30, "a line of text\n" * 8, "😀 " * 60, "x" * 700, "слово " * 25, "\n\n"]
long_texts = st.lists(st.sampled_from(CHUNKS) | st.text(max_size=12), min_size=20, max_size=80).map(
    "".join
)
"""Texts of a few thousand characters up to some twenty thousand: words, lines, emoji, long
words."""


@settings(max_examples=30, deadline=None)
@given(text=long_texts, image=st.booleans())
def test_a_long_text_fits_telegram_in_pieces_that_join_back(text: str, image: bool) -> None:
    picture = "https://e.com/i.png" if image else None
    reply = Reply(text, image=picture, buttons=((Button("B", "b"),),), edit=True)
    pieces = split(reply, 4096, 1024)
    assert "".join(p.text for p in pieces) == text
    first = 1024 if image else 4096
    assert all(length(p.text) <= (first if i == 0 else 4096) for i, p in enumerate(pieces))
    assert [p.edit for p in pieces] == [True] + [False] * (len(pieces) - 1)
    assert [p.image for p in pieces[1:]] == [None] * (len(pieces) - 1)


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(formatted_parts, min_size=1, max_size=6), limit=st.integers(2, 80))
def test_any_formatted_reply_splits_into_balanced_pieces(parts: list[Part], limit: int) -> None:
    try:
        reply = Reply.of(*parts)
    except ReplyError:
        return  # no text at all
    pieces = split(reply, limit)
    assert "".join(p.text for p in pieces) == reply.text
    assert all(length(p.text) <= limit for p in pieces)
    assert "".join(balanced(p.html()) for p in pieces) == reply.text


# Stored whole: JSON round trips.

keyboards = st.lists(
    st.lists(
        st.builds(
            Button, st.sampled_from(["Yes", "Нет", "😀 ok"]), st.text(min_size=1, max_size=15)
        )
        | st.builds(
            lambda label: Button(label, url="https://example.com/a"), st.sampled_from(["Docs"])
        ),
        min_size=1,
        max_size=3,
    ),
    max_size=3,
)


@st.composite
def replies(draw: st.DrawFn) -> Reply:
    parts = draw(st.lists(formatted_parts, max_size=4))
    image = draw(st.none() | st.just("https://example.com/p.png"))
    if not "".join(run.text for run in Reply("", tuple(parts)).runs()):
        parts = [*parts, "text"]  # a reply needs text (or an image)
    return Reply.of(*parts, buttons=draw(keyboards), image=image, edit=draw(st.booleans()))


@settings(max_examples=200, deadline=None)
@given(reply=replies())
def test_a_reply_comes_back_from_json_as_it_was(reply: Reply) -> None:
    stored = json.loads(json.dumps(reply.to_json(), ensure_ascii=False))
    assert Reply.from_json(stored) == reply


@settings(max_examples=100, deadline=None)
@given(
    reply=replies(),
    edit_id=st.none() | st.text(max_size=10),
    answer=st.none() | st.text(max_size=10),
    keyboard=st.none() | st.text(max_size=30),
)
def test_a_delivery_keeps_everything_beside_its_text(
    reply: Reply, edit_id: str | None, answer: str | None, keyboard: str | None
) -> None:
    sent = Delivery("vk", "5", reply.text, "1:0", None, None, reply, edit_id, answer, keyboard)
    extra = sent.extra()
    stored = json.loads(json.dumps(extra)) if extra is not None else None
    back = Delivery("vk", "5", reply.text, "1:0").with_extra(stored)
    assert back.content == reply
    assert (back.edit_id, back.answer, back.keyboard) == (edit_id, answer, keyboard)
    plain = Delivery("vk", "5", "just text", "1:0")
    assert plain.extra() is None and plain.with_extra(None).content == Reply("just text")


# Routing presses and attachments, through the real pipeline (the Harness).

SIZES = {"s": "Small", "m": "Medium", "l": "Large"}


class Menu(State):
    """Pick a size with buttons, then confirm or cancel."""

    name = "menu"

    @text()
    def start(self, ctx: Context, message: Message) -> None:
        rows = [[Button(label, f"size:{key}") for key, label in SIZES.items()]]
        ctx.reply("Which ", bold("size"), "?", buttons=rows)

    @press(r"size:(\w)")
    def size(self, ctx: Context, message: Message) -> type[State] | None:
        choice = ctx.matched[1]
        if choice not in SIZES:  # untrusted: a client may send any payload
            ctx.notice("No such size")
            return None
        ctx.data["size"] = choice
        ctx.notice(f"{SIZES[choice]} it is")
        ctx.reply(
            f"{SIZES[choice]}: confirm?",
            buttons=[[Button("Confirm", "confirm"), Button("Cancel", "cancel")]],
            edit=True,
        )
        return Confirming

    @on(Kind.PHOTO)
    def photo(self, ctx: Context, message: Message) -> None:
        ctx.reply(f"A photo ({message.attachments[0].file_id}) with {message.text!r}")

    def handle(self, ctx: Context, message: Message) -> None:
        ctx.reply(f"handled {message.kind.value} {message.payload!r}")


class Confirming(State):
    name = "confirming"

    @press("confirm")
    def confirm(self, ctx: Context, message: Message) -> type[State]:
        ctx.reply(f"Ordered: {SIZES[ctx.data.pop('size')]}.", edit=True)
        return Menu

    @press()
    def other(self, ctx: Context, message: Message) -> type[State]:
        ctx.notice("Cancelled")
        ctx.data.pop("size", None)
        return Menu

    @text()
    def talk(self, ctx: Context, message: Message) -> None:
        ctx.notice("a notice outside a press")


def menu() -> Flow:
    flow = Flow([Menu, Confirming])

    @flow.press("help")
    def pressed_help(ctx: Context, message: Message) -> None:
        ctx.reply("flow-wide help")

    return flow


@pytest.mark.parametrize("platform", ["telegram", "vk", "web"])
def test_a_menu_picks_with_presses_and_confirms(platform: str) -> None:
    with Harness(menu()) as bot:
        ann = bot.person(platform)
        offered = ann.say("hi")
        assert offered == ["Which size?"]
        assert [(b.label, b.payload) for b in offered.buttons] == [
            ("Small", "size:s"),
            ("Medium", "size:m"),
            ("Large", "size:l"),
        ]
        assert offered.replies[0].html() == "Which <b>size</b>?"
        assert offered.notice is None and offered.edited == [False]
        picked = ann.press("size:m")
        assert picked == ["Medium: confirm?"] and picked.notice == "Medium it is"
        assert picked.edited == [True]
        assert [b.payload for b in picked.buttons] == ["confirm", "cancel"]
        assert ann.conversation.state == "confirming"
        done = ann.press("confirm")
        assert done == ["Ordered: Medium."] and done.edited == [True] and done.notice is None
        assert ann.conversation == type(ann.conversation)("menu", {})
        ann.press("size:l")
        cancelled = ann.press("cancel")
        assert cancelled == [] and cancelled.notice == "Cancelled"
        assert ann.conversation.state == "menu"


def test_payloads_are_untrusted_and_what_no_route_takes_goes_to_handle() -> None:
    with Harness(menu()) as bot:
        ann = bot.person("telegram")
        refused = ann.press("size:x")  # matches the pattern, not a size
        assert refused == [] and refused.notice == "No such size"
        assert ann.conversation.state == "menu"
        # fullmatch: a prefix or a suffix is not the route's
        assert ann.press("size:mm") == ["handled press 'size:mm'"]
        assert ann.press("xsize:m") == ["handled press 'xsize:m'"]
        assert ann.press("") == ["handled press ''"]
        assert ann.press("help") == ["flow-wide help"]  # Flow.press: in every state
        # An edit without a message to edit (VK's text buttons) is a new message.
        assert ann.press("size:s", message_id=None).edited == [False]
        # The state's own @press() (any) comes before the flow-wide route.
        assert ann.press("help").notice == "Cancelled"


def test_a_notice_outside_a_press_or_too_long_fails_in_the_flows_test() -> None:
    with Harness(menu()) as bot:
        ann = bot.person("telegram")
        ann.press("size:s")
        with pytest.raises(ReplyError, match=r"ctx\.notice answers a press: this step is not one"):
            ann.say("hello")

    class Loud(State):
        @press()
        def loud(self, ctx: Context, message: Message) -> None:
            ctx.notice(message.payload)

    with Harness(Flow([Loud])) as bot:
        ann = bot.person("vk")
        assert ann.press("x" * MAX_NOTICE).notice == "x" * MAX_NOTICE
        with pytest.raises(ReplyError, match="is over 90 characters"):
            ann.press("x" * (MAX_NOTICE + 1))
        with pytest.raises(ReplyError, match="a notice is a non-empty str"):
            ann.press(" ")


def test_a_button_over_the_limit_fails_in_the_flows_own_test() -> None:
    class Order(State):
        @text()
        def offer(self, ctx: Context, message: Message) -> None:
            ctx.reply("Pick", buttons=[[Button("It", f"item:{message.text}")]])

    with Harness(Flow([Order])) as bot:
        ann = bot.person("telegram")
        assert ann.say("ёж").buttons == [Button("It", "item:ёж")]
        with pytest.raises(ReplyError, match=r"button 'It': the payload .* over 60"):
            ann.say("я" * 28)  # 5 + 56 bytes
        assert ann.conversation.state == "order"  # nothing of the failed step was kept
        assert ann.say("ok") == ["Pick"]


def test_a_photo_reaches_its_route_with_the_attachment() -> None:
    with Harness(menu()) as bot:
        ann = bot.person("telegram")
        photo = Attachment(Kind.PHOTO, file_id="AgAC-1")
        assert ann.send(Kind.PHOTO, "a cat", attachments=[photo]) == [
            "A photo (AgAC-1) with 'a cat'"
        ]
        document = Attachment(Kind.DOCUMENT, file_id="doc", name="a.pdf")
        assert ann.send(Kind.DOCUMENT, attachments=[document]) == ["handled document ''"]
        with pytest.raises(ValueError, match="use say"):
            ann.send(Kind.TEXT, "hi")


def test_a_long_reply_reaches_the_harness_in_pieces() -> None:
    class Long(State):
        @text()
        def long(self, ctx: Context, message: Message) -> None:
            ctx.reply(words_text(2500), buttons=[[Button("More", "more")]])

    with Harness(Flow([Long])) as bot:
        for platform, count in (("telegram", 4), ("vk", 4), ("web", 1)):
            got = bot.person(platform).say("go")
            assert len(got) == count and "".join(got) == words_text(2500)
            assert [bool(r.buttons) for r in got.replies] == [False] * (count - 1) + [True]


@dataclass(frozen=True, slots=True)
class Counted:
    count: int


@dataclass(frozen=True, slots=True)
class Count(Effect[Counted]):
    pass


class Counter(Feature):
    name = "counter"

    @handles(Count)
    async def count(self, run: EffectRun, effect: Count) -> Counted:
        assert run.message is not None and run.message.kind is Kind.PRESS
        return Counted(len(run.message.payload))


class Asking(State):
    @press()
    def ask(self, ctx: Context, message: Message) -> None:
        ctx.request(Count())

    @result(Counted)
    def counted(self, ctx: Context, counted: Counted) -> None:
        assert ctx.message is not None and ctx.message.kind is Kind.PRESS
        ctx.notice(f"{counted.count} characters")
        ctx.reply(f"Counted {counted.count}", edit=True)


def test_a_result_route_after_a_press_answers_it_and_edits() -> None:
    with Harness(Flow([Asking], features=[Counter()])) as bot:
        for platform in ("telegram", "vk", "web"):
            got = bot.person(platform).press("abc")
            assert got == ["Counted 3"] and got.notice == "3 characters"
            assert got.edited == [True]


# Stored before migration 0009: still read and sent.


@pytest.fixture(params=["sqlite", "postgresql"])
def before_0009(
    request: pytest.FixtureRequest, tmp_path: Path, new_postgres: Callable[[str], str]
) -> str:
    """A database migrated to 0008 (the outbox has no reply column yet)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        url = new_postgres("replies-before-0009")
    from alembic import command as alembic

    alembic.upgrade(_config(url), "0008")
    return url


def test_an_outbox_row_stored_before_0009_sends_as_plain_text(
    before_0009: str, fake_telegram: FakeTelegram, fake_vk: FakeVk
) -> None:
    url = before_0009
    query(
        url,
        "INSERT INTO outbox (platform, chat_id, thread_id, text, key, created_at, due_at)"
        " VALUES ('telegram', '7', NULL, 'old <b>plain</b>', 'u1:0', 1.0, NULL),"
        " ('vk', '8', NULL, 'old vk', 'u2:0', 1.0, NULL)",
    )
    upgrade(url)
    assert [r["reply"] for r in query(url, "SELECT reply FROM outbox ORDER BY id")] == [None, None]
    settings = make_settings(
        database_url=url,
        telegram_token=TOKEN,
        telegram_api_url=fake_telegram.url,
        vk_token=VK_TOKEN,
        vk_group_id=VK_GROUP,
        vk_api_url=fake_vk.url,
    )

    async def send() -> tuple[int, int]:
        db = Database(url)
        sender = Outbound(db, {c.platform: c for c in platform_channels(settings)})
        try:
            return await sender.deliver_due()
        finally:
            await sender.close()
            await db.close()

    assert run(send()) == (2, 0)
    [sent] = fake_telegram.sent()
    assert sent["text"] == "old <b>plain</b>"  # as it was written: not HTML
    assert "parse_mode" not in sent and "reply_markup" not in sent
    [vk] = fake_vk.sent()
    assert vk["message"] == "old vk" and "keyboard" not in vk


def test_inline_replies_kept_in_the_old_format_are_still_read(database_url: str) -> None:
    old = [["7", "one", "5:0"], ["7", "two", "5:1", "42"]]
    query(
        database_url,
        "INSERT INTO inline_replies (platform, update_id, replies, replied_at)"
        f" VALUES ('telegram', '5', '{json.dumps(old)}', 1.0)",
    )
    rich = Delivery(
        "telegram",
        "7",
        "three",
        "6:0",
        thread_id=None,
        reply=Reply.of(bold("three"), buttons=[[Button("Ok", "ok")]], edit=True),
        edit_id="99",
        keyboard="inline",
    )

    async def scenario() -> tuple[list[Delivery], list[Delivery]]:
        db = Database(database_url)
        try:
            async with db.transaction() as conn:
                await remember_replies(conn, Update("telegram", "6", None), [rich], 1.0)
            async with db.transaction() as conn:
                taken_old = await take_replies(conn, Update("telegram", "5", None), 2.0)
                taken_new = await take_replies(conn, Update("telegram", "6", None), 2.0)
            return taken_old, taken_new
        finally:
            await db.close()

    taken_old, taken_new = run(scenario())
    assert taken_old == [
        Delivery("telegram", "7", "one", "5:0"),
        Delivery("telegram", "7", "two", "5:1", thread_id="42"),
    ]
    assert [d.content for d in taken_old] == [Reply("one"), Reply("two")]
    assert taken_new == [rich]


def test_a_save_keeps_the_inline_replies_in_the_same_statement(database_url: str) -> None:
    """The transactional path's save and its kept inline replies: one statement on PostgreSQL
    (a data-modifying CTE), two on SQLite; either way both are written, or neither."""
    account = Account("telegram", "8", "8")
    update = Update("telegram", "9", None)
    reply = Delivery("telegram", "8", "kept", "9:0")

    async def scenario() -> tuple[list[Delivery], dict[str, Any]]:
        db = Database(database_url)
        try:
            async with db.transaction() as conn:
                person = await lock_person_of(conn, account, 1.0)
                conversation = Conversation("counting", {"count": 3})
                await save_person(conn, person.id, conversation, 1.0, keeping=(update, [reply]))
            with pytest.raises(RuntimeError):
                async with db.transaction() as conn:  # undone with its transaction
                    second = Update("telegram", "10", None)
                    others = [Delivery("telegram", "8", "gone", "10:0")]
                    gone = Conversation("gone", {})
                    await save_person(conn, person.id, gone, 2.0, keeping=(second, others))
                    raise RuntimeError("the step failed after the save")
            async with db.transaction() as conn:
                taken = await take_replies(conn, update, 2.0)
                assert await take_replies(conn, Update("telegram", "10", None), 3.0) == []
                found = await person_of(conn, account)
            assert found is not None
            return taken, {"state": found.conversation.state, "data": found.conversation.data}
        finally:
            await db.close()

    taken, saved = run(scenario())
    assert taken == [reply]
    assert saved == {"state": "counting", "data": {"count": 3}}
