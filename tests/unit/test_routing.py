"""Routing decisions, provider health and quotas: plain functions of their
inputs (no sockets, no clock but the one passed in)."""

from __future__ import annotations

import calendar
from typing import Any

import pytest

from trioproxy.config import ConfigError, load_config
from trioproxy.routing.config import ProviderConfig, QuotaConfig
from trioproxy.routing.decide import (
    NoProvider,
    Outcome,
    RouteMode,
    UnknownProvider,
    after_failure,
    backoff_delay,
    candidates,
    classify,
    parse_retry_after,
)
from trioproxy.routing.health import ProviderHealth
from trioproxy.routing.quota import QuotaBook, window_bounds


def routing(**extra: Any) -> Any:
    providers = [
        {"name": "anthropic", "base_url": "https://api.anthropic.com", "priority": 1},
        {
            "name": "minimax",
            "base_url": "https://api.minimax.io/anthropic",
            "priority": 2,
            "models": {"claude-opus-*": "MiniMax-M2", "default": "MiniMax-M2-lite"},
        },
        {"name": "moonshot", "base_url": "https://api.moonshot.ai/anthropic", "priority": 3},
    ]
    return load_config(env={}, overrides={"providers": providers, **extra}).routing


def names(ps: list[ProviderConfig]) -> list[str]:
    return [p.name for p in ps]


def no_quota(_p: ProviderConfig) -> float | None:
    return None


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (None, Outcome.RETRY),
        (503, Outcome.RETRY),
        (529, Outcome.RETRY),
        (429, Outcome.RATE_LIMITED),
        (500, Outcome.FAILOVER),
        (502, Outcome.FAILOVER),
        (504, Outcome.FAILOVER),
        (200, Outcome.ANSWER),
        (400, Outcome.ANSWER),
        (401, Outcome.ANSWER),
        (403, Outcome.ANSWER),
        (404, Outcome.ANSWER),
        (413, Outcome.ANSWER),
        (422, Outcome.ANSWER),
    ],
)
def test_classify(status: int | None, outcome: Outcome) -> None:
    assert classify(status) is outcome


def test_retry_after_seconds_and_http_date() -> None:
    now = calendar.timegm((2026, 11, 22, 12, 0, 0))
    assert parse_retry_after(b"7", now) == 7.0
    assert parse_retry_after(b" 2.5 ", now) == 2.5
    assert parse_retry_after(b"Sun, 22 Nov 2026 12:00:30 GMT", now) == pytest.approx(30.0)
    assert parse_retry_after(b"Sun, 22 Nov 2026 11:00:00 GMT", now) == 0.0
    for bad in (None, b"", b"soon", b"-1", b"nan", b"inf"):
        assert parse_retry_after(bad, now) is None


def test_backoff_doubles_with_bounded_jitter() -> None:
    assert [backoff_delay(0.5, n, 0.5) for n in range(3)] == [0.5, 1.0, 2.0]
    assert backoff_delay(0.5, 0, 0.0) == pytest.approx(0.4)
    assert backoff_delay(0.5, 0, 0.999) == pytest.approx(0.6, abs=1e-3)


def decide(outcome: Outcome, retry: int = 0, retry_after: float | None = None) -> tuple[Any, Any]:
    n = after_failure(
        outcome,
        retry=retry,
        retries=2,
        retry_after=retry_after,
        cap=10.0,
        backoff=0.5,
        cooldown_s=60.0,
        rand=0.5,
    )
    return n.retry_in, n.cooldown_for


def test_after_failure_table() -> None:
    assert decide(Outcome.RETRY, 0) == (0.5, None)
    assert decide(Outcome.RETRY, 1) == (1.0, None)
    assert decide(Outcome.RETRY, 2) == (None, None)  # retries used up: fail over
    assert decide(Outcome.RETRY, 0, retry_after=3) == (3, None)  # honoured
    assert decide(Outcome.RETRY, 0, retry_after=30) == (None, 30)  # over the cap: fail over
    assert decide(Outcome.RATE_LIMITED, 0, retry_after=5) == (None, 5)  # never retried
    assert decide(Outcome.RATE_LIMITED) == (None, 60.0)  # no retry-after: spend cap
    assert decide(Outcome.FAILOVER) == (None, None)


def test_candidates_order_skip_and_affinity() -> None:
    r = routing()
    health = {n: ProviderHealth() for n in r.names}
    failover = RouteMode("failover", None)
    assert names(candidates(r, failover, health, no_quota, 0.0)) == [
        "anthropic",
        "minimax",
        "moonshot",
    ]
    health["anthropic"].cooldown_until = 50.0
    assert names(candidates(r, failover, health, no_quota, 10.0)) == ["minimax", "moonshot"]
    assert names(candidates(r, failover, health, no_quota, 50.0))[0] == "anthropic"
    health["minimax"].failures = 3  # degraded: after the healthy ones
    health["minimax"].last_failure_at = 55.0
    assert names(candidates(r, failover, health, no_quota, 60.0)) == [
        "anthropic",
        "moonshot",
        "minimax",
    ]
    # the session stays where it was while that provider is available
    got = candidates(r, failover, health, no_quota, 60.0, session_provider="minimax")
    assert names(got) == ["minimax", "anthropic", "moonshot"]
    health["minimax"].cooldown_until = 100.0
    got = candidates(r, failover, health, no_quota, 60.0, session_provider="minimax")
    assert names(got) == ["anthropic", "moonshot"]


def test_single_mode_and_pin_ignore_state() -> None:
    r = routing()
    health = {n: ProviderHealth(cooldown_until=1e9) for n in r.names}
    assert names(candidates(r, RouteMode("single", "moonshot"), health, no_quota, 0.0)) == [
        "moonshot"
    ]
    assert names(
        candidates(r, RouteMode("failover", None), health, no_quota, 0.0, pin="minimax")
    ) == ["minimax"]
    with pytest.raises(UnknownProvider):
        candidates(r, RouteMode("failover", None), health, no_quota, 0.0, pin="nope")


def test_nothing_available_says_why_and_when() -> None:
    r = routing()
    health = {n: ProviderHealth() for n in r.names}
    health["anthropic"].cooldown_until = 30.0
    health["moonshot"].cooldown_until = 20.0
    with pytest.raises(NoProvider) as exc:
        candidates(
            r,
            RouteMode("failover", None),
            health,
            lambda p: 90.0 if p.name == "minimax" else None,
            0.0,
        )
    assert exc.value.retry_after == 20.0 and exc.value.rate_limited
    assert (
        "minimax (over quota)" in exc.value.message and "anthropic (cooldown)" in exc.value.message
    )
    health["moonshot"] = ProviderHealth(opened_until=5.0)
    health["minimax"].cooldown_until = 40.0
    with pytest.raises(NoProvider) as exc:
        candidates(r, RouteMode("failover", None), health, no_quota, 0.0)
    assert not exc.value.rate_limited and exc.value.retry_after == 5.0


def test_breaker_degrades_opens_and_half_opens_for_one_trial() -> None:
    h = ProviderHealth()
    for i in range(5):
        assert h.begin(float(i)) is False
        h.failed(float(i), "HTTP 500", open_after=5, open_s=30.0)
        if i == 2:
            assert (
                h.state(2.0, degraded_after=3) == "degraded" and h.tier(2.0, degraded_after=3) == 1
            )
            # not failing for a while: back in its normal place
            assert h.tier(70.0, degraded_after=3, forget_after=60.0) == 0
    assert h.state(4.0, degraded_after=3) == "open" and h.tier(10.0, degraded_after=3) is None
    assert h.state(34.0, degraded_after=3) == "half-open"
    assert h.tier(34.0, degraded_after=3) == 0  # the trial goes in its place by priority
    assert h.begin(34.0) is True  # the one trial
    assert h.tier(34.0, degraded_after=3) is None  # nobody else while it runs
    assert h.begin(34.5) is False
    h.abandoned(False)
    h.failed(35.0, "HTTP 503", open_after=5, open_s=30.0)  # the trial failed: open again
    assert h.state(36.0, degraded_after=3) == "open" and h.opened_until == 65.0
    assert h.begin(65.0) is True
    h.succeeded(0.2)  # trial succeeded: closed, count cleared
    assert h.state(65.0, degraded_after=3) == "healthy" and h.failures == 0
    assert h.in_flight == 0


def test_abandoned_trial_frees_the_slot() -> None:
    h = ProviderHealth(failures=5, opened_until=1.0)
    assert h.begin(2.0) is True
    h.abandoned(True)
    assert h.tier(2.0, degraded_after=3) == 0 and h.begin(2.0) is True


def test_quota_windows() -> None:
    weekly = QuotaConfig(100, "weekly", 5, 0.9)
    wed = calendar.timegm((2026, 11, 25, 15, 30, 0))  # a Wednesday
    start, reset = window_bounds(weekly, wed)
    assert start == calendar.timegm((2026, 11, 23, 0, 0, 0))  # Monday 00:00 UTC
    assert reset == calendar.timegm((2026, 11, 30, 0, 0, 0))
    daily = QuotaConfig(100, "daily", 5, 0.9)
    assert window_bounds(daily, wed) == (
        calendar.timegm((2026, 11, 25, 0, 0, 0)),
        calendar.timegm((2026, 11, 26, 0, 0, 0)),
    )


def test_quota_crossing_and_reset_at_the_boundary() -> None:
    q = QuotaConfig(1000, "daily", 5, 0.9)
    book = QuotaBook()
    day = calendar.timegm((2026, 11, 22, 0, 0, 0))
    book.add("p", 899, day + 3600)
    assert not book.status("p", q, day + 7200).over
    book.add("p", 1, day + 7200)
    st = book.status("p", q, day + 7200)
    assert st.over and st.used == 900 and st.reset_at == day + 86400
    assert not book.status("p", q, day + 86400).over  # a new day: automatically back
    assert book.status("other", q, day + 7200).used == 0


def test_rolling_window_forgets_old_hours() -> None:
    q = QuotaConfig(100, "rolling", 5, 1.0)
    book = QuotaBook()
    t0 = calendar.timegm((2026, 11, 22, 10, 0, 0))
    book.add("p", 100, t0 + 60)
    st = book.status("p", q, t0 + 3 * 3600)
    assert st.over and st.reset_at == t0 + 6 * 3600
    assert not book.status("p", q, t0 + 6 * 3600).over


def test_providers_config_errors_name_the_key() -> None:
    def bad(
        providers: list[dict[str, Any]], env: dict[str, str] | None = None, **extra: Any
    ) -> str:
        with pytest.raises(ConfigError) as exc:
            load_config(env=env or {}, overrides={"providers": providers, **extra})
        return str(exc.value)

    ok = {"name": "a", "base_url": "https://a.example"}
    assert "providers[0].name" in bad([{"base_url": "https://x"}])
    assert "providers[a].base_url" in bad([{"name": "a", "base_url": "ftp://x"}])
    assert "providers[a].colour: unknown" in bad([{**ok, "colour": 1}])
    assert "defined twice" in bad([ok, ok])
    assert "MINI_KEY is not set" in bad([{**ok, "api_key_env": "MINI_KEY"}])
    assert "providers[a].auth" in bad([{**ok, "api_key_env": "K", "auth": "basic"}], {"K": "x"})
    assert "providers[a].quota.window" in bad([{**ok, "quota": {"tokens": 5, "window": "monthly"}}])
    assert "providers[a].drop_fields: model" in bad([{**ok, "drop_fields": ["model"]}])
    assert "routing.provider" in bad([ok], **{"routing.mode": "single"})
    assert "routing.provider: no provider named 'b'" in bad([ok], **{"routing.provider": "b"})
    assert "upstream.url" in bad([ok], **{"upstream.url": "https://other"})
    assert "every provider is disabled" in bad([{**ok, "enabled": False}])
    with pytest.raises(ConfigError, match=r"providers\[a\]: with caller auth on"):
        load_config(
            env={},
            overrides={"providers": [ok], "auth.secrets": "n:s" * 1 + "ecret-0123456789abcdef"},
        )


def test_provider_config_keys_models_and_credentials(tmp_path: Any) -> None:
    keyfile = tmp_path / "k"
    keyfile.write_text("sk-file\n")
    cfg = load_config(
        env={"TRIOPROXY_MINIMAX_KEY": "sk-mm"},
        overrides={
            "providers": [
                {
                    "name": "mm",
                    "base_url": "https://api.minimax.io/anthropic",
                    "api_key_env": "TRIOPROXY_MINIMAX_KEY",
                    "auth": "bearer",
                    "models": {"claude-opus-4-5": "M2-pro", "claude-*": "M2", "default": "M2-x"},
                },
                {
                    "name": "ant",
                    "base_url": "https://api.anthropic.com",
                    "api_key_file": str(keyfile),
                    "priority": 1,
                },
            ],
            "aliases": {"opus": "claude-opus-4-5"},
        },
    )
    r = cfg.routing
    assert r.names == ("ant", "mm")  # by priority
    ant, mm = r.providers
    assert ant.family == "anthropic" and mm.family == "mm"
    assert ant.upstream.credential is not None and ant.upstream.credential.value == b"sk-file"
    assert mm.upstream.credential is not None
    assert (mm.upstream.credential.header, mm.upstream.credential.value) == (
        b"authorization",
        b"Bearer sk-mm",
    )
    assert mm.map_model("claude-opus-4-5") == "M2-pro"
    assert mm.map_model("claude-haiku-4-5") == "M2"
    assert mm.map_model("gpt") == "M2-x"
    assert ant.map_model("claude-haiku-4-5") == "claude-haiku-4-5"
    assert r.resolve_alias("opus") == "claude-opus-4-5" and r.resolve_alias("x") == "x"
    assert r.needs_body
    assert not load_config(env={}).routing.needs_body  # one plain provider: bodies stream
