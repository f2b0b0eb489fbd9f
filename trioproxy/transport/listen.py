"""Opening listeners, with the one-line error a person can act on."""

from __future__ import annotations

import trio

from trioproxy.config import ConfigError, Endpoint


async def open_listeners(where: Endpoint, key: str) -> list[trio.SocketListener]:
    """Listeners on ``where`` (one per address family the host resolves to).
    An address in use is a ConfigError naming the setting ``key``."""
    try:
        return await trio.open_tcp_listeners(where.port, host=where.host)
    except OSError as exc:
        raise ConfigError(f"{key} {where}: cannot listen: {exc.strerror or exc}") from None
