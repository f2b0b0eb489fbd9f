"""The retention budget and the request body's kept copy, without sockets:
a scripted exchange hands the body over in chunks."""

from __future__ import annotations

from collections import deque

import trio

from trioproxy.exchange.body import RequestBody
from trioproxy.exchange.retention import Retention
from trioproxy.proto.events import BodyChunk


class Scripted:
    """Just enough of a ClientExchange for RequestBody: the body's chunks."""

    has_body = True

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = deque(chunks)
        self.acked = 0

    async def receive_body(self) -> BodyChunk | None:
        await trio.lowlevel.checkpoint()
        return BodyChunk(self.chunks.popleft(), 0) if self.chunks else None

    def ack(self, n: int) -> None:
        self.acked += n


def body(chunks: list[bytes], retention: Retention, declared: int | None = None) -> RequestBody:
    return RequestBody(
        Scripted(chunks),  # type: ignore[arg-type]
        max_bytes=1 << 20,
        declared=declared,
        retention=retention,
    )


async def read(b: RequestBody) -> None:
    while await b.read() is not None:
        pass


async def test_a_body_within_the_budget_is_kept_and_released() -> None:
    r = Retention(100)
    b = body([b"a" * 40, b"b" * 40], r)
    await read(b)
    assert r.held == 80 and b.replayable and b.replay() == [b"a" * 40, b"b" * 40]
    b.forget()
    b.forget()  # twice is harmless
    assert r.held == 0 and r.peak == 80 and r.skipped == 0


async def test_a_body_that_stops_fitting_drops_its_copy() -> None:
    r = Retention(100)
    other = body([b"x" * 50], r)
    await read(other)  # another request holds half
    b = body([b"a" * 30, b"b" * 30], r)
    assert await b.read() is not None and r.held == 80
    assert await b.read() is not None  # 30 more would not fit: the copy goes
    assert b.skipped and not b.replayable and b.replay() == []
    assert r.held == 50 and r.skipped == 1
    assert await b.read() is None and r.held == 50  # the rest streams, uncounted
    other.forget()
    assert r.held == 0


async def test_a_declared_length_over_the_budget_keeps_nothing() -> None:
    r = Retention(100)
    b = body([b"a" * 150], r, declared=150)
    assert not b.skipped and b.replayable  # nothing read yet: a first try may still start over
    await read(b)
    assert b.skipped
    assert not b.replayable and r.held == 0 and r.skipped == 1


async def test_a_body_a_feature_reads_whole_is_counted_never_refused() -> None:
    r = Retention(100)
    b = body([b"a" * 100, b"b" * 100], r, declared=200)
    whole = await b.read_all()
    assert whole == b"a" * 100 + b"b" * 100
    assert not b.skipped and b.replayable and r.skipped == 0
    assert r.held == 200 and b.replay() == [whole]  # one copy, not the chunks and their join
    assert not r.reserve(1)  # streamed bodies give way to it
    b.forget()
    assert r.held == 0
