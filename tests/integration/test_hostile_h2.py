"""Hostile HTTP/2 input over real sockets: frames built with h2, hyperframe and
hpack. For each: what the proxy does to the attacker, that nothing (or only a
bounded amount) reached the upstream, and that another client is served."""

from __future__ import annotations

import contextlib
import logging

import h2.config
import h2.connection
import h2.settings
import hpack
import pytest
import trio
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

from tests.helpers import Frames, H2Client, h1_request, messages_frames, start_fake, start_proxy
from trioproxy.proto.h2 import ENHANCE_YOUR_CALM, ConnectionEnded, GoAwaySplitter

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PROTOCOL_ERROR = 0x1


async def goaway_or_close(stream: trio.abc.Stream, seconds: float = 10) -> ConnectionEnded | None:
    """Read until the proxy says GOAWAY or closes; the GOAWAY if there was one."""
    splitter = GoAwaySplitter()
    with trio.fail_after(seconds):
        while True:
            try:
                data = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                return None
            if not data:
                return None
            for piece in splitter.feed(data):
                if isinstance(piece, ConnectionEnded):
                    return piece


def client_conn() -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    conn.initiate_connection()
    return conn


def req_headers(path: bytes = b"/api/hello") -> list[tuple[bytes, bytes]]:
    return [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x"), (b":path", path)]


async def still_serving(port: int) -> None:
    good = await h1_request(port, "GET", "/api/hello")
    assert good.status == 200


async def test_rapid_reset_gets_enhance_your_calm(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, limits__h2_max_resets_per_second=50)
    caplog.set_level(logging.WARNING, logger="trioproxy")
    conn = client_conn()
    for _ in range(400):  # open and reset in a loop (CVE-2023-44487)
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, req_headers(b"/v1/messages"), end_stream=True)
        conn.reset_stream(sid, 8)
    async with await trio.open_tcp_stream("127.0.0.1", proxy.port) as s:
        await s.send_all(conn.data_to_send())
        goaway = await goaway_or_close(s)
    assert goaway is not None and goaway.error_code == ENHANCE_YOUR_CALM
    await still_serving(proxy.port)
    assert fake.fake is not None and fake.fake.requests < 150  # bounded by the reset budget
    # The abuse is logged once for the connection, with a count.
    warned = [r.getMessage() for r in caplog.records if "rapid reset" in r.getMessage()]
    assert len(warned) == 1 and "resets, over 50 a second" in warned[0], warned


async def test_continuation_flood_is_cut_off(nursery: trio.Nursery) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url)
    frames = [SettingsFrame(0).serialize()]
    head = HeadersFrame(1)
    head.data = hpack.Encoder().encode(req_headers())[:5]
    frames.append(head.serialize())  # no END_HEADERS: a header block that never ends
    for _ in range(500):
        cont = ContinuationFrame(1)
        cont.data = b"\x00" * 1000
        frames.append(cont.serialize())
    async with await trio.open_tcp_stream("127.0.0.1", proxy.port) as s:
        with contextlib.suppress(trio.BrokenResourceError):  # cut off while sending: fine
            await s.send_all(PREFACE + b"".join(frames))
        goaway = await goaway_or_close(s)
    assert goaway is None or goaway.error_code != 0
    await still_serving(proxy.port)
    assert fake.fake is not None and fake.fake.requests == 1  # only the good one


async def test_hpack_bomb_is_refused(nursery: trio.Nursery) -> None:
    """A ~4 KB header inserted into the dynamic table, then referenced 100
    times by one-byte indexes: 400 KB decoded from ~4 KB on the wire."""
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url)
    enc = hpack.Encoder()
    block = enc.encode([*req_headers(), *[(b"x-bomb", b"a" * 4000)] * 100])
    assert len(block) < 5000
    frames = [SettingsFrame(0).serialize()]
    for i in range(0, len(block), 16000):
        f = HeadersFrame(1) if i == 0 else ContinuationFrame(1)
        f.data = block[i : i + 16000]
        if i + 16000 >= len(block):
            f.flags.add("END_HEADERS")
        if i == 0:
            f.flags.add("END_STREAM")
        frames.append(f.serialize())
    async with await trio.open_tcp_stream("127.0.0.1", proxy.port) as s:
        await s.send_all(PREFACE + b"".join(frames))
        goaway = await goaway_or_close(s)
    assert goaway is None or goaway.error_code != 0
    await still_serving(proxy.port)
    assert fake.fake is not None and fake.fake.requests == 1


async def test_invalid_headers_reset_only_that_stream(nursery: trio.Nursery) -> None:
    """Uppercase names, connection-specific headers, unknown pseudo-headers:
    each is a stream error (RST_STREAM PROTOCOL_ERROR), nothing is forwarded,
    and the connection goes on to serve a valid stream."""
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url)
    for bad in (
        [(b"X-Upper", b"1")],
        [(b"connection", b"keep-alive")],
        [(b":bogus", b"1")],
        [(b"te", b"gzip")],
    ):
        enc = hpack.Encoder()
        frames = b""
        for sid, extra in ((1, bad), (3, [])):
            f = HeadersFrame(sid)
            f.data = enc.encode(req_headers() + extra)
            f.flags.add("END_HEADERS")
            f.flags.add("END_STREAM")
            frames += f.serialize()
        reset, answered = None, False
        async with await trio.open_tcp_stream("127.0.0.1", proxy.port) as s:
            await s.send_all(PREFACE + SettingsFrame(0).serialize() + frames)
            buf = b""
            with trio.fail_after(10):
                while reset is None or not answered:
                    data = await s.receive_some(65536)
                    assert data, "connection closed: an invalid header must not end it"
                    buf += data
                    while len(buf) >= 9:
                        frame, length = Frame.parse_frame_header(memoryview(buf[:9]))
                        if len(buf) < 9 + length:
                            break
                        frame.parse_body(memoryview(buf[9 : 9 + length]))
                        buf = buf[9 + length :]
                        if isinstance(frame, RstStreamFrame) and frame.stream_id == 1:
                            reset = frame.error_code
                        if isinstance(frame, HeadersFrame) and frame.stream_id == 3:
                            answered = True
        assert reset == PROTOCOL_ERROR, bad
    assert fake.fake is not None and fake.fake.requests == 4  # only the valid stream 3, each time
    await still_serving(proxy.port)


@pytest.mark.parametrize("kind", ["ping", "settings"])
async def test_flood_from_a_client_that_does_not_read(nursery: trio.Nursery, kind: str) -> None:
    """PINGs and SETTINGS each owe an ACK. A client that floods them and never reads must not
    make the proxy queue ACKs without bound: the proxy stops reading while its
    writes are blocked, and closes the connection once its writer is stuck for
    the idle timeout. Meanwhile others are served."""
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, timeouts__client_body_idle=1.0)
    if kind == "ping":
        frame: PingFrame | SettingsFrame = PingFrame(0)
        frame.opaque_data = b"12345678"
    else:
        frame = SettingsFrame(0)  # every SETTINGS frame owes an ACK too
    burst = frame.serialize() * 4096  # one write of the flood
    owed_max = 0

    async def watch_owed_acks() -> None:
        """Largest h2 output queue of the proxy's HTTP/2 connections (h2's
        private buffer: read here only, to measure what the proxy holds)."""
        nonlocal owed_max
        while True:
            for conn in list(proxy.server.state.listening._drainables):
                owed_max = max(owed_max, len(conn.proto.conn._data_to_send))  # type: ignore[attr-defined]
            await trio.sleep(0.01)

    async with trio.open_nursery() as inner:
        inner.start_soon(watch_owed_acks)
        async with await trio.open_tcp_stream("127.0.0.1", proxy.port) as s:
            s.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 4096)  # and we never read
            await s.send_all(PREFACE + SettingsFrame(0).serialize())
            with trio.move_on_after(3), contextlib.suppress(trio.BrokenResourceError):
                while True:  # until the proxy stops reading (send blocks) or closes
                    await s.send_all(burst)
            await still_serving(proxy.port)
            # The stuck connection is closed (this raises if it is not within 10 s).
            await goaway_or_close(s, seconds=10)
        inner.cancel_scope.cancel()
    # Held back, the proxy owes at most about one read's worth of ACKs (a 256 KiB
    # read of PINGs is ~15,000 ACKs, 255 KB); unbounded it would grow by MBs/s.
    assert 0 < owed_max < 1024 * 1024, owed_max
    assert fake.fake is not None and fake.fake.requests == 1


async def test_zero_window_client_has_its_stream_reset(nursery: trio.Nursery) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, timeouts__client_body_idle=0.5)
    client = await H2Client.connect(nursery, proxy.port)
    client.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    await client.flush()
    sid = await client.start("GET", "/bytes/1000000")
    with trio.fail_after(5):
        await client.results[sid].done.wait()
    result = client.results[sid]
    assert result.reset is not None and not result.ended  # given up after the idle timeout
    assert fake.fake is not None
    with trio.fail_after(2):
        await fake.fake.wait_for(lambda f: f.cancelled >= 1)  # and the upstream request cancelled
    await still_serving(proxy.port)
    await client.aclose()


async def test_refused_then_reset_streams_leave_the_connection_alone(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that resets a stream as soon as the proxy refused it (here:
    a target without its leading /, answered 400) loses that stream only: no
    ERROR, no traceback, and a long stream on the same connection completes.
    Repeated 200 times, the reset sent when the refusal's head arrives."""
    caplog.set_level(logging.INFO)
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, limits__h2_max_resets_per_second=10_000)
    enc = hpack.Encoder()
    good = messages_frames(enc, 1, [(b"x-fake-fault", b"event-delay=0.2")])
    ended = trio.Event()
    refused: dict[int, trio.Event] = {}
    frames = Frames()

    async def read(s: trio.abc.Stream) -> None:
        while True:
            data = await s.receive_some(65536)
            assert data, "connection closed: resetting refused streams must not end it"
            for frame in frames.feed(data):
                if isinstance(frame, HeadersFrame) and frame.stream_id in refused:
                    refused[frame.stream_id].set()
                if frame.stream_id == 1 and "END_STREAM" in frame.flags:
                    ended.set()
                if isinstance(frame, RstStreamFrame) and frame.stream_id == 1:
                    raise AssertionError(f"the good stream was reset ({frame.error_code})")

    async with await trio.open_tcp_stream("127.0.0.1", proxy.port) as s:
        await s.send_all(PREFACE + SettingsFrame(0).serialize() + good)
        async with trio.open_nursery() as inner:
            inner.start_soon(read, s)
            for i in range(200):
                sid = 3 + 2 * i
                refused[sid] = trio.Event()
                bad = HeadersFrame(sid)
                bad.data = enc.encode(req_headers(b"v1/models"))  # no leading /: a 400
                bad.flags.add("END_HEADERS")
                bad.flags.add("END_STREAM")
                await s.send_all(bad.serialize())
                with trio.fail_after(10):
                    await refused[sid].wait()
                await s.send_all(RstStreamFrame(sid, error_code=0x8).serialize())
            assert not ended.is_set(), "the good stream must still be running: make it slower"
            with trio.fail_after(30):
                await ended.wait()
            inner.cancel_scope.cancel()
    assert not [f for f in frames.seen if isinstance(f, GoAwayFrame)]
    bad_lines = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad_lines, [(r.name, r.getMessage()) for r in bad_lines]
    await still_serving(proxy.port)


async def test_streams_in_flight_finish_after_the_clients_goaway(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that says GOAWAY while streams are in flight (h2load does at
    the end of a timed run) still gets those streams' answers, whole; no
    ERROR. Before, the GOAWAY reached h2, which then refused every frame of
    them: one traceback a stream."""
    caplog.set_level(logging.INFO)
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url)
    enc = hpack.Encoder()
    slow = [(b"x-fake-fault", b"event-delay=0.05")]
    requests = b"".join(messages_frames(enc, sid, slow) for sid in (1, 3, 5))
    ended: set[int] = set()
    bodies: dict[int, bytes] = {1: b"", 3: b"", 5: b""}
    frames = Frames()
    async with await trio.open_tcp_stream("127.0.0.1", proxy.port) as s:
        await s.send_all(PREFACE + SettingsFrame(0).serialize() + requests)
        await trio.sleep(0.1)  # the streams are under way
        await s.send_all(GoAwayFrame(0, last_stream_id=5, error_code=0).serialize())
        with trio.fail_after(10):
            while ended != {1, 3, 5}:
                got = await s.receive_some(65536)
                assert got, "closed before the streams it had accepted were answered"
                for frame in frames.feed(got):
                    assert not isinstance(frame, RstStreamFrame), frame
                    if isinstance(frame, DataFrame):
                        bodies[frame.stream_id] += frame.data
                    if frame.stream_id in bodies and "END_STREAM" in frame.flags:
                        ended.add(frame.stream_id)
    assert all(b"message_stop" in body for body in bodies.values())
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [(r.name, r.getMessage()) for r in bad]
