"""What a reply can carry beside its text: buttons, a small portable formatting subset, an image
and the wish to replace the pressed message — built by the flow, checked when it is built (so a
flow's unit test finds a payload too long), and rendered by each channel its own way.

Formatting is a tree of spans over plain strings, never markup in a string: `bold(name)` makes
`name` bold whatever it holds, and a person's `<b>` stays the four characters it is. The subset
is what Telegram, the web page and (as plain text) VK can all show: **bold**, *italic*,
`code` (monospace, nothing inside) and links (http or https).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from pydantic_core import to_json

MAX_PAYLOAD = 60
"""Bytes (UTF-8) of a button's payload: under Telegram's 64 for callback_data, leaving a flow
room for a prefix of its own on top of what it checks (say, `size:` before a choice)."""
MAX_LABEL = 40
"""Characters of a button's label: VK's limit (Telegram's is longer)."""
MAX_ROWS = 6
MAX_PER_ROW = 5
MAX_BUTTONS = 10
"""A keyboard that VK shows inline under a message: at most 6 rows of 5, 10 buttons in all
(Telegram takes more; the flow's keyboards fit everywhere)."""
MAX_URL = 2048
MAX_NOTICE = 90
"""Characters of a press's notice: VK's snackbar (Telegram's toast takes 200)."""

Style: TypeAlias = Literal["bold", "italic", "code", "link"]


class ReplyError(ValueError):
    """A reply that no platform would take as built: raised in the flow's step, naming what."""


@dataclass(frozen=True, slots=True)
class Span:
    """Formatted text: `style` over `parts` (strings and spans), a link's `url`."""

    style: Style
    parts: tuple[Part, ...]
    url: str = ""


Part: TypeAlias = "str | Span"


def bold(*parts: Part) -> Span:
    return Span("bold", _parts(parts, "bold"))


def italic(*parts: Part) -> Span:
    return Span("italic", _parts(parts, "italic"))


def code(text: str) -> Span:
    """Monospace text (a code, an order number); nothing is formatted inside it."""
    if not isinstance(text, str):
        raise ReplyError(f"code() takes a str, not {type(text).__name__}")
    return Span("code", (text,))


def link(text: Part, url: str) -> Span:
    """`text` that opens `url` (http or https)."""
    return Span("link", _parts((text,), "link"), _checked_url(url, "link"))


def _parts(parts: Iterable[object], where: str) -> tuple[Part, ...]:
    for part in parts:
        if not isinstance(part, str | Span):
            raise ReplyError(f"{where}(): a part is a str or a span, not {type(part).__name__}")
    return tuple(parts)  # type: ignore[arg-type]


def _checked_url(url: object, what: str) -> str:
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise ReplyError(f"{what}: the URL must start with https:// or http:// (got {url!r:.60})")
    if len(url) > MAX_URL or any(c.isspace() or ord(c) < 32 for c in url):
        raise ReplyError(f"{what}: the URL is over {MAX_URL} characters or holds spaces")
    return url


@dataclass(frozen=True, slots=True)
class Button:
    """A button under a reply: `payload` comes back to the flow as a press (Kind.PRESS), `url`
    opens a page. `Button("Small", "size:s")`, `Button("Docs", url="https://…")`."""

    label: str
    payload: str | None = None
    url: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.label, str) or not self.label.strip():
            raise ReplyError(f"a button needs a label (got {self.label!r:.60})")
        if len(self.label) > MAX_LABEL:
            raise ReplyError(
                f"button {self.label[:20]!r}…: the label is over {MAX_LABEL} characters"
            )
        if (self.payload is None) == (self.url is None):
            raise ReplyError(f"button {self.label!r}: give it a payload or a url (one of them)")
        if self.url is not None:
            _checked_url(self.url, f"button {self.label!r}")
        elif not isinstance(self.payload, str) or not self.payload:
            raise ReplyError(f"button {self.label!r}: the payload is a non-empty str")
        elif len(self.payload.encode()) > MAX_PAYLOAD:
            raise ReplyError(
                f"button {self.label!r}: the payload {self.payload[:20]!r}… is "
                f"{len(self.payload.encode())} bytes, over {MAX_PAYLOAD} (Telegram's callback "
                "data is 64): keep an id in it and the rest in ctx.data"
            )


Rows: TypeAlias = "Sequence[Sequence[Button] | Button] | Button"
"""Rows of buttons (a lone button in the list is a row of its own), or one button."""


def _rows(buttons: Rows | None) -> tuple[tuple[Button, ...], ...]:
    if not buttons:
        return ()
    if isinstance(buttons, Button):
        buttons = [buttons]
    rows = tuple((row,) if isinstance(row, Button) else tuple(row) for row in buttons)
    for row in rows:
        for button in row:
            if not isinstance(button, Button):
                raise ReplyError(f"buttons: rows hold Button(...), not {type(button).__name__}")
    count = sum(len(row) for row in rows)
    if (
        len(rows) > MAX_ROWS
        or any(len(row) > MAX_PER_ROW for row in rows)
        or count > MAX_BUTTONS
        or any(not row for row in rows)
    ):
        shape = " + ".join(str(len(row)) for row in rows)
        raise ReplyError(
            f"buttons: {shape} is not a keyboard every platform shows; at most {MAX_ROWS} "
            f"non-empty rows of {MAX_PER_ROW}, {MAX_BUTTONS} buttons in all"
        )
    return rows


@dataclass(frozen=True, slots=True)
class Reply:
    """One reply: its plain `text` (what a test compares), and what may ride with it."""

    text: str
    parts: tuple[Part, ...] = ()
    """The formatted text (empty: `text` as it is)."""
    buttons: tuple[tuple[Button, ...], ...] = ()
    image: str | None = None
    """An https URL of a picture; the text is its caption where the platform allows."""
    edit: bool = False
    """Replace the message whose button was pressed (a new message when there is none)."""

    @classmethod
    def of(
        cls,
        *parts: Part,
        buttons: Rows | None = None,
        image: str | None = None,
        edit: bool = False,
    ) -> Reply:
        """Check and build a reply from strings and spans, as `ctx.reply(...)` takes them."""
        if len(parts) == 1 and type(parts[0]) is str and parts[0] and not buttons and image is None:
            return cls(parts[0], (), (), None, bool(edit))  # plain text: the common case, cheap
        checked = _parts(parts, "reply")
        runs = _runs(checked)
        text = "".join(run.text for run in runs)
        if image is not None:
            if not isinstance(image, str) or not image.startswith("https://"):
                raise ReplyError(f"image: an https:// URL (got {image!r:.60})")
            _checked_url(image, "image")
        if not text and image is None:
            raise ReplyError("a reply needs text or an image")
        formatted = any(isinstance(part, Span) for part in checked)
        return cls(text, checked if formatted else (), _rows(buttons), image, bool(edit))

    @property
    def formatted(self) -> bool:
        return bool(self.parts)

    @property
    def plain_only(self) -> bool:
        """Nothing rides with the text: what `Reply(text)` is."""
        return not (self.parts or self.buttons or self.edit) and self.image is None

    def runs(self) -> list[Run]:
        return _runs(self.parts) if self.parts else [Run(self.text)] if self.text else []

    def html(self, *, web: bool = False) -> str:
        """The text as HTML of the subset (Telegram's parse_mode HTML; the web page's)."""
        return render_html(self.runs(), web=web)

    def plain(self) -> str:
        """The text for a platform without formatting: a link's URL after its text."""
        return "".join(
            f"{run.text} ({run.url})" if run.url and run.url != run.text else run.text
            for run in self.runs()
        )

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"text": self.text}
        if self.parts:
            found["parts"] = [_part_json(part) for part in self.parts]
        if self.buttons:
            found["buttons"] = [[_button_json(b) for b in row] for row in self.buttons]
        if self.image is not None:
            found["image"] = self.image
        if self.edit:
            found["edit"] = True
        return found

    @classmethod
    def from_json(cls, found: dict[str, Any]) -> Reply:
        return cls(
            found["text"],
            tuple(_part_of(part) for part in found.get("parts", ())),
            tuple(tuple(Button(**b) for b in row) for row in found.get("buttons", ())),
            found.get("image"),
            bool(found.get("edit", False)),
        )


def _part_json(part: Part) -> Any:
    if isinstance(part, str):
        return part
    found: dict[str, Any] = {"style": part.style, "parts": [_part_json(p) for p in part.parts]}
    if part.url:
        found["url"] = part.url
    return found


def _part_of(found: Any) -> Part:
    if isinstance(found, str):
        return found
    parts = tuple(_part_of(p) for p in found["parts"])
    return Span(found["style"], parts, found.get("url", ""))


def _button_json(button: Button) -> dict[str, str]:
    if button.url is not None:
        return {"label": button.label, "url": button.url}
    assert button.payload is not None
    return {"label": button.label, "payload": button.payload}


# Runs: the formatted text flattened into pieces of one style each, which is what rendering and
# splitting work on (each piece of a split renders its own tags, so every piece is balanced).


@dataclass(frozen=True, slots=True)
class Run:
    text: str
    styles: frozenset[str] = field(default=frozenset())
    url: str = ""


def _runs(parts: Iterable[Part]) -> list[Run]:
    found: list[Run] = []

    def walk(part: Part, styles: frozenset[str], url: str) -> None:
        if isinstance(part, str):
            if part:
                if found and found[-1].styles == styles and found[-1].url == url:
                    found[-1] = Run(found[-1].text + part, styles, url)
                else:
                    found.append(Run(part, styles, url))
            return
        inner = styles if part.style == "link" else styles | {part.style}
        for child in part.parts:
            walk(child, inner, part.url or url)

    for part in parts:
        walk(part, frozenset(), "")
    return found


_TAGS = (("bold", "b"), ("italic", "i"), ("code", "code"))


def render_html(runs: Iterable[Run], *, web: bool = False) -> str:
    """Escaped text in `<a href>`, `<b>`, `<i>`, `<code>`, always balanced (each run closes what
    it opens); on the web, links open in a new tab without access to the page."""
    out = []
    for run in runs:
        opened = [tag for style, tag in _TAGS if style in run.styles]
        piece = "".join(f"<{tag}>" for tag in opened) + html.escape(run.text, quote=False)
        piece += "".join(f"</{tag}>" for tag in reversed(opened))
        if run.url:
            extra = ' target="_blank" rel="noopener noreferrer"' if web else ""
            piece = f'<a href="{html.escape(run.url)}"{extra}>{piece}</a>'
        out.append(piece)
    return "".join(out)


# Splitting a reply that is longer than a platform takes into several, in order.


def length(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units): an emoji outside the BMP is two."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def split(reply: Reply, limit: int | None, caption_limit: int | None = None) -> list[Reply]:
    """The reply as messages of at most `limit` characters (the first at most `caption_limit`
    when it carries the image), cut at a line break where one is near, else at a space, else
    anywhere; the image on the first, the buttons on the last, `edit` on the first."""
    first_limit = caption_limit if reply.image is not None and caption_limit else limit
    if limit is None or first_limit is None:
        return [reply]
    if len(reply.text) * 2 <= first_limit or length(reply.text) <= first_limit:
        return [reply]
    pieces = _cut(reply.runs(), first_limit, limit)
    out = []
    for index, runs in enumerate(pieces):
        last = index == len(pieces) - 1
        parts = tuple(_span_of(run) for run in runs) if reply.parts else ()
        out.append(
            Reply(
                "".join(run.text for run in runs),
                parts,
                reply.buttons if last else (),
                reply.image if index == 0 else None,
                reply.edit and index == 0,
            )
        )
    return out


def _span_of(run: Run) -> Part:
    part: Part = run.text
    for style, _ in reversed(_TAGS):
        if style in run.styles:
            part = Span(style, (part,))  # type: ignore[arg-type]
    return Span("link", (part,), run.url) if run.url else part


def _cut(runs: list[Run], first_limit: int, limit: int) -> list[list[Run]]:
    text = "".join(run.text for run in runs)
    bounds = list(_boundaries(text, first_limit, limit))
    pieces: list[list[Run]] = []
    start = 0
    for end in bounds:
        pieces.append(_slice(runs, start, end))
        start = end
    return [piece for piece in pieces if piece]


def _boundaries(text: str, first_limit: int, limit: int) -> Iterator[int]:
    """Where each piece ends: the whitespace at a cut stays with the piece before it (so the
    pieces join back to the text), and no piece is empty."""
    start, budget = 0, first_limit
    while start < len(text):
        end = _fit(text, start, budget)
        if end < len(text):
            window = text[start:end]
            newline = window.rfind("\n")
            space = max(window.rfind(" "), window.rfind("\t"))
            cut = newline if newline > len(window) // 2 else max(newline, space)
            if cut > 0:
                end = start + cut + 1
        yield end
        start, budget = end, limit


def _fit(text: str, start: int, budget: int) -> int:
    """The furthest end after `start` whose piece counts at most `budget` (and at least one
    character)."""
    end, used = start, 0
    while end < len(text):
        cost = 2 if ord(text[end]) > 0xFFFF else 1
        if used + cost > budget:
            break
        used += cost
        end += 1
    return max(end, start + 1)


def _slice(runs: list[Run], start: int, end: int) -> list[Run]:
    out, offset = [], 0
    for run in runs:
        a, b = max(start, offset), min(end, offset + len(run.text))
        if a < b:
            out.append(Run(run.text[a - offset : b - offset], run.styles, run.url))
        offset += len(run.text)
    return out


def dumps(value: Any) -> str:
    """Compact JSON, non-ASCII kept, as `json.dumps(value, ensure_ascii=False, separators=(",",
    ":"))` writes it (but 1e-7 for 1e-07), in a sixth of its time: pydantic's encoder. For JSON's
    values, which is all it is given (a person's data and the effects' arguments pass
    `check_json` first); it would also write what json refuses, such as a datetime."""
    return to_json(value).decode()
