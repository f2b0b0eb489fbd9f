"""What the proxy knows about itself right now: the JSON snapshot behind
/metrics.json, /metrics/stream and the dashboard, and the gauge families
/metrics adds to the counters."""

from __future__ import annotations

import os
import time
from typing import Any

from trioproxy import __version__
from trioproxy.admin.process import process_figures
from trioproxy.callers.policy import remaining
from trioproxy.config.callers import policy_dict
from trioproxy.state import ServerState


async def current_view(state: ServerState) -> dict[str, Any]:
    """The whole server's snapshot: every worker's merged when this is one
    of several (its own alone if the supervisor does not answer in time)."""
    if state.peers is not None and (merged := await state.peers.gather()) is not None:
        return merged
    return snapshot(state)


def snapshot(state: ServerState) -> dict[str, Any]:
    """Cumulative counters plus current gauges. Rates (requests/s, tokens/s)
    are differences between two snapshots, taken by whoever reads them."""
    return {
        "time": round(time.time(), 3),
        "pid": os.getpid(),
        **state.metrics.snapshot(),
        "in_flight": state.in_flight,
        "active": dict(state.active),
        "watchers": state.listening.watchers,
        "connections": dict(state.connections),
        "pools": {name: pool.state.counts() for name, pool in state.pools.items()},
        "draining": state.draining,
        "uptime_s": round(state.uptime_s, 3),
        "routing": None if state.router is None else state.router.snapshot(),
        "callers": callers_view(state),
        "process": process_figures(),
        "log_rows": state.journal.log_counts(),
    }


def callers_view(state: ServerState) -> list[dict[str, Any]]:
    """Each caller's policy and use against it (the shared counts: the same
    in every worker to within a second). Never a secret or its digest."""
    book, now = state.book, state.book.wall()
    rows = []
    for c in state.callers.callers():
        use = book.usage(c, now)
        budget = c.budget
        rows.append(
            {
                "name": c.name,
                "source": state.callers.source(c.name),
                **policy_dict(c),
                "expires": c.expires,
                "secrets": len(c.digests),
                **use,
                "budget_remaining": None
                if budget is None
                else round(remaining(budget, book.spend(c, now)), 6),
            }
        )
    return rows


Family = tuple[str, str, list[tuple[dict[str, str], float]]]

# The standard process_* series: (name, snapshot key, kind, help).
_PROCESS = (
    (
        "process_cpu_seconds_total",
        "cpu_seconds",
        "counter",
        "User and system CPU time, seconds (every worker's)",
    ),
    (
        "process_resident_memory_bytes",
        "resident_memory_bytes",
        "gauge",
        "Resident memory, bytes (every worker's)",
    ),
    ("process_open_fds", "open_fds", "gauge", "Open file descriptors (every worker's)"),
    ("process_max_fds", "max_fds", "gauge", "The limit on open file descriptors of one process"),
    (
        "process_start_time_seconds",
        "start_time_seconds",
        "gauge",
        "When the oldest process of the view started, seconds since the epoch",
    ),
)


def gauges(snap: dict[str, Any]) -> dict[str, Family]:
    """The gauge families of a snapshot (one worker's, or all merged)."""
    families: dict[str, Family] = {
        "trioproxy_requests_in_flight": (
            "gauge",
            "Requests being handled now, by client protocol",
            [({"protocol": p}, n) for p, n in sorted(snap["active"].items())],
        ),
        "trioproxy_client_connections": (
            "gauge",
            "Open client connections by protocol",
            [({"protocol": p}, n) for p, n in sorted(snap["connections"].items())],
        ),
        "trioproxy_draining": ("gauge", "1 while draining", [({}, 1 if snap["draining"] else 0)]),
        "trioproxy_uptime_seconds": ("gauge", "Seconds since start", [({}, snap["uptime_s"])]),
        "trioproxy_workers": (
            "gauge",
            "Worker processes whose counts are in this view",
            [({}, snap.get("workers", 1))],
        ),
        "trioproxy_log_rows_total": (
            "counter",
            "Conversation-log rows (log_bodies) by outcome: written; dropped (too many "
            "bodies waiting for the writer); lost (the database refused them)",
            [({"outcome": k}, v) for k, v in sorted(snap.get("log_rows", {}).items())],
        ),
    }
    pools = snap["pools"]
    families["trioproxy_upstream_connections"] = (
        "gauge",
        "Upstream connections by provider and state (h1_idle, h1_active, h2, opening)",
        [
            ({"provider": name, "state": k}, v)
            for name, c in sorted(pools.items())
            for k, v in c.items()
            if k != "h2_streams"
        ],
    )
    families["trioproxy_upstream_h2_streams"] = (
        "gauge",
        "HTTP/2 streams in use on upstream connections, by provider",
        [({"provider": name}, c["h2_streams"]) for name, c in sorted(pools.items())],
    )
    proc = snap.get("process")
    if proc is not None:
        for name, key, kind, help_ in _PROCESS:
            families[name] = (kind, help_, [({}, proc[key])])
    families["trioproxy_build_info"] = (
        "gauge",
        "1, labelled with the running version",
        [({"version": __version__}, 1)],
    )
    families["trioproxy_caller_budget_remaining"] = (
        "gauge",
        "What is left of a caller's budget in its window, by caller and unit (usd or tokens)",
        [
            (
                {
                    "caller": c["name"],
                    "unit": "usd" if c["budget"]["usd"] is not None else "tokens",
                },
                c["budget_remaining"],
            )
            for c in snap.get("callers", ())
            if c["budget"] is not None
        ],
    )
    routing = snap.get("routing")
    if routing is not None:
        families.update(_provider_families(routing))
        store = routing.get("state_store")
        families["trioproxy_state_store_up"] = (
            "gauge",
            "1 while the shared state store answers (0: serving on the local view)",
            [] if store is None else [({}, 1 if store["up"] else 0)],
        )
    return families


_BREAKER = {"closed": 0, "half-open": 1, "open": 2}


def _provider_families(snap: dict[str, object]) -> dict[str, Family]:
    rows = snap["providers"]
    assert isinstance(rows, list)

    def each(fn: object) -> list[tuple[dict[str, str], float]]:
        assert callable(fn)
        return [({"provider": r["name"]}, float(fn(r))) for r in rows]

    return {
        "trioproxy_provider_available": (
            "gauge",
            "1 when the provider can be tried now (not open, cooling down or over quota)",
            each(lambda r: r["state"] in ("healthy", "degraded", "half-open")),
        ),
        "trioproxy_provider_breaker_state": (
            "gauge",
            "Circuit breaker: 0 closed, 1 half-open, 2 open",
            each(lambda r: _BREAKER[r["breaker"]]),
        ),
        "trioproxy_provider_consecutive_failures": (
            "gauge",
            "Consecutive failed requests (each counted once, its retries included)",
            each(lambda r: r["consecutive_failures"]),
        ),
        "trioproxy_provider_in_flight": (
            "gauge",
            "Requests on the provider now",
            each(lambda r: r["in_flight"]),
        ),
        "trioproxy_provider_quota_used_tokens": (
            "gauge",
            "Tokens counted in the current quota window (providers with a quota)",
            [({"provider": r["name"]}, r["quota"]["used"]) for r in rows if r["quota"]],
        ),
        "trioproxy_provider_quota_limit_tokens": (
            "gauge",
            "Token budget of the quota window",
            [({"provider": r["name"]}, r["quota"]["limit"]) for r in rows if r["quota"]],
        ),
        "trioproxy_provider_retries_total": (
            "counter",
            "Attempts retried on the same provider (connection errors; 503 while another provider could serve)",
            each(lambda r: r["retries"]),
        ),
        "trioproxy_provider_failovers_total": (
            "counter",
            "Requests that failed over away from the provider",
            each(lambda r: r["failovers"]),
        ),
    }
