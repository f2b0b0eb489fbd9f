"""The usage ledger's report: spans, pricing, sums by group, and the three
output formats, over a real SQLite ledger (db/)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from trioproxy.accounting.ledger import Row
from trioproxy.accounting.pricing import price_for
from trioproxy.accounting.report import UsageError, parse_since, render, settings, summarize
from trioproxy.config.pricing import DEFAULT_PRICES, parse_pricing
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
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    db = open_database("", str(tmp_path))
    db.insert_usage(
        [
            r.values()
            for r in [
                row(NOW - 10, "alice", "claude-sonnet-4-5", i=1_000_000, o=100_000),
                row(NOW - 20, "alice", "claude-opus-4-1", cw=1_000_000, cr=2_000_000),
                row(NOW - 30, "bob", "claude-sonnet-4-5", status=529),
                row(NOW - 40, "bob", "MiniMax-M2", i=500_000, o=10),
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


def test_default_prices_and_config_overrides() -> None:
    assert price_for("claude-sonnet-4-5-20250929", DEFAULT_PRICES).input == 3  # type: ignore[union-attr]
    assert price_for("claude-opus-4-1-20250805", DEFAULT_PRICES).output == 75  # type: ignore[union-attr]
    assert price_for("claude-opus-4-5", DEFAULT_PRICES).output == 25  # type: ignore[union-attr]
    assert price_for("MiniMax-M2", DEFAULT_PRICES) is None
    mine = parse_pricing({"MiniMax-M2*": {"input": 0.3, "output": 1.2}})
    assert price_for("MiniMax-M2", mine) is not None and mine[0].cache_read == 0
    with pytest.raises(ValueError, match=r'pricing\."x"\.inptu: unknown field'):
        parse_pricing({"x": {"inptu": 1}})
    with pytest.raises(ValueError, match=r'pricing\."x"\.output: expected a price'):
        parse_pricing({"x": {"output": -1}})


def test_sums_by_caller_with_cost(ledger: Path) -> None:
    lines, total = summarize(
        str(ledger), since=parse_since("7d", NOW), by="caller", prices=DEFAULT_PRICES
    )
    by = {x.key: x for x in lines}
    assert set(by) == {"alice", "bob"}  # carol is older than 7 days
    alice, bob = by["alice"], by["bob"]
    # sonnet: 1M input x $3 + 0.1M output x $15; opus 4.1: 1M writes x $18.75 + 2M reads x $1.5
    assert alice.cost == pytest.approx(3 + 1.5 + 18.75 + 3)
    assert alice.requests == 2 and alice.errors == 0
    assert alice.tokens["cache_read_input_tokens"] == 2_000_000
    assert bob.requests == 2 and bob.errors == 1 and bob.unpriced == {"MiniMax-M2"}
    assert total.requests == 4 and total.cost == pytest.approx(alice.cost)
    assert [x.key for x in lines] == ["alice", "bob"]  # by cost


def test_by_day_and_model(ledger: Path) -> None:
    lines, _ = summarize(str(ledger), since=0, by="day", prices=DEFAULT_PRICES)
    assert [x.key for x in lines] == ["2026-11-10", "2026-11-18"]  # UTC days, in order
    lines, _ = summarize(str(ledger), since=NOW - 86400, by="model", prices=DEFAULT_PRICES)
    assert {x.key: x.requests for x in lines} == {
        "claude-opus-4-1": 1,
        "claude-sonnet-4-5": 2,
        "MiniMax-M2": 1,
    }


def test_three_formats(ledger: Path) -> None:
    since = parse_since("7d", NOW)
    lines, total = summarize(str(ledger), since=since, by="caller", prices=DEFAULT_PRICES)
    table = render(lines, total, by="caller", fmt="table", since=since)
    assert "alice" in table and "26.25" in table and "MiniMax-M2" in table.splitlines()[-1]
    rows = list(
        csv.DictReader(io.StringIO(render(lines, total, by="caller", fmt="csv", since=since)))
    )
    assert [r["caller"] for r in rows] == ["alice", "bob", "total"]
    assert float(rows[0]["cost_usd"]) == pytest.approx(26.25)
    doc = json.loads(render(lines, total, by="caller", fmt="json", since=since))
    assert doc["total"]["requests"] == 4 and doc["lines"][1]["unpriced_models"] == ["MiniMax-M2"]


def test_missing_ledger_and_settings(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no database at"):
        summarize(str(tmp_path), since=0, by="model", prices=DEFAULT_PRICES)
    cfg = tmp_path / "c.toml"
    cfg.write_text('state_dir = "/srv/x"\n[pricing."my-model"]\ninput = 2\n')
    where = settings(str(cfg), {})
    assert where.state_dir == "/srv/x" and where.prices[0].pattern == "my-model"
    assert where.database_url == ""
    assert settings(str(cfg), {"TRIOPROXY_STATE_DIR": "/y"}).state_dir == "/y"
    url = "postgresql://u:pw@db/trioproxy"
    assert settings(str(cfg), {"TRIOPROXY_DATABASE_URL": url}).database_url == url
    cfg.write_text('[storage]\ndatabase_url = "mysql://x"\n')
    with pytest.raises(UsageError, match="postgresql://"):
        settings(str(cfg), {})
