"""GET /metrics/stream: the snapshot (snapshot.py) as a server-sent event once
a second, for the dashboard and for anyone with curl."""

from __future__ import annotations

import orjson
import trio

from trioproxy.admin.snapshot import current_view
from trioproxy.inbound.exchange import ClientExchange
from trioproxy.proto.events import ResponseHead
from trioproxy.state import ServerState

INTERVAL = 1.0  # seconds between snapshots


async def serve_metrics_stream(ex: ClientExchange, state: ServerState) -> None:
    """Runs until the client leaves (the exchange is cancelled; nothing to
    clean up) or the server drains: then the stream ends at an event boundary
    so that it never holds a drain up."""
    await ex.send_head(
        ResponseHead(
            200,
            [
                (b"content-type", b"text/event-stream"),
                (b"cache-control", b"no-store"),
                (b"x-accel-buffering", b"no"),  # nginx in front: do not buffer it
            ],
        )
    )
    ex.watch_disconnect()
    state.listening.watchers += 1
    try:
        while not state.draining:
            doc = await current_view(state)
            await ex.send_body(b"event: snapshot\ndata: " + orjson.dumps(doc) + b"\n\n")
            with trio.move_on_after(INTERVAL):  # the tick, cut short by a drain
                await state.listening.drain_started.wait()
    finally:
        state.listening.watchers -= 1
    await ex.end()
