"""The price book: every price with its currency, unit, source and date, from prices.toml and an
optional file of the user's that overrides or adds entries."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

CURRENCY = "USD"
"""Every cost is converted to this currency."""


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
        if overrides is not None:
            try:
                data = tomllib.loads(overrides.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                raise PriceError(f"cannot read {overrides}: {exc}") from None
            prices.update(parse(data, str(overrides)))
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
    """`[group.name]` tables with value, currency, unit, source, checked (and a note)."""
    prices: dict[str, Price] = {}
    for group, entries in data.items():
        if not isinstance(entries, dict):
            raise PriceError(f"{where}: [{group}] must be a table of prices")
        for name, entry in entries.items():
            key = f"{group}.{name}"
            if not isinstance(entry, dict):
                raise PriceError(f"{where}: {key} must be a table")
            try:
                prices[key] = Price(
                    id=key,
                    value=float(entry["value"]),
                    currency=str(entry.get("currency", "")),
                    unit=str(entry["unit"]),
                    source=str(entry["source"]),
                    checked=str(entry["checked"]),
                    note=str(entry.get("note", "")),
                )
            except KeyError as missing:
                raise PriceError(f"{where}: {key} has no {missing.args[0]}") from None
            except (TypeError, ValueError):
                raise PriceError(f"{where}: {key}'s value must be a number") from None
    return prices
