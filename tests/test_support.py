"""The example support desk (examples/support.py): tickets in a table of their own, numbered by the
database, through the real pipeline on SQLite and PostgreSQL, and kept together when a person
links their accounts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.support import BUTTONS, CLOSED_KEPT, MAX_OPEN, MAX_TEXT, Tickets, flow
from portabot import Button
from portabot.conversation.loader import load_flow
from portabot.settings import ConfigurationError
from portabot.storage.migrate import upgrade
from portabot.testing import Harness, Speaker
from portabot.testing.fakes import FakeVk
from tests.conftest import (
    BotFactory,
    make_settings,
    post_telegram,
    post_vk,
    query,
    say_web,
    telegram_update,
    vk_event,
)
from tests.test_cli import portabot
from tests.test_features import rows_of

ROOT = Path(__file__).resolve().parent.parent


def opened(replies: list[str]) -> int:
    """The number in "Ticket #N is open."."""
    assert len(replies) == 1, replies
    found = re.fullmatch(r"Ticket #(\d+) is open\. .*", replies[0])
    assert found, replies
    return int(found[1])


def link(issuer: Speaker, redeemer: Speaker) -> None:
    code = issuer.say("/bind")[0].rsplit("/in ", 1)[1]
    assert redeemer.say(f"/in {code}")[0].startswith("Linked!")


# Through the Harness (SQLite).


def test_the_list_offers_a_close_button_for_each_ticket() -> None:
    with Harness(flow) as bot:
        ann = bot.person("telegram")
        assert ann.say("/help").buttons == [Button("My tickets", "tickets")]
        for problem in ("printer", "vpn", "coffee"):
            ann.say(f"/ticket {problem}")
        shown = ann.press("tickets")
        assert shown == ["#1: printer\n#2: vpn\n#3: coffee"]
        assert shown.replies[0].buttons == (
            (Button("Close #1", "close:1"), Button("Close #2", "close:2")),
            (Button("Close #3", "close:3"),),
        )
        closed = ann.press("close:2")
        assert closed == ["#1: printer\n#3: coffee"] and closed.edited == [True]
        assert closed.notice == "Ticket #2 is closed."
        assert [b.payload for b in closed.buttons] == ["close:1", "close:3"]
        # An old list's button for a ticket closed already: said so, the list brought up to date.
        again = ann.press("close:2")
        assert again.notice == "You have no open ticket #2." and again == closed
        ann.press("close:1")
        last = ann.press("close:3")
        assert last == ["You have no open tickets."] and last.buttons == []
        assert last.edited == [True]


def test_a_press_never_closes_another_persons_ticket() -> None:
    with Harness(flow) as bot:
        ann, bob = bot.person("telegram"), bot.person("vk")
        assert opened(bob.say("/ticket bob's own")) == 1
        assert opened(ann.say("/ticket ann's")) == 2
        refused = ann.press("close:1")  # a payload no button of hers carries
        assert refused.notice == "You have no open ticket #1." and refused == ["#2: ann's"]
        assert bob.say("/tickets") == ["#1: bob's own"]
        # Payloads that are not a ticket's: no ticket is touched, each gets an answer.
        for payload in ("close:", "close:x", "close:1234567890", "close:-1", "", "whatever"):
            assert ann.press(payload) == [
                "That button does nothing now; /tickets lists your open tickets."
            ]
        assert ann.press("linking:cancel") == ["Nothing to cancel: no account is being linked."]
        assert ann.say("/tickets") == ["#2: ann's"] and bob.say("/tickets") == ["#1: bob's own"]


def test_describing_offers_a_cancel_button() -> None:
    with Harness(flow) as bot:
        ann = bot.person("vk")
        asked = ann.say("/ticket")
        assert asked.buttons == [Button("Cancel", "ticket:cancel")]
        cancelled = ann.press("ticket:cancel")
        assert cancelled == ["No ticket opened."] and cancelled.edited == [True]
        assert ann.conversation.state == "desk"
        assert ann.say("/tickets") == ["You have no open tickets."]


def test_tickets_are_opened_listed_and_closed() -> None:
    with Harness(flow) as bot:
        ann = bot.person("web")
        assert ann.say("/start")[0].startswith("Support desk:\n/ticket <problem> – open a ticket")
        assert opened(ann.say("/ticket The printer is on fire")) == 1
        assert ann.say("/ticket") == ["Describe the problem in one message (or /cancel)."]
        assert ann.conversation.state == "describing"
        assert opened(ann.say("VPN drops every hour")) == 2
        assert ann.conversation.state == "desk"
        assert ann.say("/tickets") == ["#1: The printer is on fire\n#2: VPN drops every hour"]
        assert ann.say("/close #1") == ["Ticket #1 is closed."]
        assert ann.say("/close 1") == ["You have no open ticket #1; /tickets lists yours."]
        assert ann.say("/tickets") == ["#2: VPN drops every hour"]
        assert ann.conversation.data == {}  # the tickets are in their table, not the state


def test_numbers_come_from_the_database_and_each_person_sees_their_own() -> None:
    with Harness(flow) as bot:
        ann, bob = bot.person("web"), bot.person("telegram")
        assert [opened(ann.say("/ticket a")), opened(bob.say("/ticket b"))] == [1, 2]
        assert opened(ann.say("/ticket c")) == 3
        assert ann.say("/tickets") == ["#1: a\n#3: c"]
        assert bob.say("/close 1") == ["You have no open ticket #1; /tickets lists yours."]
        assert ann.say("/tickets") == ["#1: a\n#3: c"]
        assert bot.person("vk").say("/tickets") == ["You have no open tickets."]


def test_what_is_not_a_ticket_is_answered() -> None:
    with Harness(flow) as bot:
        ann = bot.person("web")
        assert ann.say("hello") == ["Send /ticket <problem> to open a ticket, or /help."]
        assert ann.say("/frobnicate") == ["Unknown command. Send /help for the list."]
        for wrong in ("/close", "/close two", "/close 1234567890"):
            assert ann.say(wrong) == [
                "Send the ticket's number: /close <number> (/tickets lists yours)."
            ]
        ann.say("/ticket")
        assert "/cancel – open no ticket" in ann.say("/help")[0]
        assert ann.say("/cancel") == ["No ticket opened."]
        assert ann.conversation.state == "desk"
        assert ann.say("/tickets") == ["You have no open tickets."]


def test_a_stranger_is_held_to_the_limits() -> None:
    with Harness(flow) as bot:
        ann = bot.person("web")
        too_long = "x" * (MAX_TEXT + 1)
        refusal = f"Please describe it in at most {MAX_TEXT} characters ({MAX_TEXT + 1} now)."
        assert ann.say(f"/ticket {too_long}") == [refusal]
        ann.say("/ticket")
        assert ann.say(too_long) == [refusal]
        assert ann.conversation.state == "describing"  # they may try again, shorter
        assert opened(ann.say("y" * MAX_TEXT)) == 1
        for _ in range(MAX_OPEN - 1):
            opened(ann.say("/ticket more"))
        assert ann.say("/ticket one too many") == [
            f"You have {MAX_OPEN} open tickets; close one first."
        ]
        ann.say("/close 3")
        assert opened(ann.say("/ticket now it fits")) == MAX_OPEN + 1
        shown = ann.say("/tickets")
        listed = shown[0].splitlines()
        assert len(listed) == MAX_OPEN + 2  # and, after a blank line, what the buttons close
        assert listed[-1] == "The buttons close the first 10; /close <number> closes any."
        assert listed[0] == f"#1: {'y' * 99}…"  # the list shows the start of a long one
        assert len(shown.buttons) == BUTTONS == 10
        assert shown.buttons[2] == Button("Close #4", "close:4")  # #3 is closed


def test_a_redelivered_message_opens_one_ticket() -> None:
    with Harness(flow) as bot:
        ann = bot.person("telegram")
        assert opened(ann.say("/ticket Lost my password")) == 1
        ann.redeliver()
        assert ann.say("/tickets") == ["#1: Lost my password"]


def test_linked_accounts_share_their_tickets() -> None:
    with Harness(flow) as bot:
        web, telegram = bot.person("web"), bot.person("telegram")
        opened(web.say("/ticket from the web"))
        opened(telegram.say("/ticket from telegram"))
        link(web, telegram)
        both = ["#1: from the web\n#2: from telegram"]
        assert web.say("/tickets") == both
        assert telegram.say("/tickets") == both
        assert telegram.say("/close 1") == ["Ticket #1 is closed."]
        assert web.say("/tickets") == ["#2: from telegram"]


def test_maintain_deletes_tickets_closed_a_month_ago_and_never_gives_a_number_again() -> None:
    with Harness(flow) as bot:
        ann = bot.person("web")
        opened(ann.say("/ticket old"))
        opened(ann.say("/ticket still open"))
        ann.say("/close 1")
        tickets = Tickets()
        line = "support tickets: {} deleted (closed more than 30 days ago)"
        assert bot.run(tickets.purge(bot.bot.db, bot.now + CLOSED_KEPT - 1)) == line.format(0)
        bot.advance(CLOSED_KEPT + 1)
        assert bot.run(tickets.purge(bot.bot.db, bot.now)) == line.format(1)
        assert ann.say("/tickets") == ["#2: still open"]
        ann.say("/close 2")
        bot.advance(CLOSED_KEPT + 1)
        assert bot.run(tickets.purge(bot.bot.db, bot.now)) == line.format(1)
        assert opened(ann.say("/ticket new")) == 3  # not 1: the table is empty, the count is not


# Through the server, on SQLite and PostgreSQL.


@pytest.fixture
def desk(database_url: str, start_bot: BotFactory) -> httpx.Client:
    """The desk on a database with its table, empty and numbering from 1."""
    upgrade(database_url, Tickets().tables)
    if database_url.startswith("postgresql"):
        query(database_url, "TRUNCATE support_tickets RESTART IDENTITY")
    return start_bot(flow)


def test_the_database_numbers_the_tickets(desk: httpx.Client, database_url: str) -> None:
    assert say_web(desk, "/ticket The printer is on fire")[0].startswith("Ticket #1 is open")
    with httpx.Client(base_url=desk.base_url) as someone_else:
        assert say_web(someone_else, "/ticket Me too")[0].startswith("Ticket #2 is open")
        assert say_web(someone_else, "/close 1") == [
            "You have no open ticket #1; /tickets lists yours."
        ]
    assert say_web(desk, "/ticket") == ["Describe the problem in one message (or /cancel)."]
    assert say_web(desk, "VPN drops")[0].startswith("Ticket #3 is open")
    assert say_web(desk, "/tickets") == ["#1: The printer is on fire\n#3: VPN drops"]
    assert say_web(desk, "/close 1") == ["Ticket #1 is closed."]
    rows = rows_of(
        database_url, "SELECT number, text, closed_at IS NULL AS open FROM support_tickets"
    )
    got = sorted((row["number"], row["text"], bool(row["open"])) for row in rows)
    assert got == [
        (1, "The printer is on fire", False),
        (2, "Me too", True),
        (3, "VPN drops", True),
    ]


def test_tickets_follow_a_person_across_linked_platforms(
    desk: httpx.Client, database_url: str
) -> None:
    assert say_web(desk, "/ticket from the web")[0].startswith("Ticket #1 is open")
    sent = post_telegram(desk, telegram_update(1, "/ticket from telegram")).json()
    assert sent["text"].startswith("Ticket #2 is open")
    code = say_web(desk, "/bind")[0].rsplit("/in ", 1)[1]
    assert (
        post_telegram(desk, telegram_update(2, f"/in {code}")).json()["text"].startswith("Linked!")
    )
    both = "#1: from the web\n#2: from telegram"
    assert post_telegram(desk, telegram_update(3, "/tickets")).json()["text"] == both
    assert say_web(desk, "/tickets") == [both]
    people = {row["person_id"] for row in rows_of(database_url, "SELECT * FROM support_tickets")}
    assert len(people) == 1


def test_a_message_delivered_twice_opens_one_ticket(desk: httpx.Client, database_url: str) -> None:
    update = telegram_update(7, "/ticket Lost my password")
    assert post_telegram(desk, update).json()["text"].startswith("Ticket #1 is open")
    assert post_telegram(desk, update).status_code == 200
    assert len(rows_of(database_url, "SELECT * FROM support_tickets")) == 1
    assert post_telegram(desk, telegram_update(8, "/tickets")).json()["text"] == (
        "#1: Lost my password"
    )


def test_the_same_flow_serves_vk(desk: httpx.Client, fake_vk: FakeVk) -> None:
    assert post_vk(desk, vk_event("v1", "/tickets")).text == "ok"
    assert fake_vk.texts() == [("3001", "You have no open tickets.")]


# Migrating, and BOT_FLOW.


def support_tables(url: str) -> list[Any]:
    if url.startswith("sqlite"):
        sql = "SELECT name FROM sqlite_master WHERE name = 'support_tickets'"
    else:
        sql = "SELECT tablename AS name FROM pg_tables WHERE tablename = 'support_tickets'"
    return rows_of(url, sql)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_portabot_migrate_creates_the_desks_table(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if dialect == "sqlite":
        url = f"sqlite:///{tmp_path / 'desk.db'}"
    else:
        url = request.getfixturevalue("new_postgres")("support-migrate")
    migrated = portabot(ROOT, "migrate", DATABASE_URL=url, BOT_FLOW="examples.support:flow")
    assert migrated.returncode == 0, migrated.stderr
    assert len(support_tables(url)) == 1
    again = portabot(ROOT, "migrate", DATABASE_URL=url, BOT_FLOW="examples.support:flow")
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("examples.nowhere:flow", "cannot import examples.nowhere"),
        ("examples.support:missing", "examples.support has no missing"),
        ("examples.support:MAX_OPEN", "neither a Flow nor a function returning one"),
    ],
)
def test_a_wrong_bot_flow_is_a_clear_configuration_error(spec: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        load_flow(make_settings(bot_flow=spec))


def test_bot_flow_must_name_an_attribute() -> None:
    with pytest.raises(ValueError, match=r"package\.module:attribute"):
        make_settings(bot_flow="examples.support")
