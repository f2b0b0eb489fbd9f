"""What the proxy watches to raise alerts besides budgets (Trio): every
WATCH_EVERY seconds, each provider's breaker (opened, closed again) and
credentials (unusable: a subscription token expired or unreadable, a
cloud's credentials that failed to refresh; a subscription token about
to expire). Reads the router's state only: nothing on the request path."""

from __future__ import annotations

import time

import trio

from trioproxy.alerts.events import breaker_changed, credential_trouble
from trioproxy.alerts.sender import Alerts
from trioproxy.config.callers import format_time
from trioproxy.routing.router import Router

WATCH_EVERY = 1.0
EXPIRING_WITHIN = 1800.0  # seconds: a subscription token this close to expiry is reported


async def watch(
    router: Router, alerts: Alerts, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    opened: dict[str, bool] = {}
    unusable: dict[str, str] = {}
    expiring: set[tuple[str, float]] = set()  # said once per token (and process)
    task_status.started()
    while True:
        await trio.sleep(WATCH_EVERY)
        if not alerts.enabled:
            continue
        wall = time.time()
        minute, hour = int(wall // 60), int(wall // 3600)
        for p in router.routing.providers:
            h = router.health_of(p.name)
            is_open = h.opened_until is not None  # open, or half-open awaiting its trial
            if is_open != opened.get(p.name, False):
                if is_open or p.name in opened:
                    alerts.offer(breaker_changed(p.name, is_open, h.last_error, minute))
                opened[p.name] = is_open
        for name, why in router.unusable.items():
            if unusable.get(name) != why:
                alerts.offer(credential_trouble(name, "unusable", f"not used: {why}", hour))
        unusable = dict(router.unusable)
        for name, at in router.subscriptions.expiring(EXPIRING_WITHIN).items():
            if (name, at) in expiring:
                continue
            expiring.add((name, at))
            alerts.offer(
                credential_trouble(
                    name,
                    f"expires-{int(at)}",
                    f"its subscription token expires at {format_time(at)} and was not "
                    "refreshed: sign in again with Claude Code",
                    hour,
                )
            )
