"""The usage ledger's report: spans, sums by group with the costs each row
was priced at (and old rows priced now), and the three output formats,
over a real SQLite ledger (db/). Prices themselves: test_pricing.py."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from trioproxy.accounting.ledger import Row
from trioproxy.accounting.pricing import PriceBook
from trioproxy.accounting.report import UsageError, parse_since, render, settings, summarize
from trioproxy.accounting.usage import Usage
from trioproxy.config.model import Price
from trioproxy.db.open import open_database

NOW = 1_795_000_000.0  # 2026-11-18


def row(
    ts: float,
    caller: str,
    model: str,
    *,
    status: int = 200,
    origin: str = "upstream",
    duration: float = 1.0,
    cost: float | None = None,
    **tokens: int,
) -> Row:
    return Row(
        ts=ts,
        request_id="r",
        caller=caller,
        provider="anthropic",
        model=model,
        model_requested=model,
        status=status,
        stream=True,
        input_tokens=tokens.get("i", 0),
        cache_creation_input_tokens=tokens.get("cw", 0),
        cache_read_input_tokens=tokens.get("cr", 0),
        output_tokens=tokens.get("o", 0),
        duration_s=duration,
        complete=True,
        error=status >= 400,
        origin=origin,
        cost_usd=cost,
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    db = open_database("", str(tmp_path))
    db.insert_usage(
        [
            r.values()
            for r in [
                row(NOW - 10, "alice", "claude-sonnet-4-5", i=1_000_000, o=100_000, cost=2.0),
                row(NOW - 20, "alice", "claude-opus-4-1", cw=1_000_000, cr=2_000_000),
                row(NOW - 30, "bob", "claude-sonnet-4-5", status=529),
                row(NOW - 40, "bob", "house-model-7", i=500_000, o=10),
                row(NOW - 8 * 86400, "carol", "claude-sonnet-4-5", i=10**9),  # before --since 7d
            ]
        ]
    )
    db.close()
    return tmp_path


def test_spans_and_dates() -> None:
    assert parse_since("7d", NOW) == NOW - 7 * 86400
    assert parse_since("24h", NOW) == NOW - 86400
    assert parse_since("30m", NOW) == NOW - 1800
    assert parse_since("2w", NOW) == NOW - 14 * 86400
    assert parse_since("2026-11-01", NOW) == 1_793_491_200.0
    with pytest.raises(UsageError, match="--since"):
        parse_since("last week", NOW)


# Prices for the report: a row without a cost is priced now with these.
PRICES = PriceBook((Price("claude-opus-4-1*", 15, 75, 18.75, 1.5),))


def test_sums_by_caller_with_cost(ledger: Path) -> None:
    lines, total = summarize(str(ledger), since=parse_since("7d", NOW), by="caller", prices=PRICES)
    by = {x.key: x for x in lines}
    assert set(by) == {"alice", "bob"}  # carol is older than 7 days
    alice, bob = by["alice"], by["bob"]
    # sonnet: the $2 it was priced at when it ended; opus 4.1, a row older than
    # the cost column: priced now, 1M writes x $18.75 + 2M reads x $1.5
    assert alice.cost == pytest.approx(2 + 18.75 + 3)
    assert alice.requests == 2 and alice.errors == 0
    assert alice.tokens["cache_read_input_tokens"] == 2_000_000
    assert bob.requests == 2 and bob.errors == 1 and bob.unpriced == {"house-model-7"}
    assert total.requests == 4 and total.cost == pytest.approx(alice.cost)
    assert [x.key for x in lines] == ["alice", "bob"]  # by cost


def test_by_day_and_model(ledger: Path) -> None:
    lines, _ = summarize(str(ledger), since=0, by="day", prices=PRICES)
    assert [x.key for x in lines] == ["2026-11-10", "2026-11-18"]  # UTC days, in order
    lines, _ = summarize(str(ledger), since=NOW - 86400, by="model", prices=PRICES)
    assert {x.key: x.requests for x in lines} == {
        "claude-opus-4-1": 1,
        "claude-sonnet-4-5": 2,
        "house-model-7": 1,
    }


def test_three_formats(ledger: Path) -> None:
    since = parse_since("7d", NOW)
    lines, total = summarize(str(ledger), since=since, by="caller", prices=PRICES)
    table = render(lines, total, by="caller", fmt="table", since=since)
    assert "alice" in table and "23.75" in table and "house-model-7" in table.splitlines()[-1]
    rows = list(
        csv.DictReader(io.StringIO(render(lines, total, by="caller", fmt="csv", since=since)))
    )
    assert [r["caller"] for r in rows] == ["alice", "bob", "total"]
    assert float(rows[0]["cost_usd"]) == pytest.approx(23.75)
    doc = json.loads(render(lines, total, by="caller", fmt="json", since=since))
    assert doc["total"]["requests"] == 4 and doc["lines"][1]["unpriced_models"] == ["house-model-7"]


def test_missing_ledger_and_settings(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no database at"):
        summarize(str(tmp_path), since=0, by="model", prices=PRICES)
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        'state_dir = "/srv/x"\n[pricing]\nunknown_model = "1/2"\n[pricing."my-model"]\ninput = 2\n'
        '[[providers]]\nname = "aws"\nkind = "bedrock"\n'
    )
    where = settings(str(cfg), {})
    assert where.state_dir == "/srv/x"
    assert where.prices.rates("my-model").source == "pricing"  # type: ignore[union-attr]
    # A model no one knows, at the file's price; a Bedrock provider's, at AWS's.
    odd = Usage(input_tokens=1_000_000, output_tokens=1_000_000, model="odd-model")
    assert where.prices.cost(odd) == pytest.approx(3)
    opus = Usage(input_tokens=1_000_000, model="claude-opus-5-5")
    assert where.prices.cost(opus, provider="aws") != where.prices.cost(opus)
    unknown = {"TRIOPROXY_PRICING_UNKNOWN_MODEL": "refuse"}
    assert settings(str(cfg), unknown).prices.cost(odd) is None
    assert where.database_url == ""
    assert settings(str(cfg), {"TRIOPROXY_STATE_DIR": "/y"}).state_dir == "/y"
    url = "postgresql://u:pw@db/trioproxy"
    assert settings(str(cfg), {"TRIOPROXY_DATABASE_URL": url}).database_url == url
    cfg.write_text('[storage]\ndatabase_url = "mysql://x"\n')
    with pytest.raises(UsageError, match="postgresql://"):
        settings(str(cfg), {})
