"""The standard ``process_*`` figures of this process (Linux /proc), for the
snapshot behind /metrics: what Prometheus's client libraries export, so
the usual dashboards and alerts work. Read at scrape time, never on the
request path."""

from __future__ import annotations

import os
import resource
import time
from typing import Any


def process_figures() -> dict[str, Any]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out: dict[str, Any] = {
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
        "resident_memory_bytes": _rss(),
        "open_fds": _open_fds(),
        "max_fds": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "start_time_seconds": round(_start_time(), 3),
    }
    return out


def _rss() -> int:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # the peak: best known


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def _start_time() -> float:
    """Seconds since the epoch when this process started."""
    try:
        with open("/proc/self/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        ticks = int(fields[19])  # field 22, starttime, counted after "(comm)"
        with open("/proc/uptime", "rb") as fh:
            uptime = float(fh.read().split()[0])
        return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.time()
