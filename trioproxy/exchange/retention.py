"""The process's budget for request bodies kept for a retry.

Every forwarded request keeps a copy of its body until its answer starts,
so that a retry or a failover can send it again (body.py). One caller's
sixteen concurrent 32 MiB uploads would otherwise hold 512 MiB at once.
``limits.retained_body_bytes`` bounds the sum over the process: a body
that would not fit is still forwarded, streamed as it arrives, but without
a copy, so it cannot be retried or failed over. Nothing else changes for
it; the access line says ``retention_skipped`` and
``trioproxy_body_retention_skipped_total`` counts it.

Freed copies are given back to the system (``serve_give_back``). Bodies
arrive as chunks of up to 64 KiB: glibc serves those from its heaps, not
from mmap, and frees them into the heaps, where they stay resident. Measured
with sixteen 32 MiB chunked uploads and no budget: 456 MiB still resident
30 s later. ``malloc_trim(0)`` returns the free pages in the middle of the
heaps too; it runs in a worker thread, at most once a second, and only
after at least TRIM_AFTER bytes of copies were released.

A body that a feature must read whole (scrubbing, routing rules, a model
allowlist, demotion) is needed whole anyway: it is counted here, so that
streamed bodies give way to it, but never refused.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

import trio

log = logging.getLogger("trioproxy.exchange")

TRIM_AFTER = 32 * 1024 * 1024  # bytes of copies released before memory is given back
TRIM_CHECK = 1.0  # seconds between looks


class Retention:
    """Bytes of request bodies held for retries, against the limit.
    Synchronous bookkeeping; one per server (worker)."""

    __slots__ = ("held", "limit", "peak", "skipped")

    def __init__(self, limit: int) -> None:
        self.limit = limit  # bytes; a reload may change it
        self.held = 0
        self.peak = 0
        self.skipped = 0  # requests forwarded without a retained copy

    def __repr__(self) -> str:
        return f"<Retention held={self.held} limit={self.limit} skipped={self.skipped}>"

    def fits(self, n: int) -> bool:
        return self.held + n <= self.limit

    def reserve(self, n: int) -> bool:
        """Hold ``n`` more bytes if the budget allows; False if it does not."""
        if self.held + n > self.limit:
            return False
        self.force(n)
        return True

    def force(self, n: int) -> None:
        """Hold ``n`` bytes whatever the budget (a body needed whole)."""
        self.held += n
        if self.held > self.peak:
            self.peak = self.held

    def release(self, n: int) -> None:
        self.held -= n


def _malloc_trim() -> Callable[[], None] | None:
    """glibc's ``malloc_trim(0)``, or None where there is none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def give_back() -> None:
        trim(0)

    return give_back


async def serve_give_back(
    retention: Retention, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Until cancelled: once copies of at least TRIM_AFTER bytes were
    released since the last look, give the freed memory back to the system
    (in a worker thread: a trim of a large heap takes milliseconds)."""
    trim = _malloc_trim()
    task_status.started()
    if trim is None:
        log.debug("no malloc_trim here: freed request bodies stay with the allocator")
        return
    while True:
        await trio.sleep(TRIM_CHECK)
        if retention.peak - retention.held >= TRIM_AFTER:
            retention.peak = retention.held
            await trio.to_thread.run_sync(trim)
