"""Posting alerts (Trio): off the request path, once per crossing across
every process, retried with backoff.

A request, a watcher or a worker ``offer``s an alert: a non-blocking put
into a bounded queue (full: the alert is dropped and counted, never
waited for). One task takes them in turn: it claims the alert's key in
the state store (the state file, or Redis: ``claim`` is atomic across
workers and instances), so the one process that claims it posts and the
others count a duplicate; without a store (or with it down) it posts
anyway, as a duplicate is better than a lost alert. Each webhook is
POSTed in a worker thread (``urllib``), and retried after RETRY_DELAYS on
a connection error, a 429 or a 5xx. The URLs are credentials: they are
never logged.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence

import trio

from trioproxy._util import post_status
from trioproxy.alerts.events import Alert, payload
from trioproxy.store.base import StoreUnavailable

log = logging.getLogger("trioproxy.alerts")

QUEUE = 256  # alerts waiting to be posted
RETRY_DELAYS = (1.0, 4.0, 16.0)  # seconds before each retry
POST_TIMEOUT = 10.0

Post = Callable[[str, bytes], int]  # (url, body) -> HTTP status (blocking)
Claim = Callable[[str, float], Awaitable[bool]]


def post_json(url: str, body: bytes) -> int:
    """POST ``body`` as JSON (blocking: run in a thread); the HTTP status."""
    return post_status(url, body, {"content-type": "application/json"}, POST_TIMEOUT)


class Alerts:
    def __init__(
        self,
        urls: Sequence[str],
        counts: defaultdict[tuple[str, str], int],
        *,
        claim: Callable[[], Claim | None] = lambda: None,
        post: Post = post_json,
        delays: Sequence[float] = RETRY_DELAYS,
    ) -> None:
        """``counts``: (kind, outcome) -> n, the metrics' own.
        ``claim``: the state store's claim, when there is a store."""
        self.urls = tuple(urls)
        self.counts = counts
        self._claim = claim
        self._post = post
        self._delays = tuple(delays)
        self._send, self._receive = trio.open_memory_channel[Alert](QUEUE)

    @property
    def enabled(self) -> bool:
        return bool(self.urls)

    def offer(self, alert: Alert) -> None:
        """Queue ``alert`` (never waits; sync, so any code may call it)."""
        if not self.urls:
            return
        try:
            self._send.send_nowait(alert)
        except trio.WouldBlock:
            self.counts[(alert.kind, "dropped")] += 1

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for alert in self._receive:
            await self.deliver(alert)

    async def deliver(self, alert: Alert) -> None:
        if not await self._first(alert):
            self.counts[(alert.kind, "duplicate")] += 1
            return
        body = payload(alert)
        for n, url in enumerate(self.urls):
            ok = await self._post_with_retries(url, body)
            self.counts[(alert.kind, "sent" if ok else "failed")] += 1
            if not ok:
                log.error(
                    "alert not delivered to webhook %d of alerts.webhook_urls: %s",
                    n + 1,
                    alert.text,
                )

    async def _first(self, alert: Alert) -> bool:
        claim = self._claim()
        if claim is None:
            return True
        try:
            return await claim("alert:" + alert.key, alert.ttl)
        except StoreUnavailable:
            return True

    async def _post_with_retries(self, url: str, body: bytes) -> bool:
        for delay in (0.0, *self._delays):
            await trio.sleep(delay)
            try:
                status = await trio.to_thread.run_sync(self._post, url, body)
            except OSError:
                continue
            if 200 <= status < 300:
                return True
            if status != 429 and status < 500:
                return False  # the webhook refuses it: retrying will not help
        return False
