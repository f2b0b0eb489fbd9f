"""Callers: the [[callers]] grammar, the pure limit decisions, and the book's
counts shared through a real state store file."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
import trio

from trioproxy.callers.book import CallerBook
from trioproxy.callers.policy import (
    Spend,
    budget_window,
    check_budget,
    check_model,
    check_rates,
    remaining,
)
from trioproxy.config import ConfigError, load_config
from trioproxy.config.callers import parse_callers, parse_time
from trioproxy.config.model import Budget, Caller
from trioproxy.store.local import LocalStore

SECRET = "alice-secret-0123456789"
DIGEST = hashlib.sha256(SECRET.encode()).hexdigest()


def _utc(*args: int) -> float:
    return dt.datetime(*args, tzinfo=dt.UTC).timestamp()


def test_a_full_caller_parses() -> None:
    (c,) = parse_callers(
        [
            {
                "name": "ci-agent",
                "secret_sha256": [DIGEST],
                "secrets": ["second-secret-0123456789"],
                "models": ["claude-haiku-*"],
                "rpm": 10,
                "tpm": 1000,
                "max_concurrent": 2,
                "budget": {"usd": 50, "window": "weekly"},
                "expires": "2027-01-31T00:00:00Z",
                "upstream_credential": "own",
            }
        ],
        "t",
    )
    assert (c.rpm, c.tpm, c.max_concurrent) == (10, 1000, 2)
    assert c.budget == Budget("weekly", usd=50.0)
    assert c.expires == _utc(2027, 1, 31)
    assert c.own_credential and c.plaintext and len(c.digests) == 2
    assert SECRET not in repr(c) and DIGEST not in repr(c)


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ({"name": "a b", "secret_sha256": [DIGEST]}, "name"),
        ({"name": "a"}, "callers[a]: needs secret_sha256"),
        ({"name": "a", "secret_sha256": ["abc"]}, "callers[a].secret_sha256"),
        ({"name": "a", "secrets": ["short"]}, "callers[a].secrets[0]"),
        ({"name": "a", "secret_sha256": [DIGEST], "rpm": 0}, "callers[a].rpm"),
        ({"name": "a", "secret_sha256": [DIGEST], "rpm": True}, "callers[a].rpm"),
        ({"name": "a", "secret_sha256": [DIGEST], "budget": {"usd": 5, "tokens": 5}}, "one of"),
        (
            {"name": "a", "secret_sha256": [DIGEST], "budget": {"usd": 5, "window": "hourly"}},
            "window",
        ),
        ({"name": "a", "secret_sha256": [DIGEST], "expires": "tomorrow"}, "RFC 3339"),
        ({"name": "a", "secret_sha256": [DIGEST], "expires": "2027-01-01T00:00:00"}, "offset"),
        ({"name": "a", "secret_sha256": [DIGEST], "upstream_credential": "x"}, "own"),
        ({"name": "a", "secret_sha256": [DIGEST], "colour": "red"}, "callers[a].colour"),
    ],
)
def test_bad_callers_are_refused_naming_the_key(entry: dict[str, object], says: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_callers([entry], "t")
    assert says in str(info.value)
    assert "short" not in str(info.value) or "secrets[0]" in str(info.value)


def test_names_and_secrets_are_unique_across_every_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="used twice"):
        parse_callers([{"name": "a", "secret_sha256": [DIGEST]}] * 2, "t")
    f = tmp_path / "callers.toml"
    f.write_text(f'[[callers]]\nname = "b"\nsecret_sha256 = ["{DIGEST}"]\n')
    with pytest.raises(ConfigError, match="share a secret"):
        load_config(
            env={},
            overrides={"auth.secrets": f"a:{SECRET}", "auth.callers_file": str(f)},
        )


def test_an_empty_callers_file_keeps_auth_on(tmp_path: Path) -> None:
    cfg = load_config(env={}, overrides={"auth.callers_file": str(tmp_path / "absent.toml")})
    assert cfg.auth.enabled


def test_toml_datetimes_and_dates_are_accepted() -> None:
    assert parse_time(dt.datetime(2027, 1, 1, tzinfo=dt.UTC), "k") == _utc(2027, 1, 1)
    assert parse_time(dt.date(2027, 1, 1), "k") == _utc(2027, 1, 1)
    assert parse_time("2027-01-01T01:00:00+01:00", "k") == _utc(2027, 1, 1)


@pytest.mark.parametrize(
    ("window", "now", "start", "reset"),
    [
        ("daily", _utc(2026, 11, 30, 13), _utc(2026, 11, 30), _utc(2026, 12, 1)),
        ("weekly", _utc(2026, 11, 29, 23), _utc(2026, 11, 23), _utc(2026, 11, 30)),  # Sunday
        ("weekly", _utc(2026, 11, 30), _utc(2026, 11, 30), _utc(2026, 12, 7)),  # Monday
        ("monthly", _utc(2026, 12, 31, 23, 59), _utc(2026, 12, 1), _utc(2027, 1, 1)),
        ("monthly", _utc(2028, 2, 29, 12), _utc(2028, 2, 1), _utc(2028, 3, 1)),
    ],
)
def test_budget_windows_are_calendar_windows_in_utc(
    window: str, now: float, start: float, reset: float
) -> None:
    assert budget_window(window, now) == (start, reset)


def test_rates_count_the_last_60_to_70_seconds_and_say_when_to_come_back() -> None:
    c = Caller("a", frozenset(), rpm=3)
    now = 1000.0  # bucket 100, 0 s into it
    counts = {94: 1, 99: 1, 100: 1}
    refusal = check_rates(c, now, lambda b: counts.get(b, 0), lambda b: 0, 0)
    assert refusal is not None and refusal.reason == "rpm"
    assert refusal.retry_after == 10  # bucket 94 leaves the window at 1010
    assert check_rates(c, now, lambda b: {93: 1, 99: 1}.get(b, 0), lambda b: 0, 0) is None
    assert check_rates(c, now, lambda b: 0, lambda b: 0, 0) is None


def test_model_allowlist_globs() -> None:
    c = Caller("intern", frozenset(), models=("claude-haiku-*", "claude-sonnet-4-6"))
    assert check_model(c, "claude-haiku-4-5") is None
    assert check_model(c, "claude-sonnet-4-6") is None
    refusal = check_model(c, "claude-opus-4-6")
    assert refusal is not None and refusal.status == 403 and "claude-opus-4-6" in refusal.message
    assert check_model(Caller("x", frozenset()), "anything") is None


def test_budget_message_and_remaining() -> None:
    c = Caller("a", frozenset(), budget=Budget("monthly", usd=50.0))
    now = _utc(2026, 11, 30, 12)
    assert check_budget(c, Spend(49.99, 0), now) is None
    refusal = check_budget(c, Spend(50.01, 0), now)
    assert refusal is not None and refusal.retry_after == 12 * 3600
    assert "monthly budget of $50.00 (spent $50.01)" in refusal.message
    assert "2026-12-01T00:00:00Z" in refusal.message
    assert remaining(Budget("daily", tokens=100), Spend(0, 30)) == 70


async def test_two_books_share_counts_through_one_state_file(tmp_path: Path) -> None:
    """Two processes' books (as two workers would) over the same SQLite
    file: what one admitted, the other counts after a sync each."""
    wall = [_utc(2026, 11, 30, 12)]
    c = Caller("a", frozenset(), rpm=2, budget=Budget("daily", tokens=100))
    stores = [await LocalStore.open(str(tmp_path), wall=lambda: wall[0]) for _ in range(2)]
    books = [CallerBook(wall=lambda: wall[0]) for _ in range(2)]

    async def sync(i: int) -> None:
        part = books[i].outgoing()
        books[i].incoming(await stores[i].sync(part, since_hour=0))

    try:
        assert books[0].admit(c) is None
        books[0].record("a", 60, 0.0)
        assert books[1].admit(c) is None  # it has not heard yet: the second of two
        for i in (0, 1, 0, 1):
            await sync(i)
        for book in books:
            refusal = book.admit(c)
            assert refusal is not None and refusal.reason == "rpm"
            assert book.usage(c)["requests_last_minute"] == 2
            assert book.spend(c, wall[0]).tokens == 60
            assert book.concurrent("a", wall[0]) == 2  # one in flight in each
        books[0].release("a")
        await sync(0)
        await sync(1)
        assert books[1].concurrent("a", wall[0]) == 1
        wall[0] += 75  # the minute has passed; the day's tokens stay
        assert books[1].admit(c) is None
        books[1].record("a", 50, 0.0)
        await sync(1)
        await sync(0)
        refusal = books[0].admit(c)
        assert refusal is not None and refusal.reason == "budget"
    finally:
        for s in stores:
            await s.aclose()
        await trio.lowlevel.checkpoint()
