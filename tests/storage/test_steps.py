"""What a process remembers of the people it stepped: bounded in number and in bytes, forgotten
when stale, and a person found stale is contended for a while."""

from __future__ import annotations

from portabot.messages import Account, Conversation
from portabot.storage.people import Person
from portabot.storage.steps import Remembered


def account(n: int) -> Account:
    return Account("telegram", str(n), str(n))


def person(n: int, text: str = "") -> Person:
    return Person(n, Conversation("start", {"note": text}), ("telegram",), 0.0, 1)


def test_the_least_recently_used_go_first_beyond_the_number() -> None:
    remembered = Remembered(size=2)
    remembered.put(account(1), person(1))
    remembered.put(account(2), person(2))
    assert remembered.get(account(1)) == person(1)  # now the most recently used
    remembered.put(account(3), person(3))
    assert remembered.get(account(2)) is None
    assert remembered.get(account(1)) == person(1) and remembered.get(account(3)) == person(3)


def test_large_states_are_bounded_by_their_bytes() -> None:
    remembered = Remembered(budget=30_000)
    for n in range(5):  # some 10 KB of state each: three fit
        remembered.put(account(n), person(n, "x" * 10_000))
    assert [remembered.get(account(n)) is not None for n in range(5)] == [False] * 3 + [True] * 2
    remembered.put(account(9), person(9, "y" * 40_000))  # more than the whole budget
    assert all(remembered.get(account(n)) is None for n in (3, 4, 9))
    remembered.put(account(1), person(1))  # the bytes were given back
    assert remembered.get(account(1)) == person(1)


def test_a_stale_copy_is_forgotten_and_its_person_contended_for_a_while() -> None:
    remembered = Remembered()
    remembered.put(account(1), person(1))
    remembered.moved(account(1))
    assert remembered.get(account(1)) is None and remembered.contended(account(1))
    assert not remembered.contended(account(2))
    brief = Remembered(contended=0.0)
    brief.moved(account(1))
    assert not brief.contended(account(1))  # over at once
