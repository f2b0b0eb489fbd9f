"""Targets that are not origin-form, versions the proxy does not speak,
control bytes in header values, malformed methods, and clients that vanish
mid-way: over HTTP/1.1 and HTTP/2, each gets its status (or the reset the
RFC asks for), nothing reaches the upstream, and nothing is logged at ERROR."""

from __future__ import annotations

import contextlib
import logging

import hpack
import orjson
import pytest
import trio
from hyperframe.frame import (
    DataFrame,
    Frame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

from tests.helpers import H1Client, Running, h1_request, start_fake, start_proxy

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PROTOCOL_ERROR = 0x1
H1_CASES: list[tuple[str, bytes, int]] = [
    ("absolute-form", b"GET http://evil.example/api/hello HTTP/1.1\r\nhost: x\r\n\r\n", 400),
    ("asterisk-form", b"OPTIONS * HTTP/1.1\r\nhost: x\r\n\r\n", 400),
    ("no-leading-slash", b"GET v1/models HTTP/1.1\r\nhost: x\r\n\r\n", 400),
    ("fragment", b"GET /api/hello#top HTTP/1.1\r\nhost: x\r\n\r\n", 400),
    ("version-2.0", b"GET /api/hello HTTP/2.0\r\nhost: x\r\n\r\n", 505),
    ("version-0.9", b"GET /api/hello HTTP/0.9\r\nhost: x\r\n\r\n", 505),
    ("ctl-0x01", b"GET /api/hello HTTP/1.1\r\nhost: x\r\nx-a: a\x01b\r\n\r\n", 400),
    ("ctl-0x7f", b"GET /api/hello HTTP/1.1\r\nhost: x\r\nx-a: a\x7fb\r\n\r\n", 400),
    ("ctl-in-post", b"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-b: \x1b[31m\r\n\r\n", 400),
]
H2_CASES: list[tuple[str, list[tuple[bytes, bytes]], int | None]] = [
    ("asterisk-path", [(b":method", b"OPTIONS"), (b":path", b"*")], 400),
    ("no-leading-slash", [(b":method", b"GET"), (b":path", b"v1/models")], 400),
    ("fragment", [(b":method", b"GET"), (b":path", b"/api/hello#top")], 400),
    ("absolute-path", [(b":method", b"GET"), (b":path", b"http://evil.example/x")], 400),
    ("ctl-0x01", [(b":method", b"GET"), (b":path", b"/api/hello"), (b"x-a", b"a\x01b")], 400),
    ("method-not-a-token", [(b":method", b"GET /x"), (b":path", b"/api/hello")], None),
    ("method-empty", [(b":method", b""), (b":path", b"/api/hello")], None),
]


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not bad, [(r.name, r.getMessage(), r.exc_text) for r in bad]


async def start(nursery: trio.Nursery) -> tuple[Running, Running]:
    fake = await start_fake(nursery)
    return fake, await start_proxy(nursery, fake.url)


async def read_all(s: trio.abc.Stream) -> bytes:
    data = bytearray()
    with trio.fail_after(10):
        while True:
            try:
                chunk = await s.receive_some(65536)
            except trio.BrokenResourceError:
                break
            if not chunk:
                break
            data += chunk
    return bytes(data)


@pytest.mark.parametrize(("name", "raw", "expected"), H1_CASES, ids=[c[0] for c in H1_CASES])
async def test_h1_target_version_and_header_rules(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, name: str, raw: bytes, expected: int
) -> None:
    caplog.set_level(logging.DEBUG)
    fake, proxy = await start(nursery)
    async with await trio.open_tcp_stream("127.0.0.1", proxy.port) as s:
        await s.send_all(raw)
        answer = await read_all(s)  # answered, then closed
    status = int(answer.split(b" ", 2)[1])
    assert status == expected, (name, answer[:300])
    body = orjson.loads(answer.partition(b"\r\n\r\n")[2])
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert b"evil.example" not in answer and b"\x01" not in answer
    assert fake.fake is not None and fake.fake.requests == 0  # nothing went upstream
    assert (await h1_request(proxy.port, "GET", "/api/hello")).status == 200
    no_errors_logged(caplog)


async def test_h1_higher_minor_version_is_served(nursery: trio.Nursery) -> None:
    """RFC 9110 2.5: ``GET / HTTP/1.2`` is served as HTTP/1.1 (keep-alive too)."""
    fake, proxy = await start(nursery)
    async with await trio.open_tcp_stream("127.0.0.1", proxy.port) as s:
        await s.send_all(b"GET /api/hello HTTP/1.2\r\nhost: x\r\n\r\n")
        data = b""
        with trio.fail_after(10):
            while b"\r\n\r\n" not in data:
                data += await s.receive_some(65536)
    assert data.startswith(b"HTTP/1.1 200 "), data[:200]
    assert fake.fake is not None and fake.fake.requests == 1


def h2_frames(sid: int, headers: list[tuple[bytes, bytes]], enc: hpack.Encoder) -> bytes:
    f = HeadersFrame(sid)
    f.data = enc.encode([*headers, (b":scheme", b"http"), (b":authority", b"x")])
    f.flags.add("END_HEADERS")
    f.flags.add("END_STREAM")
    return f.serialize()


async def h2_outcome(
    s: trio.abc.Stream, sid: int, dec: hpack.Decoder
) -> tuple[int | None, int | None, bytes]:
    """(status, RST_STREAM error code, body) of stream ``sid``; ``dec`` is
    the connection's HPACK decoder (its table lives as long as the connection).
    Frames are read one at a time, so none of a later stream is lost."""
    buf, status, reset, body = b"", None, None, b""
    with trio.fail_after(10):
        while True:
            data = await s.receive_some(1)
            assert data, "connection closed: a bad stream must not end it"
            buf += data
            while len(buf) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(buf[:9]))
                if len(buf) < 9 + length:
                    break
                frame.parse_body(memoryview(buf[9 : 9 + length]))
                buf = buf[9 + length :]
                if frame.stream_id != sid:
                    continue
                if isinstance(frame, RstStreamFrame):
                    return status, frame.error_code, body
                if isinstance(frame, HeadersFrame):
                    status = int(dict(dec.decode(frame.data, raw=True))[b":status"])
                if isinstance(frame, DataFrame):
                    body += frame.data
                if "END_STREAM" in frame.flags:
                    return status, reset, body


@pytest.mark.parametrize(("name", "headers", "expected"), H2_CASES, ids=[c[0] for c in H2_CASES])
async def test_h2_target_method_and_header_rules(
    nursery: trio.Nursery,
    caplog: pytest.LogCaptureFixture,
    name: str,
    headers: list[tuple[bytes, bytes]],
    expected: int | None,
) -> None:
    """A bad target or header value: 400 on that stream. A method that is not
    a token: RST_STREAM PROTOCOL_ERROR. Either way the connection lives on
    and serves a good stream right after."""
    caplog.set_level(logging.DEBUG)
    fake, proxy = await start(nursery)
    enc, dec = hpack.Encoder(), hpack.Decoder()
    good = [(b":method", b"GET"), (b":path", b"/api/hello")]
    async with await trio.open_tcp_stream("127.0.0.1", proxy.port) as s:
        await s.send_all(PREFACE + SettingsFrame(0).serialize() + h2_frames(1, headers, enc))
        status, reset, body = await h2_outcome(s, 1, dec)
        if expected is None:
            assert reset == PROTOCOL_ERROR and status is None, (name, status, reset)
        else:
            assert status == expected and reset is None, (name, status, reset)
            assert orjson.loads(body)["error"]["type"] == "invalid_request_error"
        await s.send_all(h2_frames(3, good, enc))
        status, reset, _ = await h2_outcome(s, 3, dec)
        assert status == 200
    assert fake.fake is not None and fake.fake.requests == 1  # only the good stream
    no_errors_logged(caplog)


@pytest.mark.parametrize("kind", ["ping", "settings"])
async def test_flood_then_disconnect_logs_no_error(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    caplog.set_level(logging.DEBUG)
    _, proxy = await start(nursery)
    frame: PingFrame | SettingsFrame
    if kind == "ping":
        frame = PingFrame(0)
        frame.opaque_data = b"12345678"
    else:
        frame = SettingsFrame(0)
    for _ in range(5):
        s = await trio.open_tcp_stream("127.0.0.1", proxy.port)
        s.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 4096)  # and never read
        with contextlib.suppress(trio.BrokenResourceError), trio.move_on_after(0.5):
            await s.send_all(PREFACE + frame.serialize() * 20000)
        s.socket.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        await s.aclose()  # gone with an RST while the proxy still owes ACKs
    await trio.sleep(0.5)
    assert (await h1_request(proxy.port, "GET", "/api/hello")).status == 200
    no_errors_logged(caplog)


@pytest.mark.parametrize("protocol", ["h1", "h2"])
async def test_client_gone_mid_write_logs_no_error(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, protocol: str
) -> None:
    """A client that disconnects while a large response is being written."""
    caplog.set_level(logging.DEBUG)
    fake, proxy = await start(nursery)
    assert fake.fake is not None
    for i in range(3):
        if protocol == "h1":
            c = await H1Client.connect(proxy.port)
            await c.send_request("GET", "/bytes/50000000")
            assert await c.stream.receive_some(65536)
            c.stream.socket.setsockopt(
                trio.socket.SOL_SOCKET, trio.socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0"
            )
            await c.aclose()
        else:
            async with await trio.open_tcp_stream("127.0.0.1", proxy.port) as s:
                enc = hpack.Encoder()
                await s.send_all(
                    PREFACE
                    + SettingsFrame(0).serialize()
                    + h2_frames(1, [(b":method", b"GET"), (b":path", b"/bytes/50000000")], enc)
                )
                with trio.fail_after(5):  # the response is being written
                    await fake.fake.wait_for(lambda f, n=i: f.requests > n and f.bytes_sent > 0)
                    assert await s.receive_some(65536)
                s.socket.setsockopt(
                    trio.socket.SOL_SOCKET, trio.socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0"
                )
    with trio.fail_after(5):
        await fake.fake.wait_for(lambda f: f.cancelled >= 3)
    await trio.sleep(0.2)
    assert (await h1_request(proxy.port, "GET", "/api/hello")).status == 200
    no_errors_logged(caplog)
