"""Which StateStore a process uses: Redis when ``state.redis_url`` is set,
else the SQLite file in the state directory."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from trioproxy.store.base import StateStore, StoreUnavailable
from trioproxy.store.local import LocalStore
from trioproxy.store.redis import RedisStore

log = logging.getLogger("trioproxy.store")


@contextlib.asynccontextmanager
async def open_state_store(state_dir: str, redis_url: str = "") -> AsyncIterator[StateStore | None]:
    """The store for the block's lifetime; None (logged) when the state
    directory cannot be used, and the router then runs on its own view."""
    if redis_url:
        async with RedisStore.open(redis_url) as redis:
            yield redis
        return
    try:
        local = await LocalStore.open(state_dir)
    except StoreUnavailable as exc:
        log.error(
            "%s: quotas, breakers and the routing mode are neither shared nor kept across a restart",
            exc,
        )
        yield None
        return
    try:
        yield local
    finally:
        await local.aclose()
