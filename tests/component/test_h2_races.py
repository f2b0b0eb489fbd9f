"""HTTP/2 races the component tier can set up on purpose: lock-step memory
streams decide which of the proxy's tasks may run when, so an interleaving
that a socket shows once in many tries happens here every other try."""

from __future__ import annotations

import logging

import hpack
import pytest
import trio
import trio.testing
from hyperframe.frame import (
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
)

from tests.component.rig import rig
from tests.helpers import Frames
from trioproxy.inbound.exchange import ClientExchange, respond
from trioproxy.proto.events import ResponseHead

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
CANCEL = 0x8


async def drain(s: trio.abc.Stream, frames: Frames) -> None:
    """Receive until the proxy has nothing more to send right now."""
    while True:
        await trio.testing.wait_all_tasks_blocked()
        with trio.move_on_after(0.005):
            data = await s.receive_some(65536)
            assert data, "the proxy closed the connection"
            frames.feed(data)
            continue
        return


def headers(sid: int, fields: list[tuple[bytes, bytes]], *, end: bool) -> bytes:
    f = HeadersFrame(sid)
    f.data = ENCODER.encode(fields)
    f.flags.add("END_HEADERS")
    if end:
        f.flags.add("END_STREAM")
    return f.serialize()


ENCODER = hpack.Encoder()


class Held:
    """An upstream that answers once the test lets it: the long stream stays
    silent (nothing for the proxy to write) while the race is run."""

    def __init__(self) -> None:
        self.release = trio.Event()

    async def __call__(self, ex: ClientExchange) -> None:
        while await ex.receive_body() is not None:
            pass
        await self.release.wait()
        await respond(ex, ResponseHead(200, [(b"content-type", b"application/json")]), ANSWER)


ANSWER = b'{"type":"message","content":[],"usage":{"input_tokens":1,"output_tokens":1}}'


async def test_a_reset_racing_a_refusal_costs_that_stream_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client resets a stream while the proxy writes its refusal (a 400
    for a target without its leading /). The reset and the write's end are
    handed to the proxy at the same moment, 200 times: no traceback, no
    ERROR, and a stream opened before them all completes on the same
    connection."""
    caplog.set_level(logging.INFO)
    up = Held()
    async with rig({"a": up}, limits__h2_max_resets_per_second=10_000) as world:
        s = world.raw(lockstep=True)
        frames = Frames()
        good = headers(
            1,
            [
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":authority", b"x"),
                (b":path", b"/v1/messages"),
                (b"x-api-key", b"k"),
            ],
            end=False,
        )
        body = DataFrame(1)
        body.data = b'{"model":"claude-sonnet-4-6","max_tokens":64,"messages":[]}'
        body.flags.add("END_STREAM")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(s.send_all, PREFACE + SettingsFrame(0).serialize())
            await drain(s, frames)
            async with trio.open_nursery() as sending:
                sending.start_soon(s.send_all, good + body.serialize())
                await drain(s, frames)
            await drain(s, frames)
            bad = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x")]
            for i in range(200):
                sid = 3 + 2 * i
                await s.send_all(headers(sid, [*bad, (b":path", b"v1/models")], end=True))
                # The proxy's writer now waits for us to take its refusal.
                await trio.testing.wait_all_tasks_blocked()
                async with trio.open_nursery() as both:
                    both.start_soon(s.send_all, RstStreamFrame(sid, error_code=CANCEL).serialize())
                    frames.feed(await s.receive_some(65536))
                await drain(s, frames)
            up.release.set()  # the long stream answers only now, on the same connection
            with trio.fail_after(30):
                while not any(f.stream_id == 1 and "END_STREAM" in f.flags for f in frames.seen):
                    await drain(s, frames)
    assert not [f for f in frames.seen if isinstance(f, GoAwayFrame)]
    assert not [f for f in frames.seen if isinstance(f, RstStreamFrame) and f.stream_id == 1]
    answered = b"".join(
        f.data for f in frames.seen if isinstance(f, DataFrame) and f.stream_id == 1
    )
    assert answered == ANSWER
    bad_lines = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad_lines, [(r.name, r.getMessage()) for r in bad_lines]
