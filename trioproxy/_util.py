"""Small helpers: the one meaningful error of a nursery, waiting for the
first of several things, and telling whether a watched file changed."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import trio


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            yield from _leaves(sub)
    else:
        yield exc


@contextmanager
def one_error() -> Iterator[None]:
    """Re-raise the single meaningful exception of a nursery's group.

    A nursery wraps its children's errors in an ExceptionGroup; when exactly one
    of them is not a Cancelled, that one is what happened (the others are the
    siblings it cancelled), and callers want to catch it by type. Anything
    else (several real errors, or only Cancelled) propagates unchanged."""
    try:
        yield
    except BaseExceptionGroup as group:
        real = [e for e in _leaves(group) if not isinstance(e, trio.Cancelled)]
        if len(real) == 1:
            raise real[0] from None
        raise


async def first_of(*waits: Callable[[], Awaitable[object]]) -> None:
    """Return as soon as any of ``waits`` returns; the others are cancelled.
    The caller bounds it (``move_on_after``) when none may ever return."""
    async with trio.open_nursery() as race:
        for wait in waits:
            race.start_soon(_then_cancel, wait, race.cancel_scope)


async def _then_cancel(wait: Callable[[], Awaitable[object]], scope: trio.CancelScope) -> None:
    await wait()
    scope.cancel()


FileStamp = tuple[int, int, int] | None  # (inode, size, mtime_ns); None: absent


def file_stamp(path: str) -> FileStamp:
    """What changes when a file is rewritten in place or replaced by a rename
    (the way editors and atomic writers do it)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def post_status(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST ``body`` (blocking: run in a worker thread); the HTTP status, an
    error status included. Raises OSError when nothing answered. For the
    operator's own URLs (alert webhooks, telemetry collectors)."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            answer.read(65536)
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
