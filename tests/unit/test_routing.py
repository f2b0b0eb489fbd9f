"""Routing decisions, provider health and quotas: plain functions of their
inputs (no sockets, no clock but the one passed in)."""

from __future__ import annotations

import calendar
from typing import Any

import pytest

from trioproxy.config import ConfigError, load_config
from trioproxy.config.model import ProviderConfig, QuotaConfig
from trioproxy.routing.decide import (
    NoProvider,
    Outcome,
    RouteMode,
    UnknownProvider,
    after_failure,
    backoff_delay,
    candidates,
    classify,
    cooldown_key,
    parse_retry_after,
    retry_budget_allows,
)
from trioproxy.routing.health import (
    MAX_COOLDOWN_KEYS,
    PROVIDER,
    BreakerPolicy,
    ProviderHealth,
    Visit,
)
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
        (529, Outcome.OVERLOADED),
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
    assert outcome.is_failure == (status is None or status >= 500)


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


def decide(
    status: int | None,
    retry: int = 0,
    retry_after: float | None = None,
    *,
    more: bool = True,
    budget_ok: bool = True,
) -> tuple[Any, Any, bool]:
    n = after_failure(
        classify(status),
        retry=retry,
        retries=2,
        retry_after=retry_after,
        cap=10.0,
        backoff=0.5,
        cooldown_s=60.0,
        rand=0.5,
        more=more,
        budget_ok=budget_ok,
        status=status,
    )
    return n.retry_in, n.cooldown_for, n.provider_wide


def test_after_failure_table() -> None:
    # Another provider could serve: 503 and connection errors retried, then failover.
    assert decide(503, 0) == (0.5, None, False)
    assert decide(None, 1) == (1.0, None, False)
    assert decide(503, 2) == (None, None, False)  # retries used up: fail over
    assert decide(503, 0, retry_after=3) == (3, None, False)  # honoured
    assert decide(503, 0, retry_after=30) == (None, 30, True)  # over the cap: provider sits out
    assert decide(529, 0) == (None, None, False)  # a 529 fails over at once
    assert decide(529, 0, retry_after=30) == (None, 30, True)
    assert decide(429, 0, retry_after=5) == (None, 5, False)  # never retried; credential cools
    assert decide(429) == (None, 60.0, False)  # no retry-after: the provider's cooldown_s
    assert decide(500) == (None, None, False)
    # The retry budget is spent: no retry, move on.
    assert decide(503, 0, budget_ok=False) == (None, None, False)
    assert decide(None, 0, budget_ok=False) == (None, None, False)


def test_last_candidate_gets_the_upstream_answer_not_a_retry() -> None:
    """With nobody else to try, a status goes to the client as it is (its own
    retry logic then sees what it would see direct); only connection errors,
    which the client never saw, are retried by the proxy."""
    for status in (503, 529, 500, 502, 504, 429):
        assert decide(status, 0, more=False)[0] is None, status
    assert decide(None, 0, more=False) == (0.5, None, False)
    assert decide(None, 2, more=False) == (None, None, False)


def test_retry_budget() -> None:
    assert retry_budget_allows(0, 0, 0.2) and retry_budget_allows(2, 1, 0.2)
    assert not retry_budget_allows(3, 10, 0.2)  # the floor of 3
    assert retry_budget_allows(19, 100, 0.2) and not retry_budget_allows(20, 100, 0.2)


def test_candidates_order_skip_and_affinity() -> None:
    r = routing()
    health = {n: ProviderHealth() for n in r.names}
    failover = RouteMode("failover", None)
    assert names(candidates(r, failover, health, no_quota, 0.0)) == [
        "anthropic",
        "minimax",
        "moonshot",
    ]
    health["anthropic"].cool_down(PROVIDER, 0.0, 50.0, "HTTP 429")
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
    health["minimax"].cool_down(PROVIDER, 60.0, 100.0, "HTTP 429")
    got = candidates(r, failover, health, no_quota, 60.0, session_provider="minimax")
    assert names(got) == ["anthropic", "moonshot"]


def test_passthrough_cooldown_is_per_credential() -> None:
    """One caller's 429 (their own key passing through) does not hold back
    another caller's key; a provider-wide cooldown holds back everyone."""
    r = routing()  # no provider keys: every provider passes the caller's credential
    health = {n: ProviderHealth() for n in r.names}
    failover = RouteMode("failover", None)
    health["anthropic"].cool_down("alice", 0.0, 50.0, "HTTP 429")
    assert names(candidates(r, failover, health, no_quota, 1.0, caller_key="alice"))[0] == (
        "minimax"
    )
    assert names(candidates(r, failover, health, no_quota, 1.0, caller_key="bob"))[0] == (
        "anthropic"
    )
    health["anthropic"].cool_down(PROVIDER, 0.0, 50.0, "HTTP 529")
    assert names(candidates(r, failover, health, no_quota, 1.0, caller_key="bob"))[0] == "minimax"


def test_inject_mode_cools_the_provider_key() -> None:
    env = {"K": "sk-provider-key"}
    cfg = load_config(
        env=env,
        overrides={
            "providers": [
                {"name": "a", "base_url": "https://a.example", "api_key_env": "K"},
                {"name": "b", "base_url": "https://b.example", "priority": 200},
            ]
        },
    )
    a, b = cfg.routing.providers
    assert cooldown_key(a, "alice") == PROVIDER  # the provider key got the 429
    assert cooldown_key(b, "alice") == "alice"  # the caller's own key did
    assert cooldown_key(b, "") == PROVIDER


def test_single_mode_and_pin_ignore_health_but_not_quota() -> None:
    r = routing()
    health = {n: ProviderHealth(opened_until=1e9) for n in r.names}
    for h in health.values():
        h.cool_down(PROVIDER, 0.0, 1e9, "HTTP 429")
    assert names(candidates(r, RouteMode("single", "moonshot"), health, no_quota, 0.0)) == [
        "moonshot"
    ]
    assert names(
        candidates(r, RouteMode("failover", None), health, no_quota, 0.0, pin="minimax")
    ) == ["minimax"]
    with pytest.raises(UnknownProvider):
        candidates(r, RouteMode("failover", None), health, no_quota, 0.0, pin="nope")
    with pytest.raises(NoProvider) as exc:  # a budget the operator set is the proxy's to enforce
        candidates(r, RouteMode("single", "moonshot"), health, lambda p: 70.0, 10.0)
    assert exc.value.retry_after == 60.0 and "moonshot is over its token quota" in exc.value.message


def test_when_nothing_is_available_the_soonest_is_tried() -> None:
    """Cooling down or open everywhere: the proxy does not answer for the
    upstream, it asks the provider that becomes available first."""
    r = routing()
    health = {n: ProviderHealth() for n in r.names}
    failover = RouteMode("failover", None)
    health["anthropic"].cool_down(PROVIDER, 0.0, 30.0, "HTTP 429")
    health["minimax"].opened_until = 20.0
    health["moonshot"].cool_down(PROVIDER, 0.0, 25.0, "HTTP 429")
    assert names(candidates(r, failover, health, no_quota, 0.0)) == ["minimax"]
    # Over-quota providers are never tried; the rest still are.
    over = candidates(r, failover, health, lambda p: 90.0 if p.name == "minimax" else None, 0.0)
    assert names(over) == ["moonshot"]
    with pytest.raises(NoProvider) as exc:
        candidates(r, failover, health, lambda p: 90.0 if p.name != "moonshot" else 80.0, 0.0)
    assert exc.value.retry_after == 80.0 and "over its token quota" in exc.value.message


POLICY = BreakerPolicy(failure_rate=0.5, min_requests=10, window_s=30.0, open_s=30.0)


def run(h: ProviderHealth, now: float, ok: bool, *, latency: float = 0.1) -> Visit:
    v = h.begin(now)
    if ok:
        h.succeeded(v, now, POLICY, latency)
    else:
        h.failed(v, now, POLICY, "HTTP 500")
    return v


def test_breaker_opens_on_a_failure_rate_over_distinct_requests() -> None:
    h = ProviderHealth()
    for i in range(9):  # 9 failed requests: under the minimum, never open
        run(h, float(i), ok=False)
    assert h.breaker(9.0) == "closed"
    assert h.state(9.0, POLICY) == "degraded" and h.tier(9.0, POLICY) == 1
    run(h, 9.5, ok=False)  # the 10th distinct request, all failed
    assert h.breaker(9.5) == "open" and h.tier(10.0, POLICY) is None
    assert h.opened_until == 39.5 and h.in_flight == 0


def test_breaker_does_not_open_below_the_rate_or_outside_the_window() -> None:
    h = ProviderHealth()
    for i in range(20):  # one failed request in three: 33 % < 50 %
        run(h, float(i), ok=i % 3 != 0)
    assert h.breaker(20.0) == "closed"
    h = ProviderHealth()
    for i in range(8):
        run(h, float(i), ok=False)
    for i in range(8):  # the early failures left the 30 s window
        run(h, 100.0 + i, ok=i % 2 == 0)
    assert h.window_counts(108.0, POLICY) == (8, 4)
    assert h.breaker(108.0) == "closed"
    run(h, 108.5, ok=False)
    run(h, 108.6, ok=False)  # 10 requests in the window, 6 failed: open
    assert h.breaker(108.6) == "open"


def test_half_open_trial_alone_closes_it() -> None:
    h = ProviderHealth()
    early = h.begin(0.0)  # a slow request that started long before the breaker opened
    for i in range(10):
        run(h, 1.0 + i, ok=False)
    assert h.breaker(11.0) == "open"  # opened at 10.0, until 40.0
    assert h.state(40.0, POLICY) == "half-open"
    assert h.tier(40.0, POLICY) == 0  # the trial goes in its place by priority
    trial = h.begin(40.0)
    assert trial.trial and h.tier(40.0, POLICY) is None  # nobody else while it runs
    h.succeeded(early, 41.0, POLICY, 0.1)  # a late success does not close it
    assert h.breaker(41.0) == "half-open" and h.trial_in_flight
    h.failed(trial, 42.0, POLICY, "HTTP 503")  # the trial failed: open again
    assert h.state(43.0, POLICY) == "open" and h.opened_until == 72.0
    trial = h.begin(72.0)
    assert trial.trial
    h.succeeded(trial, 72.5, POLICY, 0.2)  # the trial succeeded: closed, window cleared
    assert h.state(72.5, POLICY) == "healthy" and h.failures == 0
    assert h.window_counts(72.5, POLICY) == (0, 0) and h.in_flight == 0


def test_abandoned_or_rate_limited_trial_frees_the_slot() -> None:
    h = ProviderHealth(opened_until=1.0)
    trial = h.begin(2.0)
    assert trial.trial
    h.abandoned(trial)
    h.abandoned(trial)  # settling twice is harmless
    assert h.tier(2.0, POLICY) == 0 and h.in_flight == 0
    trial = h.begin(2.0)
    h.answered_not_now(trial)
    assert h.tier(2.0, POLICY) == 0 and h.breaker(2.0) == "half-open"


def test_cooldown_keys_stay_bounded() -> None:
    h = ProviderHealth()
    for i in range(MAX_COOLDOWN_KEYS + 50):
        h.cool_down(f"k{i}", float(i), float(i) + 1e9, "HTTP 429")
    assert len(h.cooldowns) <= MAX_COOLDOWN_KEYS
    assert h.cooldown_until(f"k{MAX_COOLDOWN_KEYS + 49}") > 0


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
