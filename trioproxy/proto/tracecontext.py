"""W3C Trace Context (pure): a client's ``traceparent`` read, and the one
the proxy sends upstream for each attempt."""

from __future__ import annotations

import random
import re

_TRACEPARENT = re.compile(rb"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
SAMPLED = 0x01


def parse_traceparent(value: bytes | None) -> tuple[int, int, bool] | None:
    """(trace id, parent span id, sampled) of a valid ``traceparent``
    (version ff, and all-zero ids, are invalid: a new trace then)."""
    if value is None:
        return None
    m = _TRACEPARENT.match(value.strip().lower())
    if m is None or m.group(1) == b"ff":
        return None
    trace_id, span_id = int(m.group(2), 16), int(m.group(3), 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, bool(int(m.group(4), 16) & SAMPLED)


def traceparent(trace_id: int, span_id: int, sampled: bool) -> bytes:
    return b"00-%032x-%016x-%02x" % (trace_id, span_id, SAMPLED if sampled else 0)


def new_trace_id() -> int:
    return random.getrandbits(128) or 1


def new_span_id() -> int:
    return random.getrandbits(64) or 1
