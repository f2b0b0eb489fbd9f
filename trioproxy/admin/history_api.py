"""The dashboard's memory, from the usage ledger: so a reload, or a
window longer than the page has been open, still shows what happened.

    GET /admin/api/history?window=15m|1h|24h
        buckets of the window: requests, errors (the upstream's and the
        proxy's own apart), tokens in and out, latency p50 and p99; the
        window's status codes; and its last errors (request ids: the page
        links them to the viewer when the conversation log is on)
    GET /admin/api/usage?window=15m|1h|24h&by=caller|model|provider|request_class|agent_type
        requests, errors, tokens and estimated cost in the window (by
        provider: the history of what the providers' quotas counted)

The ledger is every worker's and, on Postgres, every instance's: one
history for the whole service. Read in the viewer's reader thread.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

from trioproxy.accounting.metrics import DURATION_BUCKETS
from trioproxy.accounting.report import lines_from
from trioproxy.db.base import StorageError
from trioproxy.errors import InvalidRequest, MethodNotAllowed, NotFound, Unavailable
from trioproxy.inbound.exchange import ClientExchange
from trioproxy.state import ServerState

HISTORY = b"/admin/api/history"
USAGE_BY = ("caller", "model", "provider", "request_class", "agent_type")
USAGE = b"/admin/api/usage"
# window -> (seconds, bucket seconds): about 180-300 points a chart.
WINDOWS = {"15m": (900, 5), "1h": (3600, 15), "24h": (86400, 300)}
RECENT_ERRORS = 12


def is_history_path(path: bytes) -> bool:
    return path in (HISTORY, USAGE)


async def handle(ex: ClientExchange, state: ServerState) -> tuple[int, Any]:
    head = ex.head
    if head.method not in (b"GET", b"HEAD"):
        raise MethodNotAllowed(f"{head.path.decode('latin-1')} accepts GET and HEAD")
    reader = state.log_reader
    if reader is None or not state.config.usage_ledger:
        raise NotFound("the usage ledger is off on this server (usage.ledger)")
    params = _params(head.target)
    window = params.get("window", "15m")
    if window not in WINDOWS:
        raise InvalidRequest(f"window: one of {', '.join(WINDOWS)}")
    span, step = WINDOWS[window]
    now = time.time()
    since = now - span
    try:
        if head.path == HISTORY:
            buckets, codes, errors = await reader.run(
                lambda db: (
                    db.history(since, step, DURATION_BUCKETS),
                    db.status_counts(since),
                    db.recent_errors(since, RECENT_ERRORS),
                )
            )
            return 200, {
                "window": window,
                "step_s": step,
                "now": round(now, 3),
                "log_bodies": state.config.log_bodies,
                "points": [point(b, step) for b in buckets],
                "codes": codes,
                "errors": errors,
            }
        by = params.get("by", "caller")
        if by not in USAGE_BY:
            raise InvalidRequest(f"by: one of {', '.join(USAGE_BY)}")
        rows = await reader.run(lambda db: db.usage_sums(by, since))
    except StorageError as exc:
        raise Unavailable(f"the usage ledger cannot be read: {exc}") from None
    lines, total = lines_from(rows, by, state.prices)
    return 200, {
        "window": window,
        "by": by,
        "lines": [x.as_dict() for x in lines],
        "total": total.as_dict(),
    }


def point(bucket: dict[str, Any], step: int) -> dict[str, Any]:
    """One bucket as the charts draw it (pure): rates per second, the error
    share, latency quantiles from the bucket's duration histogram."""
    n = int(bucket["n"])
    counts = [int(bucket[f"le_{i}"] or 0) for i in range(len(DURATION_BUCKETS))]
    return {
        "t": (int(bucket["b"]) + 1) * step,  # the bucket's end: its rate is "until then"
        "requests": n,
        "rps": round(n / step, 4),
        "errors": int(bucket["errors"] or 0),
        "proxy_errors": int(bucket["proxy_errors"] or 0),
        "input_tokens_per_s": round(int(bucket["tin"] or 0) / step, 3),
        "output_tokens_per_s": round(int(bucket["tout"] or 0) / step, 3),
        "cache_read_tokens": int(bucket["cache_read"] or 0),
        "input_tokens": int(bucket["tin"] or 0),
        "p50": quantile(counts, n, 0.5),
        "p99": quantile(counts, n, 0.99),
    }


def quantile(cumulative: list[int], n: int, q: float) -> float | None:
    """The bucket bound the q-quantile falls under (the dashboard's live
    rule, so history and live lines agree); None without requests, and
    the last bound doubled past it."""
    if n <= 0:
        return None
    target = q * n
    for bound, seen in zip(DURATION_BUCKETS, cumulative, strict=True):
        if seen >= target:
            return float(bound)
    return float(DURATION_BUCKETS[-1] * 2)


def _params(target: bytes) -> dict[str, str]:
    _, _, qs = target.partition(b"?")
    parsed = urllib.parse.parse_qs(qs.decode("utf-8", errors="replace"))
    out = {k: v[-1].strip() for k, v in parsed.items()}
    for name in out:
        if name not in ("window", "by"):
            raise InvalidRequest(f"unknown parameter {name!r} (known: window, by)")
    return out
