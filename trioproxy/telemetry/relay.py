"""The relay of callers' own OpenTelemetry (Trio): Claude Code and other
clients send their OTLP/HTTP metrics, logs and traces to the proxy with
their caller secret; each export is checked (size, the caller's rate),
stamped with the caller (stamp.py), answered at once, and forwarded to
every ``telemetry.relay_to`` collector by a task of its own, in a worker
thread (``urllib``). The queue is bounded: when the collectors are slow
or down, exports are dropped and counted, never waited for. Counts:
``trioproxy_telemetry_relay_total{signal,outcome}`` (accepted, refused,
dropped; then forwarded or failed, per collector)."""

from __future__ import annotations

import logging
import time
from collections import defaultdict

import trio

from trioproxy._util import post_status
from trioproxy.config.model import RelayConfig

log = logging.getLogger("trioproxy.telemetry")

QUEUE = 512  # exports waiting to be forwarded
POST_TIMEOUT = 10.0
MAX_CALLERS = 10_000  # rate windows kept


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST an export (blocking: run in a thread); the HTTP status."""
    return post_status(
        url, body, {"content-type": "application/x-protobuf", **headers}, POST_TIMEOUT
    )


class Relay:
    def __init__(self, cfg: RelayConfig, counts: defaultdict[tuple[str, str], int]) -> None:
        self.cfg = cfg
        self.counts = counts  # (signal, outcome) -> n: the metrics' own
        self._send, self._receive = trio.open_memory_channel[tuple[str, str, bytes]](QUEUE)
        self._windows: dict[str, tuple[int, int]] = {}  # caller -> (minute, exports)

    def admit(self, caller: str, now: float | None = None) -> int | None:
        """None, or the seconds until the caller may send again (its
        ``telemetry.relay_rpm`` is spent for this minute)."""
        now = time.time() if now is None else now
        minute = int(now // 60)
        seen, n = self._windows.get(caller, (minute, 0))
        if seen != minute:
            n = 0
        if n >= self.cfg.rpm:
            return max(1, 60 - int(now % 60))
        if len(self._windows) >= MAX_CALLERS and caller not in self._windows:
            self._windows.clear()  # a new minute's worth, rather than unbounded
        self._windows[caller] = (minute, n + 1)
        return None

    def offer(self, signal: str, path: str, payload: bytes) -> bool:
        try:
            self._send.send_nowait((signal, path, payload))
        except trio.WouldBlock:
            self.counts[(signal, "dropped")] += 1
            return False
        self.counts[(signal, "accepted")] += 1
        return True

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for signal, path, payload in self._receive:
            for n, (url, headers) in enumerate(self.cfg.targets):
                try:
                    status = await trio.to_thread.run_sync(post, url + path, payload, dict(headers))
                except OSError as exc:
                    status, why = 0, str(exc)
                else:
                    why = f"HTTP {status}"
                ok = 200 <= status < 300
                self.counts[(signal, "forwarded" if ok else "failed")] += 1
                if not ok:
                    log.warning(
                        "telemetry relay: collector %d of telemetry.relay_to: %s", n + 1, why
                    )
