"""What a request costs (accounting/pricing.py): the price database
(genai-prices) for the models it knows, at the provider that served them,
with long-context tiers; the [pricing] table over it; and
pricing.unknown_model for the rest."""

from __future__ import annotations

import pytest

from trioproxy.accounting.pricing import PriceBook, provider_hint
from trioproxy.accounting.usage import Usage
from trioproxy.config.model import Price
from trioproxy.config.pricing import parse_pricing, parse_unknown_model

M = 1_000_000


def test_the_database_prices_claude_code_s_default_model() -> None:
    book = PriceBook()
    rates = book.rates("claude-opus-5-5")
    assert rates is not None and rates.source == "genai-prices"
    assert book.cost(Usage(input_tokens=M, model="claude-opus-5-5")) == pytest.approx(4)
    assert book.cost(Usage(output_tokens=M, model="claude-opus-5-5")) == pytest.approx(20)
    # Cache writes cost more than input, reads less: the database's own rates.
    write = book.cost(Usage(cache_creation_input_tokens=M, model="claude-opus-5-5"))
    read = book.cost(Usage(cache_read_input_tokens=M, model="claude-opus-5-5"))
    assert write is not None and read is not None and write > 4 > read > 0
    # A dated or versioned name is the same model.
    dated = book.cost(Usage(input_tokens=M, model="claude-haiku-4-5-20251001"))
    assert dated == book.cost(Usage(input_tokens=M, model="claude-haiku-4-5")) == pytest.approx(1)


def test_the_provider_that_served_sets_the_price() -> None:
    book = PriceBook(providers={"aws": provider_hint("bedrock", ""), "gcp": "google"})
    usage = Usage(input_tokens=M, output_tokens=M, model="claude-opus-5-5")
    direct = book.cost(usage)
    assert direct == pytest.approx(24)
    bedrock = book.cost(
        Usage(input_tokens=M, output_tokens=M, model="us.anthropic.claude-opus-5-5-v1:0"),
        provider="aws",
    )
    assert bedrock is not None and bedrock != direct  # AWS's own (regional) price
    assert book.cost(usage, provider="gcp") == pytest.approx(24)  # Vertex AI's
    # An OpenAI model through a Chat Completions provider, found by its URL.
    openai = PriceBook(providers={"oa": "https://api.openai.com/v1"})
    assert openai.cost(Usage(input_tokens=M, model="gpt-4o"), provider="oa") == pytest.approx(2.5)


def test_a_long_prompt_pays_the_long_context_tier_on_all_its_tokens() -> None:
    book = PriceBook()
    short = book.cost(Usage(input_tokens=200_000, output_tokens=M, model="claude-sonnet-4-5"))
    long = book.cost(Usage(input_tokens=200_001, output_tokens=M, model="claude-sonnet-4-5"))
    assert short == pytest.approx(0.6 + 15)
    assert long == pytest.approx(200_001 * 6 / M + 22.5)
    # Cache reads count towards the threshold, as the API bills.
    cached = book.cost(
        Usage(input_tokens=1, cache_read_input_tokens=200_000, model="claude-sonnet-4-5")
    )
    assert cached == pytest.approx((6 + 200_000 * 0.6) / M)


def test_the_table_overrides_the_database_and_the_served_model_comes_first() -> None:
    book = PriceBook(parse_pricing({"claude-opus-5-5*": {"input": 1, "output": 2}}))
    assert book.rates("claude-opus-5-5-20261101").source == "pricing"  # type: ignore[union-attr]
    usage = Usage(input_tokens=M, output_tokens=M, model="claude-opus-5-5")
    assert book.cost(usage, requested="claude-haiku-4-5") == pytest.approx(3)
    # The answer named no model: the one asked for.
    assert book.cost(Usage(input_tokens=M), requested="claude-opus-5-5") == pytest.approx(1)


def test_unknown_models_are_refused_free_or_priced_as_the_setting_says() -> None:
    odd = Usage(input_tokens=M, output_tokens=M, model="house-model-7")
    refusing = PriceBook()
    assert refusing.refuses_unknown and not refusing.known("house-model-7")
    assert refusing.cost(odd) is None
    free = PriceBook(unknown="free")
    assert not free.refuses_unknown and free.cost(odd) == 0.0
    priced = PriceBook(unknown=Price("*", 3, 15, 0, 0))
    assert priced.cost(odd) == pytest.approx(18)
    assert priced.known("claude-opus-5-5") and not priced.known("house-model-7")


def test_the_unknown_model_setting_parses() -> None:
    assert parse_unknown_model("refuse") == "refuse"
    assert parse_unknown_model(" free ") == "free"
    assert parse_unknown_model("3/15") == Price("*", 3, 15, 0, 0)
    assert parse_unknown_model("3/15/3.75/0.3") == Price("*", 3, 15, 3.75, 0.3)
    assert parse_unknown_model({"input": 1, "output": 5}) == Price("*", 1, 5, 0, 0)
    for bad in ("cheap", "3", "3/15/1", "-1/2", "nan/1"):
        with pytest.raises(ValueError, match="refuse"):
            parse_unknown_model(bad)
    with pytest.raises(ValueError, match="unknown field"):
        parse_unknown_model({"inptu": 1})
    # In the [pricing] table it is a setting, never a model glob.
    assert parse_pricing({"unknown_model": "free", "x*": {"input": 1}}) == (
        Price("x*", 1, 0, 0, 0),
    )
    with pytest.raises(ValueError, match=r'pricing\."x"\.output: expected a price'):
        parse_pricing({"x": {"output": -1}})


def test_lookups_are_kept_and_bounded() -> None:
    book = PriceBook()
    for n in range(5000):  # an upstream may name any model it likes
        assert book.cost(Usage(input_tokens=1, model=f"odd-{n}")) is None
    assert len(book._kept) <= 4096
