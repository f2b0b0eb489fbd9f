"""What every StateStore backend must carry between two routers (two
workers or two instances): used by the local store's tests and Redis's."""

from __future__ import annotations

from typing import Any

import trio

from trioproxy.config import load_config
from trioproxy.routing.health import PROVIDER
from trioproxy.routing.router import Router

NOW = 1_795_000_000.0  # the routers' wall clock


def routing() -> Any:
    providers = [
        {
            "name": "a",
            "base_url": "https://a.example",
            "priority": 1,
            "quota": {"tokens": 100, "window": "daily"},
        },
        {"name": "b", "base_url": "https://b.example", "priority": 2},
    ]
    return load_config(env={}, overrides={"providers": providers}).routing


def router() -> Router:
    return Router(routing(), wall=lambda: NOW)


def used(r: Router, provider: str) -> int:
    status = r.quota_status(r.routing.get(provider))  # type: ignore[arg-type]
    assert status is not None
    return status.used


async def check_sharing(one: Router, two: Router) -> None:
    """A breaker opened, a cooldown, quota spent, a session's provider and a
    routing switch on ``one`` are all known to ``two`` after one sync each;
    and both count towards the same quota."""
    now = trio.current_time()
    one.health_of("a").opened_until = now + 30
    one.health_of("b").cool_down(PROVIDER, now, now + 60, "429")
    one.record_usage("a", 120)
    one.remember_session("session-1", "b")
    one.switch("single", "b")
    await one.save_mode()
    await one.sync()
    await two.sync()
    assert two.health_of("a").breaker(trio.current_time()) == "open"
    assert two.health_of("b").cooldown_until() > trio.current_time() + 50
    assert used(two, "a") == 120
    assert two.quota_status(two.routing.get("a")).over  # type: ignore[arg-type,union-attr]
    assert two.session_provider("session-1") == "b"
    assert (two.mode.mode, two.mode.provider) == ("single", "b")
    two.record_usage("a", 5)
    await two.sync()
    await one.sync()
    assert used(one, "a") == 125  # everyone's total, never one process's alone
