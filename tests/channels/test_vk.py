"""The VK Callback API webhook over real HTTP, on SQLite and PostgreSQL, against a fake VK API."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from portabot.channels.vk import MAX_BODY, random_id
from portabot.conversation.engine import Flow
from portabot.testing.fakes import FakeVk
from tests.channels.test_telegram import Echo
from tests.conftest import VK_GROUP, VK_SECRET, BotFactory, post_vk, query, run, vk_event


def assert_ok(response: httpx.Response) -> None:
    assert response.status_code == 200
    assert response.text == "ok" and response.headers["content-type"].startswith("text/plain")


def test_confirmation_asks_vk_for_the_code_once(bot: httpx.Client, fake_vk: FakeVk) -> None:
    confirmation = {"type": "confirmation", "group_id": VK_GROUP}
    for _ in range(2):
        response = post_vk(bot, confirmation)
        assert response.status_code == 200 and response.text == "c0nf1rm"
        assert response.headers["content-type"].startswith("text/plain")
    assert len(fake_vk.sent("groups.getCallbackConfirmationCode")) == 1


def test_confirmation_from_settings(start_bot: BotFactory, fake_vk: FakeVk) -> None:
    bot = start_bot(vk_confirmation="from-settings")
    assert post_vk(bot, {"type": "confirmation", "group_id": VK_GROUP}).text == "from-settings"
    assert fake_vk.calls == []


def test_confirmation_for_another_group_is_refused(bot: httpx.Client) -> None:
    response = post_vk(bot, {"type": "confirmation", "group_id": VK_GROUP + 1})
    assert response.status_code == 403


def test_a_failed_confirmation_lookup_is_not_repeated_for_every_request(
    bot: httpx.Client, fake_vk: FakeVk
) -> None:
    fake_vk.fail_next(code=5, times=10, message="User authorization failed")
    confirmation = {"type": "confirmation", "group_id": VK_GROUP}
    for _ in range(20):
        response = post_vk(bot, confirmation)
        assert response.status_code == 503
        assert response.json()["error"] == "confirmation code unavailable: set VK_CONFIRMATION"
    assert len(fake_vk.failures) == 9  # one lookup: the rest were answered from its failure


def test_concurrent_confirmations_ask_vk_once(bot: httpx.Client, fake_vk: FakeVk) -> None:
    async def confirm_at_once() -> list[httpx.Response]:
        body = json.dumps({"type": "confirmation", "group_id": VK_GROUP})
        headers = {"Content-Type": "application/json"}
        async with httpx.AsyncClient(base_url=str(bot.base_url), timeout=30) as client:
            return await asyncio.gather(
                *(client.post("/webhooks/vk", content=body, headers=headers) for _ in range(10))
            )

    assert [r.text for r in run(confirm_at_once())] == ["c0nf1rm"] * 10
    assert len(fake_vk.sent("groups.getCallbackConfirmationCode")) == 1


def test_the_secret_is_checked_before_the_object(bot: httpx.Client, database_url: str) -> None:
    wrong = {**vk_event("e1"), "secret": "wrong", "object": "not an object"}
    assert post_vk(bot, wrong).status_code == 403
    # Large, and without our secret: refused without being parsed (it is not even JSON).
    unparsed = b'{"type": "message_new", "object": {' + b"x" * 200_000
    response = bot.post(
        "/webhooks/vk", content=unparsed, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 403 and response.json()["error"] == "wrong secret"
    assert query(database_url, "SELECT update_id FROM updates") == []


def test_vk_bodies_have_their_own_size_cap(bot: httpx.Client, fake_vk: FakeVk) -> None:
    padding = "x" * (MAX_BODY - 1000)
    assert_ok(post_vk(bot, vk_event("e1", "/me", padding=padding)))  # just under: answered
    assert fake_vk.texts() == [("3001", "Linked platforms: vk.")]
    response = post_vk(bot, vk_event("e2", "/me", padding=padding + "x" * 2000))
    assert response.status_code == 413
    assert response.json()["error"] == f"body over {MAX_BODY} bytes"


@pytest.mark.parametrize(
    "changes",
    [
        {"secret": "wrong"},
        {"secret": None},
        {"group_id": VK_GROUP + 1},
    ],
    ids=["wrong-secret", "no-secret", "another-group"],
)
def test_events_without_the_right_secret_and_group_are_refused(
    bot: httpx.Client, database_url: str, fake_vk: FakeVk, changes: dict[str, object]
) -> None:
    event = {k: v for k, v in {**vk_event("e1", "/help"), **changes}.items() if v is not None}
    response = post_vk(bot, event)
    assert response.status_code == 403
    assert query(database_url, "SELECT update_id FROM updates") == []
    assert fake_vk.sent() == []


@pytest.mark.parametrize("old_shape", [False, True], ids=["api-5.103+", "older-api"])
def test_both_message_shapes_are_answered_through_messages_send(
    bot: httpx.Client, fake_vk: FakeVk, old_shape: bool
) -> None:
    assert_ok(post_vk(bot, vk_event("e1", "/me", user_id=42, old_shape=old_shape)))
    [sent] = fake_vk.sent()
    assert sent["peer_id"] == "42" and sent["message"] == "Linked platforms: vk."
    assert sent["v"] == "5.199" and sent["random_id"] == str(random_id("e1:0"))


def test_replies_in_a_group_chat_go_to_the_chat(bot: httpx.Client, fake_vk: FakeVk) -> None:
    event = vk_event("e1", f"[club{VK_GROUP}|@portabot], /me", user_id=42, peer_id=2000000001)
    assert_ok(post_vk(bot, event))
    assert fake_vk.texts() == [("2000000001", "Linked platforms: vk.")]


def test_edits_joins_allows_and_leaves(
    bot: httpx.Client, fake_vk: FakeVk, database_url: str
) -> None:
    assert_ok(post_vk(bot, vk_event("e1", "/me", kind="message_edit")))
    assert_ok(post_vk(bot, vk_event("e2", kind="group_join", join_type="join")))
    assert_ok(post_vk(bot, vk_event("e3", kind="message_allow", key="k")))
    assert_ok(post_vk(bot, vk_event("e4", kind="group_leave", self=1)))
    assert [text for _, text in fake_vk.texts()] == [
        "Linked platforms: vk.",
        "Hello! Send /help to see what I can do.",
        "Hello! Send /help to see what I can do.",
    ]
    assert len(query(database_url, "SELECT update_id FROM updates")) == 4


@pytest.mark.parametrize(
    "event",
    [
        vk_event("e1", kind="wall_post_new"),
        vk_event("e2", "/me", user_id=-5),
        vk_event("e3", kind="group_join", user_id=-5),
        vk_event("e4", None),
    ],
    ids=["other-type", "community-author", "community-join", "attachments-only"],
)
def test_other_events_are_acknowledged(
    bot: httpx.Client, fake_vk: FakeVk, event: dict[str, object]
) -> None:
    assert_ok(post_vk(bot, event))
    if event["event_id"] == "e4":  # a message without text is still a message
        assert fake_vk.texts() == [("3001", "Send /help to see what I can do.")]
    else:
        assert fake_vk.sent() == []


@pytest.mark.parametrize(
    ("event", "status"),
    [
        ({**vk_event("e1"), "object": "text"}, 400),
        ({**vk_event("e1"), "object": ["a"]}, 400),
        ({k: v for k, v in vk_event("e1").items() if k != "event_id"}, 400),
        ({**vk_event("e1"), "group_id": "777"}, 400),
        (vk_event("e1", object={"message": {"text": "no author"}}), 400),
        ({**vk_event("e1"), "object": {"message": {"from_id": "1", "peer_id": 1}}}, 400),
    ],
    ids=[
        "object-text",
        "object-list",
        "no-event-id",
        "group-id-string",
        "no-from-id",
        "from-id-str",
    ],
)
def test_bad_events(
    bot: httpx.Client, database_url: str, event: dict[str, object], status: int
) -> None:
    response = post_vk(bot, event)
    assert response.status_code == status and response.json()["error"]
    assert query(database_url, "SELECT update_id FROM updates") == []


def test_a_redelivered_event_is_processed_once(
    bot: httpx.Client, fake_vk: FakeVk, database_url: str
) -> None:
    event = vk_event("e1", "/bind")
    assert_ok(post_vk(bot, event))
    for retry in ("1", "2"):
        assert_ok(post_vk(bot, event, **{"X-Retry-Counter": retry}))
    assert len(fake_vk.sent()) == 1 and fake_vk.dropped == []
    assert len(query(database_url, "SELECT code FROM link_codes")) == 1


def test_concurrent_copies_of_one_event_are_processed_once(
    bot: httpx.Client, fake_vk: FakeVk, database_url: str
) -> None:
    async def deliver_three_times(n: int) -> list[httpx.Response]:
        event = json.dumps(vk_event(f"event-{n}", "/bind", user_id=100 + n))
        headers = {"Content-Type": "application/json"}
        async with httpx.AsyncClient(base_url=str(bot.base_url), timeout=30) as client:
            return await asyncio.gather(
                *(client.post("/webhooks/vk", content=event, headers=headers) for _ in range(3))
            )

    for n in range(10):
        for response in run(deliver_three_times(n)):
            assert_ok(response)
    assert len(fake_vk.sent()) == 10 and fake_vk.dropped == []
    assert sorted(peer for peer, _ in fake_vk.texts()) == sorted(str(100 + n) for n in range(10))
    assert len(query(database_url, "SELECT code FROM link_codes")) == 10


def test_vk_error_objects_are_errors(bot: httpx.Client, fake_vk: FakeVk, database_url: str) -> None:
    fake_vk.fail_next(code=901, message="Can't send messages for users without permission")
    assert_ok(post_vk(bot, vk_event("e1", "/me")))
    [row] = query(database_url, "SELECT sent_at, attempts, last_error FROM outbox")
    assert row["sent_at"] is None and row["attempts"] == 1 and "error 901" in row["last_error"]
    assert fake_vk.sent() == []  # 901 is permanent: not tried again


def test_a_temporary_vk_error_is_retried_with_the_same_random_id(
    bot: httpx.Client, fake_vk: FakeVk, database_url: str
) -> None:
    fake_vk.fail_next(code=10, message="Internal server error")
    assert_ok(post_vk(bot, vk_event("e1", "/me")))
    [sent] = fake_vk.sent()
    assert sent["random_id"] == str(random_id("e1:0"))
    [row] = query(database_url, "SELECT sent_at, key FROM outbox")
    assert row["sent_at"] is not None and row["key"] == "e1:0"


def test_vk_is_off_without_a_token_or_group(start_bot: BotFactory) -> None:
    assert post_vk(start_bot(vk_token=None), vk_event("e1")).status_code == 404
    assert post_vk(start_bot(vk_group_id=None), vk_event("e1")).status_code == 404


def test_the_secret_is_compared_as_given(bot: httpx.Client) -> None:
    assert post_vk(bot, vk_event("e1", secret=VK_SECRET.upper())).status_code == 403


# Chat actions: service messages in a chat, as message_new with an `action`

CHAT = 2000000001


def chat_action(event_id: str, action: dict[str, object], user_id: int = 3001) -> dict[str, Any]:
    """A service message in a group chat, as VK sends it (empty text, the action beside it)."""
    event = vk_event(event_id, None, user_id=user_id, peer_id=CHAT)
    message = event["object"]["message"]
    message.update(
        action=action,
        conversation_message_id=34,
        fwd_messages=[],
        important=False,
        is_hidden=False,
        out=0,
        random_id=0,
    )
    message["id"] = 0  # messages in a chat the community is in have no id of their own
    return event


def echo(start_bot: BotFactory) -> httpx.Client:
    return start_bot(flow=Flow([Echo()], initial="echo"))


@pytest.mark.parametrize(
    ("action", "kind"),
    [
        ({"type": "chat_invite_user", "member_id": 3002}, "joined"),
        ({"type": "chat_invite_user", "member_id": -VK_GROUP}, "joined"),
        ({"type": "chat_invite_user_by_link"}, "joined"),
        ({"type": "chat_invite_user_by_message_request", "member_id": 3001}, "joined"),
        ({"type": "chat_kick_user", "member_id": 3001}, "left"),
        ({"type": "chat_kick_user", "member_id": 3002}, None),
        ({"type": "chat_kick_user", "member_id": -VK_GROUP}, None),
        (
            {
                "type": "chat_pin_message",
                "member_id": 3001,
                "conversation_message_id": 12,
                "message": "Rules: be kind",
            },
            None,
        ),
        ({"type": "chat_unpin_message", "member_id": 3001, "conversation_message_id": 12}, None),
        ({"type": "chat_title_update", "text": "Portabot users"}, None),
        (
            {
                "type": "chat_photo_update",
                "photo": {
                    "photo_50": "https://sun1-1.userapi.com/c50.jpg",
                    "photo_100": "https://sun1-1.userapi.com/c100.jpg",
                    "photo_200": "https://sun1-1.userapi.com/c200.jpg",
                },
            },
            None,
        ),
        ({"type": "chat_photo_remove"}, None),
        ({"type": "chat_create", "text": "Portabot users"}, None),
        ({"type": "chat_screenshot", "member_id": 3001}, None),
    ],
    ids=[
        "invited-someone",
        "invited-the-community",
        "joined-by-link",
        "joined-by-request",
        "left",
        "kicked-someone",
        "kicked-the-community",
        "pin",
        "unpin",
        "title",
        "photo",
        "photo-removed",
        "chat-created",
        "screenshot",
    ],
)
def test_chat_actions_reach_the_flow_as_joins_and_leaves_or_not_at_all(
    start_bot: BotFactory,
    fake_vk: FakeVk,
    database_url: str,
    action: dict[str, object],
    kind: str | None,
) -> None:
    assert_ok(post_vk(echo(start_bot), chat_action("e1", action)))
    if kind is None:
        assert fake_vk.sent() == []
        assert query(database_url, "SELECT id FROM people") == []
    else:
        assert fake_vk.texts() == [(str(CHAT), f"{kind}: ''")]
    assert len(query(database_url, "SELECT update_id FROM updates")) == 1


def test_a_message_with_a_malformed_action_is_refused(bot: httpx.Client, database_url: str) -> None:
    response = post_vk(bot, chat_action("e1", {"member_id": 3002}))
    assert response.status_code == 400 and "action.type" in response.json()["error"]
    assert query(database_url, "SELECT update_id FROM updates") == []
