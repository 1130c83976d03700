"""The price table: how a model finds its price, what a file may hold, and
what it costs; exact figures, no I/O but the files in tmp_path."""

from __future__ import annotations

import json

import pytest

from ipfs_accelerate_py.resilience import prices as prices_module
from ipfs_accelerate_py.resilience.prices import (
    DEFAULT_PRICES,
    Price,
    PriceTable,
    PriceTableError,
    load_prices,
)


def test_cost_is_per_million_tokens_input_and_output_apart():
    table = PriceTable({"m": {"input": 2.0, "output": 8.0}})
    assert table.cost("m", 1_000_000, 0) == 2.0
    assert table.cost("m", 0, 500_000) == 4.0
    assert table.cost("m", 250, 125) == pytest.approx((250 * 2 + 125 * 8) / 1e6)
    assert table.cost("other", 10, 10) is None


def test_the_longest_priced_prefix_before_a_separator_wins():
    table = PriceTable({"llama": (1, 1), "llama-3": (2, 2), "llama-3.1": (3, 3)})
    assert table.price("llama-3.1-8b") == Price(3.0, 3.0)
    assert table.price("llama-3-70b") == Price(2.0, 2.0)
    assert table.price("llama:latest") == Price(1.0, 1.0)
    assert table.price("llama@v2") == Price(1.0, 1.0)
    assert table.price("llamas") is None  # no separator after the name: another model
    assert table.price("models/llama-3") == Price(2.0, 2.0)


def test_lookups_are_remembered_up_to_a_bound(monkeypatch):
    monkeypatch.setattr(prices_module, "_MAX_REMEMBERED", 2)
    table = PriceTable({"m": (1, 1)})
    for name in ("m-1", "m-2", "m-3", "m-1"):
        assert table.price(name) == Price(1.0, 1.0)
    assert len(table._found) == 2


def test_a_json_file_and_a_flat_mapping_are_read(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"models": {"a": {"input": 1}}, "as_of": "2026-01"}))
    table = load_prices(path)
    assert table.price("a") == Price(1.0, 0.0) and table.as_of == "2026-01"
    assert str(path) in table.source
    flat = load_prices({"b": {"input": 1, "output": 2}})
    assert flat.price("b") == Price(1.0, 2.0) and flat.as_of is None


def test_a_table_over_the_defaults_wins_where_both_price_a_model():
    mine = PriceTable({"gpt-4o": (1, 1), "mine": (5, 5)}).merged_over(DEFAULT_PRICES)
    assert mine.price("gpt-4o") == Price(1.0, 1.0)
    assert mine.price("mine") == Price(5.0, 5.0)
    assert mine.price("gpt-4o-mini") == DEFAULT_PRICES.price("gpt-4o-mini")
    assert len(mine) == len(DEFAULT_PRICES) + 1


@pytest.mark.parametrize(
    "data, why",
    [
        ({"m": {"input": True}}, "input must be a number of dollars"),
        ({"m": {"input": float("nan")}}, "input must be a number of dollars"),
        ({"m": {"output": 1}}, "must be {input: dollars, output: dollars}"),
        ({"m": "cheap"}, "must be {input: dollars, output: dollars}"),
        ({"": (1, 1)}, "a model name must be text"),
        ({"models": {"m": (1, 1)}, "currency": "USD", "note": "x"}, "unknown entries ['note']"),
    ],
)
def test_bad_tables_are_refused_naming_the_entry(data, why):
    with pytest.raises(PriceTableError) as caught:
        load_prices(data)
    assert why in str(caught.value)


def test_what_is_not_a_table_is_refused(tmp_path):
    with pytest.raises(PriceTableError, match="must be a PriceTable, a mapping"):
        load_prices(3)
    with pytest.raises(PriceTableError, match="must be a mapping of model name"):
        PriceTable([("m", 1)])  # type: ignore[arg-type]
    binary = tmp_path / "prices.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PriceTableError, match="is not UTF-8 text"):
        load_prices(binary)
    with pytest.raises(PriceTableError, match="is not valid JSON"):
        (tmp_path / "p.json").write_text("{")
        load_prices(tmp_path / "p.json")


def test_the_table_reads_back_as_a_price_file_would_have_it():
    table = PriceTable({"m": (1, 2)}, as_of="2026-12-01", source="mine")
    assert table.as_dict() == {
        "as_of": "2026-12-01",
        "models": {"m": {"input": 1.0, "output": 2.0}},
    }
    again = load_prices(table.as_dict())
    assert again.prices == table.prices and again.as_of == table.as_of
    assert "1 models from mine, as of 2026-12-01" in repr(table)
