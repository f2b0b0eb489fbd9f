"""Small helpers for Trio's strict exception groups."""

from __future__ import annotations

from collections.abc import Iterator
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
