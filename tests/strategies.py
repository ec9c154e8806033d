"""Hypothesis strategies for hostile input: arbitrary JSON, platform deliveries with a field
broken, raw bodies and the header values a client can send."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from tests.conftest import BOT_USERNAME, SECRET, VK_GROUP, VK_SECRET

BIG_NUMBERS = (
    2**31,
    -(2**31) - 1,
    2**53 + 1,
    2**63,
    -(2**63) - 1,
    2**64,
    10**70,
    -(10**70),
    10**309,
    -(10**400),
    10**400,
)
"""Numbers a platform never sends: past int32, float precision, int64, 64 digits, a float."""
BIG_INTS = st.sampled_from(BIG_NUMBERS)
ints = st.integers() | BIG_INTS
# Lone surrogates (category Cs) too: json.dumps escapes them as a platform's JSON may.
any_text = st.text(st.characters(exclude_categories=()), max_size=40)
scalars = st.none() | st.booleans() | ints | st.floats() | any_text
json_values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4)
    ),
    max_leaves=12,
)
"""Any value json.dumps can write (NaN and Infinity included, which Python's json reads)."""

COMMANDS = ("/start", "/help", "/me", "/bind", "/cancel", "/in", "/START", "/unknown")
texts = (
    st.sampled_from(COMMANDS)
    | st.sampled_from([f"/me@{BOT_USERNAME}", "/bind@other_bot", "/in amber-falcon-river-stone"])
    | any_text
    | st.builds(lambda c, t: f"{c} {t}", st.sampled_from(COMMANDS), any_text)
)


def paths(value: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every place in a JSON value, the value itself first."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*prefix, index))
    return found


ODD_NAMES = ("\n", "a\r\nWARNING forged", "\ud800", "\x00", "é", "x" * 200, "")
long_text = st.text(min_size=65, max_size=300)
"""Longer than any id column (64 characters)."""


def extreme(value: Any) -> st.SearchStrategy[Any]:
    """A value of the same type as `value` that a platform never sends, or a wrong type."""
    if isinstance(value, int) and not isinstance(value, bool):
        return BIG_INTS | st.sampled_from([str(value), 1.5, True])
    if isinstance(value, str):
        return long_text | st.sampled_from(["", "\x00", "\n", "\ud800", "x" * 5000, 1])
    return st.sampled_from([None, "1", 1.0, True, [], {}])


def at(value: Any, path: Sequence[str | int]) -> Any:
    """The part of a JSON value at `path`."""
    for step in path:
        value = value[step]
    return value


@st.composite
def broken(draw: st.DrawFn, value: Any) -> Any:
    """`value` with up to three changes: a place given an extreme value of its type or any JSON,
    a field removed, an object given an extra field; now and then something else altogether."""
    if draw(st.integers(0, 19)) == 19:
        return draw(json_values)
    value = copy.deepcopy(value)
    for _ in range(draw(st.integers(0, 3))):
        places = paths(value)
        change = draw(st.sampled_from(["replace", "replace", "remove", "add"]))
        if change == "add":
            objects = [p for p in places if isinstance(at(value, p), dict)]
            names = [p[-1] for p in places if p and isinstance(p[-1], str)]
            # A field repeated where it does not belong, or a name made to break a log line.
            key = draw(st.sampled_from([*names, *ODD_NAMES]) | any_text)
            at(value, draw(st.sampled_from(objects)))[key] = draw(json_values)
            continue
        if len(places) == 1:
            break
        *parent, last = draw(st.sampled_from(places[1:]))
        if change == "replace":
            old = at(value, (*parent, last))
            at(value, parent)[last] = draw(st.one_of(extreme(old), extreme(old), json_values))
        elif isinstance(at(value, parent), dict):
            del at(value, parent)[last]
    return value


def encoded(value: Any, *, escaped: bool) -> bytes:
    """The JSON as bytes: escaped as most platforms send it, or raw UTF-8 (where a lone
    surrogate makes the body invalid UTF-8)."""
    if escaped:
        return json.dumps(value).encode()
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


@st.composite
def telegram_updates(draw: st.DrawFn) -> dict[str, Any]:
    """A Telegram update as the Bot API sends it (a message, an edit, a member joining or
    leaving, a bot's or a channel's message)."""
    user: dict[str, Any] = {
        "id": draw(st.integers(1, 2**40)),
        "is_bot": draw(st.booleans()),
        "first_name": "Ann",
    }
    if draw(st.booleans()):
        user["username"] = draw(any_text)
    chat_type = draw(st.sampled_from(["private", "group", "supergroup", "channel"]))
    chat_id = user["id"] if chat_type == "private" else -draw(st.integers(1, 2**40))
    message: dict[str, Any] = {
        "message_id": draw(st.integers(1, 2**31 - 1)),
        "date": draw(st.integers(0, 2**31 - 1)),
        "chat": {"id": chat_id, "type": chat_type},
    }
    if draw(st.sampled_from([True, True, True, False])):  # False: a channel's post
        message["from"] = user
    extra = draw(st.sampled_from(["text", "text", "text", "caption", "joined", "left", "none"]))
    if extra in ("text", "caption"):
        message[extra] = draw(texts)
    elif extra == "joined":
        message["new_chat_members"] = [user]
    elif extra == "left":
        message["left_chat_member"] = user
    field = draw(st.sampled_from(["message", "message", "edited_message", "channel_post"]))
    return {"update_id": draw(st.integers(1, 2**31 - 1)), field: message}


VK_KINDS = ("message_new", "message_edit", "message_allow", "group_join", "group_leave", "x")
"""What VK sends (and an event type portabot does not handle)."""


@st.composite
def vk_events(
    draw: st.DrawFn, kinds: tuple[str, ...] = (*VK_KINDS, "confirmation")
) -> dict[str, Any]:
    """A Callback API event as VK sends it, in either message shape, with the right secret."""
    kind = draw(st.sampled_from(kinds))
    user_id = draw(st.integers(-(2**31), 2**31))
    body: dict[str, Any]
    if kind.startswith("message_") and kind != "message_allow":
        peer_id = user_id if draw(st.booleans()) else 2_000_000_000 + draw(st.integers(1, 999))
        message: dict[str, Any] = {
            "id": 1,
            "date": 1_700_000_000,
            "from_id": user_id,
            "peer_id": peer_id,
        }
        message["text"] = draw(texts)
        body = {"message": message, "client_info": {}} if draw(st.booleans()) else message
    else:
        body = {"user_id": user_id}
    event_id = draw(st.text("0123456789abcdef", min_size=1, max_size=40))
    return {
        "type": kind,
        "event_id": event_id,
        "v": "5.199",
        "group_id": VK_GROUP,
        "secret": VK_SECRET,
        "object": body,
    }


web_bodies = st.fixed_dictionaries(
    {"text": texts | st.text(max_size=4100)},
    optional={"id": st.text(max_size=70)},
) | st.fixed_dictionaries(
    {"payload": st.text(max_size=70) | st.text(st.characters(min_codepoint=0x400), max_size=25)},
    optional={"id": st.text(max_size=70), "message": st.text(max_size=110)},
)
"""What the web chat's page posts: a text or a button's press (its optional client id, and the
pressed bubble's id, included)."""

# Header values as a client can put them on the wire: visible bytes (Latin-1 included), with
# spaces inside only.
header_values = st.binary(max_size=60).map(
    lambda raw: bytes(b if b >= 0x21 and b != 0x7F else 0x20 for b in raw).strip()
)
content_types = st.one_of(
    st.sampled_from(
        [
            b"application/json",
            b"Application/JSON",
            b"application/json; charset=utf-8",
            b"application/json;charset=latin-1;x=y",
            b"APPLICATION/JSON ;",
            b"application/json-patch+json",
            b"application/jsonx",
            b"text/json",
            b"text/plain",
            b"application/x-www-form-urlencoded",
            b"multipart/form-data; boundary=x",
            b";application/json",
            b"",
        ]
    ),
    header_values,
    header_values.map(lambda v: b"application/json;" + v),
)
secret_headers = st.one_of(
    header_values,
    st.sampled_from([b"", SECRET.upper().encode(), (SECRET + "\xe9").encode("latin-1")]),
    st.integers(1, len(SECRET) - 1).map(lambda n: SECRET[:n].encode()),
    header_values.filter(bool).map(lambda v: SECRET.encode() + v),
    st.integers(1, 8000).map(lambda n: b"s" * n),
).filter(lambda v: v != SECRET.encode())
"""Every Telegram secret header but the right one."""


def accepted_content_type(value: bytes | None) -> bool:
    """What a JSON webhook must accept: application/json in any case, with any parameters."""
    if value is None:
        return False
    return value.decode("latin-1").partition(";")[0].strip().lower() == "application/json"
