"""What tokens cost: a price table per model, and the cost of a request.

A price is US dollars per million tokens, input and output apart (the way
every provider publishes them).  A table comes from a mapping, a YAML or JSON
file, or the small built-in :data:`DEFAULT_PRICES` (dated: prices change, so
check them against the provider's page before you rely on a figure)::

    # prices.yaml
    as_of: 2026-12-01          # optional: when you copied these figures
    models:
      gpt-4o-mini: {input: 0.15, output: 0.60}
      my-finetune: {input: 0.30, output: 1.20}

(a flat ``model: {input, output}`` mapping, without ``models:``, is read too).

A model is found by its name as the request gave it, then without a
``provider/`` or ``models/`` prefix, then by the longest priced name it
starts with followed by ``-``, ``:`` or ``@`` (``gpt-4o-mini-2024-07-18`` is
priced as ``gpt-4o-mini``; ``gpt-4o-mini`` is not priced as ``gpt-4o``).
A model with no price costs None (unknown), never a guess; the statistics
list such models as unpriced.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_PRICES",
    "DEFAULT_PRICES_AS_OF",
    "Price",
    "PriceTable",
    "PriceTableError",
    "load_prices",
]

PER_TOKENS = 1_000_000
"""Prices are per this many tokens."""
_SEPARATORS = ("-", ":", "@")
_MAX_REMEMBERED = 1024  # model names whose lookup is remembered


class PriceTableError(ValueError):
    """A price table that cannot be used; the message names the entry and the fix."""


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million input and output tokens."""

    input: float
    output: float

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input + tokens_out * self.output) / PER_TOKENS


class PriceTable:
    """Prices by model name; see the module docstring for how a name is found."""

    __slots__ = ("prices", "as_of", "source", "_found")

    def __init__(
        self, prices: Mapping[str, Any], *, as_of: str | None = None, source: str = "a mapping"
    ) -> None:
        if not isinstance(prices, Mapping):
            raise PriceTableError(
                f"prices from {source} must be a mapping of model name to "
                f"{{input: ..., output: ...}}, got {type(prices).__name__}"
            )
        self.prices: dict[str, Price] = {
            _model_name(name, source): _price(name, value, source) for name, value in prices.items()
        }
        self.as_of = None if as_of is None else str(as_of)
        self.source = source
        self._found: dict[str, Price | None] = {}

    def price(self, model: str | None) -> Price | None:
        """The price of ``model``, or None when the table has none."""
        if model is None:
            return None
        found = self._found
        if model in found:
            return found[model]
        price = self._lookup(model)
        if len(found) < _MAX_REMEMBERED:
            found[model] = price
        return price

    def _lookup(self, model: str) -> Price | None:
        prices = self.prices
        price = prices.get(model)
        if price is not None:
            return price
        bare = model.rsplit("/", 1)[-1]
        price = prices.get(bare)
        if price is not None:
            return price
        best = None
        for name in prices:
            if (
                len(bare) > len(name)
                and bare.startswith(name)
                and bare[len(name)] in _SEPARATORS
                and (best is None or len(name) > len(best))
            ):
                best = name
        return None if best is None else prices[best]

    def cost(self, model: str | None, tokens_in: int, tokens_out: int) -> float | None:
        """US dollars for these tokens of ``model``; None when it has no price."""
        price = self.price(model)
        return None if price is None else price.cost(tokens_in, tokens_out)

    def merged_over(self, base: PriceTable) -> PriceTable:
        """This table's prices over ``base``'s (this one wins for a model both price)."""
        table = PriceTable({}, as_of=self.as_of, source=self.source)
        table.prices = {**base.prices, **self.prices}
        return table

    def as_dict(self) -> dict[str, Any]:
        """The table as plain data (as a price file would have it)."""
        return {
            "as_of": self.as_of,
            "models": {
                name: {"input": p.input, "output": p.output} for name, p in self.prices.items()
            },
        }

    def __len__(self) -> int:
        return len(self.prices)

    def __repr__(self) -> str:
        return f"PriceTable({len(self.prices)} models from {self.source}, as of {self.as_of})"


def _model_name(name: Any, source: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise PriceTableError(f"prices from {source}: a model name must be text, got {name!r}")
    return name.strip()


def _price(name: str, value: Any, source: str) -> Price:
    if isinstance(value, Price):
        return value
    if isinstance(value, (list, tuple)) and len(value) == 2:
        value = {"input": value[0], "output": value[1]}
    if not isinstance(value, Mapping) or set(value) - {"input", "output"} or "input" not in value:
        raise PriceTableError(
            f"prices from {source}: {name!r} must be {{input: dollars, output: dollars}} "
            f"per million tokens (output may be left out for embeddings), got {value!r}"
        )
    figures = []
    for part in ("input", "output"):
        figure = value.get(part, 0.0)
        if (
            isinstance(figure, bool)
            or not isinstance(figure, (int, float))
            or not math.isfinite(figure)
            or figure < 0
        ):
            raise PriceTableError(
                f"prices from {source}: {name!r} {part} must be a number of dollars >= 0 "
                f"per million tokens, got {figure!r}"
            )
        figures.append(float(figure))
    return Price(figures[0], figures[1])


def _read_file(path: str) -> PriceTable:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise PriceTableError(
            f"price file {path} does not exist; give the path of a YAML or JSON price file"
        ) from None
    except OSError as exc:
        raise PriceTableError(f"price file {path} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise PriceTableError(
            f"price file {path} is not UTF-8 text; give a YAML or JSON price file"
        ) from None
    try:
        if path.endswith(".json"):
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except ValueError as exc:  # json.JSONDecodeError and yaml.YAMLError's subclasses below
        raise PriceTableError(f"price file {path} is not valid JSON: {exc}") from None
    except Exception as exc:  # yaml.YAMLError
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PriceTableError(f"price file {path} is not valid YAML: {first}") from None
    return _from_data(data, f"price file {path}")


def _from_data(data: Any, source: str) -> PriceTable:
    if isinstance(data, Mapping) and "models" in data:
        unknown = set(data) - {"models", "as_of", "currency"}
        if unknown:
            raise PriceTableError(
                f"{source}: unknown entries {sorted(map(str, unknown))}; a price file has "
                "models, and may have as_of and currency"
            )
        currency = data.get("currency", "USD")
        if currency != "USD":
            raise PriceTableError(f"{source}: currency must be USD, got {currency!r}")
        return PriceTable(data["models"] or {}, as_of=data.get("as_of"), source=source)
    if data is None:
        raise PriceTableError(f"{source} is empty; it needs models: {{name: {{input, output}}}}")
    return PriceTable(data, source=source)


def load_prices(value: Any) -> PriceTable:
    """A price table from a :class:`PriceTable`, a mapping (a price file's
    content), or the path of a YAML or JSON price file."""
    if isinstance(value, PriceTable):
        return value
    if isinstance(value, (str, os.PathLike)):
        return _read_file(os.fspath(value))
    if isinstance(value, Mapping):
        return _from_data(value, "a mapping")
    raise PriceTableError(
        f"prices must be a PriceTable, a mapping of model to {{input, output}} or the path of "
        f"a price file, got {type(value).__name__}"
    )


DEFAULT_PRICES_AS_OF = "2025-08"
"""When the built-in figures were copied from the providers' price pages."""

DEFAULT_PRICES = PriceTable(
    {
        # OpenAI
        "gpt-4o": (2.50, 10.00),
        "gpt-4o-mini": (0.15, 0.60),
        "gpt-4.1": (2.00, 8.00),
        "gpt-4.1-mini": (0.40, 1.60),
        "gpt-4.1-nano": (0.10, 0.40),
        "o3-mini": (1.10, 4.40),
        "text-embedding-3-small": (0.02, 0.0),
        "text-embedding-3-large": (0.13, 0.0),
        # Anthropic
        "claude-3-5-haiku": (0.80, 4.00),
        "claude-3-5-sonnet": (3.00, 15.00),
        "claude-sonnet-4": (3.00, 15.00),
        "claude-opus-4": (15.00, 75.00),
        # Google Gemini
        "gemini-2.0-flash": (0.10, 0.40),
        "gemini-2.5-flash": (0.30, 2.50),
        "gemini-2.5-pro": (1.25, 10.00),
        # Groq
        "llama-3.1-8b-instant": (0.05, 0.08),
        "llama-3.3-70b-versatile": (0.59, 0.79),
    },
    as_of=DEFAULT_PRICES_AS_OF,
    source="the built-in table",
)
"""A few common models' list prices (standard tier, text, no cache or batch
discount) as of :data:`DEFAULT_PRICES_AS_OF`: check them before you rely on
them; a price file overrides any of them."""
