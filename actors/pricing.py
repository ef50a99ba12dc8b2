"""What a model's tokens cost: the one price table, in USD per million tokens, and the
optional `prices.toml` in the data folder that overrides or extends it.

A price is found by model family: a key is a model id or the start of one, and the longest
key that the model's id starts with (up to a `-` or `@`) wins. So `claude-sonnet-4` prices
`claude-sonnet-4-6` and `claude-sonnet-4-20250514`, while `claude-sonnet-5-5` has its own
row. A model no key fits has no price: its cost is shown as unknown, never guessed.

The defaults are Anthropic's list prices as published on
https://platform.claude.com/docs/en/about-claude/pricing and the models' own pages, read on
2026-12-02 for every model the installed SDK names (anthropic 2.15.0, `anthropic.types.Model`:
claude-fable-5-2, claude-mythos-5-2, claude-haiku-5-5, claude-sonnet-5-5, claude-fable-5-1,
claude-opus-5-5, claude-mythos-5-1, claude-sonnet-5, claude-fable-5, claude-mythos-5,
claude-opus-5, claude-opus-4-8, claude-opus-4-7, claude-mythos-preview, claude-opus-4-6,
claude-sonnet-4-6, claude-haiku-4-5(-20251001), claude-opus-4-5(-20251101)) and for the
older families a group may still name. Fable and Mythos 5.2 and Mythos Preview are taken from
their launch announcements, which the pricing page did not yet list. Prompt caching costs
1.25x the input price to write for 5 minutes, 2x for an hour and 0.1x to read, unless a row
says otherwise (several newer models read cache for less).

Not modelled: Haiku 5.5 bills a request whose prompt exceeds 100k tokens at 5x its rates;
usage is kept per day, not per request, so it is priced at the lower band here. Batch and
priority tiers do not pass through the proxy.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final

import msgspec

PRICES_FILE: Final = "prices.toml"

_PER: Final = 1_000_000
# The standard prompt-cache multipliers, of the input price.
CACHE_WRITE_5M: Final = 1.25
CACHE_WRITE_1H: Final = 2.0
CACHE_READ: Final = 0.1

# Where a family key may end inside a model id: a dated snapshot ("-20250514") or a
# Vertex-style version ("@20250514") follows the family name.
_BOUNDARIES: Final = ("-", "@")


class PricesError(ValueError):
    """`prices.toml` is unreadable or says something the table cannot take."""


class Tokens(msgspec.Struct, frozen=True, kw_only=True):
    """Tokens as they are billed. `cache_write` counts every cache write; `cache_write_1h`
    is the part of it written with the one-hour lifetime (billed higher)."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    cache_write_1h: int = 0


class Price(msgspec.Struct, frozen=True, kw_only=True):
    """USD per million tokens of one model family."""

    input: float
    output: float
    cache_read: float
    cache_write_5m: float
    cache_write_1h: float

    @classmethod
    def standard(cls, input: float, output: float, *, cache_read: float | None = None) -> Price:
        """A family priced with the standard cache multipliers (reads possibly cheaper)."""
        return cls(
            input=input,
            output=output,
            cache_read=input * CACHE_READ if cache_read is None else cache_read,
            cache_write_5m=input * CACHE_WRITE_5M,
            cache_write_1h=input * CACHE_WRITE_1H,
        )

    def cost(self, tokens: Tokens) -> float:
        # A count of 1h writes above the total (a hostile or buggy upstream) is capped rather
        # than turned into a negative 5-minute count.
        one_hour = min(tokens.cache_write_1h, tokens.cache_write)
        return (
            tokens.input * self.input
            + tokens.output * self.output
            + tokens.cache_read * self.cache_read
            + (tokens.cache_write - one_hour) * self.cache_write_5m
            + one_hour * self.cache_write_1h
        ) / _PER


_OPUS_4_5: Final = Price.standard(5, 25)
_OPUS_OLD: Final = Price.standard(15, 75)
_SONNET_OLD: Final = Price.standard(3, 15)

DEFAULT_PRICES: Final[Mapping[str, Price]] = {
    # Mythos is the Fable model for invited customers, at Fable's prices.
    "claude-fable-5-2": Price.standard(8, 40, cache_read=0.20),
    "claude-mythos-5-2": Price.standard(8, 40, cache_read=0.20),
    "claude-fable-5-1": Price.standard(10, 50, cache_read=0.25),
    "claude-mythos-5-1": Price.standard(10, 50, cache_read=0.25),
    "claude-fable-5": Price.standard(10, 50),
    "claude-mythos-5": Price.standard(10, 50),
    "claude-mythos-preview": Price.standard(25, 125),
    "claude-opus-5-5": Price.standard(4, 20, cache_read=0.20),
    "claude-opus-5": _OPUS_4_5,
    "claude-opus-4-8": _OPUS_4_5,
    "claude-opus-4-7": _OPUS_4_5,
    "claude-opus-4-6": _OPUS_4_5,
    "claude-opus-4-5": _OPUS_4_5,
    # Opus 4 and 4.1 kept the old Opus price.
    "claude-opus-4": _OPUS_OLD,
    "claude-3-opus": _OPUS_OLD,
    # Sonnet 5.5's cache reads went from $0.20 to $0.10 on 2026-10-07.
    "claude-sonnet-5-5": Price.standard(2, 10, cache_read=0.10),
    "claude-sonnet-5": Price.standard(2, 10),
    "claude-sonnet-4": _SONNET_OLD,  # 4, 4.5 and 4.6
    "claude-3-7-sonnet": _SONNET_OLD,
    "claude-3-5-sonnet": _SONNET_OLD,
    "claude-haiku-5-5": Price.standard(0.10, 0.50),  # prompts up to 100k tokens; see above
    "claude-haiku-4-5": Price.standard(1, 5),
    "claude-3-5-haiku": Price.standard(0.80, 4),
    "claude-3-haiku": Price(input=0.25, output=1.25, cache_read=0.03, cache_write_5m=0.30, cache_write_1h=0.50),
}


class PriceTable:
    """Prices by model-family key; `price_of` finds a model's."""

    def __init__(self, entries: Mapping[str, Price]) -> None:
        self.entries: Mapping[str, Price] = dict(entries)
        # Longest first: the first key that fits is the most specific one.
        self._keys = sorted(self.entries, key=len, reverse=True)

    def price_of(self, model: str) -> Price | None:
        for key in self._keys:
            if model == key or (model.startswith(key) and model[len(key)] in _BOUNDARIES):
                return self.entries[key]
        return None

    def cost(self, model: str, tokens: Tokens) -> float | None:
        """USD, or None when the model has no price."""
        price = self.price_of(model)
        return None if price is None else price.cost(tokens)


def default_prices() -> PriceTable:
    return PriceTable(DEFAULT_PRICES)


# -- prices.toml ---------------------------------------------------------------------------

# Generous, but a typo of a few orders of magnitude is caught.
_Rate = Annotated[float, msgspec.Meta(ge=0, le=10_000)]
_ModelKey = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}$")]


class _FileEntry(msgspec.Struct, forbid_unknown_fields=True):
    input: _Rate
    output: _Rate
    cache_read: _Rate | None = None
    cache_write_5m: _Rate | None = None
    cache_write_1h: _Rate | None = None

    def price(self) -> Price:
        standard = Price.standard(self.input, self.output)
        return Price(
            input=self.input,
            output=self.output,
            cache_read=standard.cache_read if self.cache_read is None else self.cache_read,
            cache_write_5m=standard.cache_write_5m if self.cache_write_5m is None else self.cache_write_5m,
            cache_write_1h=standard.cache_write_1h if self.cache_write_1h is None else self.cache_write_1h,
        )


class _PricesFile(msgspec.Struct, forbid_unknown_fields=True):
    # Entries are checked one by one: msgspec's error would not say which model's is wrong.
    models: dict[_ModelKey, Any] = {}


def load_prices(data_dir: Path) -> PriceTable:
    """The default table with `data_dir/prices.toml` over it, when there is one.
    Raises `PricesError`, naming the file and what is wrong in it."""
    path = data_dir / PRICES_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return default_prices()
    except OSError as exc:
        raise PricesError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        parsed = tomllib.loads(raw.decode("utf-8"))
        given = msgspec.convert(parsed, _PricesFile)
    except UnicodeDecodeError:
        raise PricesError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise PricesError(f"{path}: not valid TOML: {exc}") from None
    except msgspec.ValidationError as exc:
        raise PricesError(f"{path}: {exc} (expected tables like [models.<model id>] with input and output)") from None
    entries = dict(DEFAULT_PRICES)
    for key, entry in given.models.items():
        try:
            entries[key] = msgspec.convert(entry, _FileEntry).price()
        except msgspec.ValidationError as exc:
            raise PricesError(f"{path}: [models.{key}] {exc}") from None
    return PriceTable(entries)
