"""The price book: every price with its currency, unit, source and date, from prices.toml and an
optional file of the user's that overrides or adds entries."""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

CURRENCY = "USD"
"""Every cost is converted to this currency."""
TEXTS = ("currency", "unit", "source", "checked", "note")
REQUIRED = ("unit", "source", "checked")
"""Every price says what it is per, where it comes from and when that was read."""


class PriceError(Exception):
    """A price file that cannot be read; the message is one line."""


@dataclass(frozen=True, slots=True)
class Price:
    id: str
    value: float
    currency: str
    unit: str
    source: str
    checked: str
    note: str = ""


class PriceBook:
    def __init__(self, prices: dict[str, Price]) -> None:
        self.prices = prices

    @classmethod
    def load(cls, overrides: Path | None = None) -> PriceBook:
        text = files("portabot.costs").joinpath("prices.toml").read_text(encoding="utf-8")
        prices = parse(tomllib.loads(text), "prices.toml")
        check_currencies(prices, prices, "prices.toml")
        if overrides is not None:
            try:
                data = tomllib.loads(overrides.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                raise PriceError(f"cannot read {overrides}: {exc}") from None
            added = parse(data, str(overrides))
            prices.update(added)
            check_currencies(prices, added, str(overrides))
        return cls(prices)

    def __getitem__(self, key: str) -> Price:
        try:
            return self.prices[key]
        except KeyError:
            raise PriceError(f"no price {key!r} in the price book") from None

    def value(self, key: str) -> float:
        """A quantity (hours, requests) or a price in USD, converted at the book's rate."""
        price = self[key]
        if price.currency in ("", CURRENCY):
            return price.value
        return price.value * self[f"fx.{price.currency}"].value


def parse(data: dict[str, Any], where: str) -> dict[str, Price]:
    """`[group.name]` tables with value, currency, unit, source, checked (and a note); a value
    is a finite number, 0 or more, so that no file makes an option cost less than nothing."""
    prices: dict[str, Price] = {}
    for group, entries in data.items():
        if not isinstance(entries, dict):
            raise PriceError(f"{where}: [{group}] must be a table of prices")
        for name, entry in entries.items():
            key = f"{group}.{name}"
            if not isinstance(entry, dict):
                raise PriceError(f"{where}: {key} must be a table")
            value = entry.get("value")
            if value is None:
                raise PriceError(f"{where}: {key} has no value")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise PriceError(f"{where}: {key}'s value must be a number")
            if not (math.isfinite(value) and value >= 0):
                raise PriceError(f"{where}: {key}'s value must be 0 or more, not {value:g}")
            texts = {field: entry.get(field, "") for field in TEXTS}
            for field, text in texts.items():
                if not isinstance(text, str) or (field in REQUIRED and not text.strip()):
                    raise PriceError(f"{where}: {key} has no {field} (a string)")
            prices[key] = Price(id=key, value=float(value), **texts)
    return prices


def check_currencies(prices: dict[str, Price], added: dict[str, Price], where: str) -> None:
    """Every price of `added` is in a currency `prices` converts (USD, none for a quantity, or
    one with an fx. entry, itself in USD): checked at loading, not when a report prints it."""
    for key, price in added.items():
        if key.startswith("fx.") and price.currency != CURRENCY:
            raise PriceError(f"{where}: {key} must be in {CURRENCY}, not {price.currency!r}")
        if price.currency not in ("", CURRENCY) and f"fx.{price.currency}" not in prices:
            raise PriceError(
                f"{where}: {key} is in {price.currency!r}, which has no fx.{price.currency} entry"
            )
