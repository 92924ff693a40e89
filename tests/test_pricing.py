"""Prices and the cost arithmetic."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from cascade import pricing
from cascade.pricing import Price, price_of


def test_the_numbers_in_the_issue_reproduce() -> None:
    gpt4o, mini = price_of("gpt-4o"), price_of("gpt-4o-mini")
    assert gpt4o is not None and mini is not None
    n = 1_000_000
    assert n * gpt4o.cost(800, 400) == Decimal(6000)
    assert n * mini.cost(800, 400) == Decimal(360)
    cascade_cost = n * mini.cost(800, 400) + Decimal("0.4") * n * gpt4o.cost(800, 400)
    assert cascade_cost == Decimal(2760)


def test_dated_model_names_fall_back_to_their_family() -> None:
    assert price_of("gpt-4o-mini-2099-01-01") == price_of("gpt-4o-mini")
    assert price_of("gpt-4o-2024-05-13") != price_of("gpt-4o")  # listed with its own price


def test_cached_input_defaults_to_input_price() -> None:
    p = Price(Decimal(1), Decimal(2))
    assert p.cost(1000, 0, cached_tokens=500) == Decimal("0.001")


def test_unknown_model_warns_and_returns_none() -> None:
    with pytest.warns(pricing.UnknownPriceWarning, match="mystery"):
        assert price_of("mystery") is None


def test_prices_file_from_the_environment_extends_the_table(tmp_path, monkeypatch) -> None:
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"models": {"mystery": {"input": 1, "output": 2}}}))
    monkeypatch.setenv("CASCADE_PRICES", str(f))
    pricing.builtin_prices.cache_clear()
    try:
        assert price_of("mystery") == Price(Decimal(1), Decimal(2))
    finally:
        monkeypatch.delenv("CASCADE_PRICES")
        pricing.builtin_prices.cache_clear()
