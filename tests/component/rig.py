"""The component tier's rig: the proxy's own transports and exchange, wired
as in a server, over in-memory streams instead of sockets.

Clients are real h11 and h2 state machines (tests/helpers.py) on one end of
a memory stream; the other end is served by ``serve_connection``, exactly
as an accepted socket is. The upstream pools get a connector that, instead
of dialling, opens a memory stream to an upstream application (the fake
upstream, or a few lines written for the test) served by the same
transports. No socket, no thread, no real time: under pytest-trio's
``autojump_clock`` a test that waits minutes of timeouts runs in
milliseconds, and what it asserts reads like a transcript.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio
import trio.testing

from tests.helpers import H1Client, H2Client, make_config
from trioproxy.config.model import Origin
from trioproxy.exchange.proxy import Proxy
from trioproxy.inbound.conn import serve_connection
from trioproxy.inbound.context import ConnContext, Listening
from trioproxy.inbound.exchange import App
from trioproxy.routing.router import Router
from trioproxy.state import ServerState
from trioproxy.transport.byteio import ByteIO, StreamIO
from trioproxy.upstream.pool import open_pools


@dataclass
class Rig:
    state: ServerState
    router: Router
    nursery: trio.Nursery
    proxy: Proxy
    upstreams: dict[str, App]  # by provider name
    dialled: dict[str, int] = field(default_factory=dict)  # connections opened, by provider
    _clients: int = 0

    async def h1(self) -> H1Client:
        """A new HTTP/1.1 client connection to the proxy."""
        return H1Client(self._accept())

    async def h2(self) -> H2Client:
        """A new HTTP/2 (prior knowledge) client connection to the proxy."""
        client = H2Client(self._accept())
        client.conn.initiate_connection()
        await client.flush()
        self.nursery.start_soon(client._reader)
        return client

    def raw(self, *, lockstep: bool = False) -> trio.abc.Stream:
        """The client's end of a new connection, to write frames by hand.
        ``lockstep``: each side's ``send_all`` returns only once the other
        side has received every byte, so a test decides which of the
        proxy's tasks can run when (trio.testing.lockstep_stream_pair)."""
        return self._accept(lockstep=lockstep)

    def _accept(self, *, lockstep: bool = False) -> trio.abc.Stream:
        self._clients += 1
        pair = trio.testing.lockstep_stream_pair if lockstep else trio.testing.memory_stream_pair
        ours, theirs = pair()
        ctx = ConnContext(self.state.listening, f"client-{self._clients}:1")
        self.nursery.start_soon(serve_connection, StreamIO(theirs), ctx, self.proxy)
        return ours


@asynccontextmanager
async def rig(upstreams: dict[str, App], **cfg: Any) -> AsyncIterator[Rig]:
    """The proxy in front of ``upstreams`` (provider name -> application;
    each provider's base_url is http://NAME.test), configured with ``cfg``
    (TOML keys, ``__`` for dots; ``providers`` entries need only extra keys)."""
    extra = cfg.pop("providers", {})
    providers = [
        {"name": name, "base_url": f"http://{name}.test", **extra.get(name, {})}
        for name in upstreams
    ]
    config = make_config(providers=providers, **cfg)
    state = ServerState(config)
    router = Router(config.routing)
    router.rand = lambda: 0.5  # no jitter: backoffs are exact
    state.router = router
    by_host = {f"{name}.test": name for name in upstreams}
    upstream_side = Listening(make_config())  # the upstreams' own transports

    async with trio.open_nursery() as nursery:
        await nursery.start(state.listening.watchdog.serve)
        await nursery.start(upstream_side.watchdog.serve)
        world = Rig(state, router, nursery, None, upstreams)  # type: ignore[arg-type]

        async def connect(origin: Origin, _tls: ssl.SSLContext | None) -> tuple[ByteIO, str]:
            name = by_host[origin.host]
            world.dialled[name] = world.dialled.get(name, 0) + 1
            ours, theirs = trio.testing.memory_stream_pair()
            ctx = ConnContext(upstream_side, "proxy:1")
            nursery.start_soon(serve_connection, StreamIO(theirs), ctx, upstreams[name])
            return StreamIO(ours), "http/1.1"  # h2 only by prior knowledge (its preface)

        upstream_cfgs = {p.name: p.upstream for p in config.routing.providers}
        async with open_pools(
            upstream_cfgs, max_head_bytes=config.limits.max_head_bytes, connector=connect
        ) as pools:
            state.pools = pools
            world.proxy = Proxy(state, pools, router)
            yield world
            nursery.cancel_scope.cancel()
