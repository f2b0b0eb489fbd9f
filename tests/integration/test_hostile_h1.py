"""Hostile HTTP/1.1 input over real sockets: each case gets a clear 4xx or a
closed connection, nothing reaches the upstream, and a well-behaved client on
another connection is served meanwhile."""

from __future__ import annotations

import contextlib

import orjson
import pytest
import trio

from tests.helpers import H1Client, h1_request, start_fake, start_proxy

H = b"POST /v1/messages HTTP/1.1\r\nhost: x\r\n"
CASES: list[tuple[str, bytes, int | None]] = [
    ("cl-and-te", H + b"content-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("two-lengths", H + b"content-length: 1\r\ncontent-length: 2\r\n\r\nab", 400),
    ("bad-length", H + b"content-length: 12a\r\n\r\n", 400),
    ("negative-length", H + b"content-length: -5\r\n\r\n", 400),
    ("te-not-chunked", H + b"transfer-encoding: gzip\r\n\r\n", 400),
    ("te-chunked-not-last", H + b"transfer-encoding: chunked, gzip\r\n\r\n", 400),
    ("obs-fold", H + b"x-a: 1\r\n  folded\r\ncontent-length: 0\r\n\r\n", 400),
    ("nul-in-value", H + b"x-a: a\x00b\r\ncontent-length: 0\r\n\r\n", 400),
    ("bare-cr-in-value", H + b"x-a: a\rb\r\ncontent-length: 0\r\n\r\n", 400),
    ("space-in-name", H + b"x a: b\r\ncontent-length: 0\r\n\r\n", 400),
    ("head-too-large", H + b"x-big: " + b"a" * (70 * 1024) + b"\r\n\r\n", 431),
    ("too-many-headers", H + b"".join(b"x-%d: v\r\n" % i for i in range(120)) + b"\r\n", 431),
    ("bad-chunk-size", H + b"transfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400),
    ("garbage-request-line", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", 400),
    ("no-host", b"POST /v1/messages HTTP/1.1\r\ncontent-length: 0\r\n\r\n", 400),
]


async def read_answer(c: H1Client) -> tuple[int | None, bytes]:
    """The status of the answer, or None when the proxy just closed."""
    data = bytearray()
    with trio.fail_after(10):
        while True:
            try:
                chunk = await c.stream.receive_some(65536)
            except trio.BrokenResourceError:
                chunk = b""
            if not chunk:
                break
            data += chunk
    if not data:
        return None, b""
    status = int(bytes(data).split(b" ", 2)[1])
    return status, bytes(data).partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize(("name", "raw", "expected"), CASES, ids=[c[0] for c in CASES])
async def test_hostile_request(
    nursery: trio.Nursery, name: str, raw: bytes, expected: int | None
) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url)
    assert fake.fake is not None
    async with await H1Client.connect(proxy.port) as bad:
        await bad.stream.send_all(raw)
        good = await h1_request(proxy.port, "GET", "/api/hello")  # served meanwhile
        status, body = await read_answer(bad)  # and the proxy closes the bad connection
    assert good.status == 200
    assert status == expected, (name, status, body[:200])
    if status is not None and status != 431:
        assert orjson.loads(body)["type"] == "error"
    assert fake.fake.requests == 1  # only the good request reached the upstream


async def test_garbage_after_a_request(nursery: trio.Nursery) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url)
    async with await H1Client.connect(proxy.port) as c:
        await c.stream.send_all(
            b"GET /api/hello HTTP/1.1\r\nhost: x\r\n\r\n\x00\x01garbage\r\n\r\n"
        )
        first, second = await c.read_pipelined(["GET", "GET"])
    assert first.status == 200  # the real request is answered
    assert second.status == 400  # the garbage is refused, then the connection closes
    assert fake.fake is not None and fake.fake.requests == 1


async def test_slowloris_and_stalled_body(nursery: trio.Nursery) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(
        nursery, fake.url, timeouts__client_head=0.5, timeouts__client_body_idle=0.5
    )
    async with await H1Client.connect(proxy.port) as slow:
        for piece in (
            b"POST /v1/mess",
            b"ages HTTP/1.1\r\n",
            b"host: x\r\n",
        ):  # dribbles, never finishes
            await slow.stream.send_all(piece)
            await trio.sleep(0.1)
        good = await h1_request(proxy.port, "GET", "/api/hello")
        status, _ = await read_answer(slow)
    assert (good.status, status) == (200, 408)
    assert fake.fake is not None and fake.fake.requests == 1


async def test_ten_thousand_pipelined_requests(nursery: trio.Nursery) -> None:
    """Answered in order, one at a time: the proxy reads ahead at most a bounded
    amount (PIPELINE_BUFFER) instead of queueing 10,000 requests in memory."""
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url)
    n = 10_000
    raw = b"".join(b"GET /health?n=%d HTTP/1.1\r\nhost: x\r\n\r\n" % i for i in range(n))
    async with await H1Client.connect(proxy.port) as c:
        async with trio.open_nursery() as inner:
            inner.start_soon(c.stream.send_all, raw)
            count = 0
            buf = b""
            with trio.fail_after(60):
                while count < n:
                    buf += await c.stream.receive_some(1 << 20)
                    count = buf.count(b"HTTP/1.1 200 ")
        assert count == n
        assert buf.count(b'{"status":"ok"}') == n


async def test_mutated_requests_get_an_answer_or_a_close(nursery: trio.Nursery) -> None:
    """A seeded mutation fuzzer at the socket: every reply is well-formed HTTP
    (or the connection closes), the proxy never answers with its own 5xx, and
    it keeps serving."""
    import random

    fake = await start_fake(nursery)
    proxy = await start_proxy(
        nursery, fake.url, timeouts__client_head=1.0, timeouts__client_body_idle=1.0
    )
    rng = random.Random(20261122)
    valid = (
        b"POST /api/hello?beta=true HTTP/1.1\r\nhost: x\r\nx-a: 1\r\ncontent-length: 5\r\n\r\nhello"
    )
    for _ in range(60):
        data = bytearray(valid)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        async with await H1Client.connect(proxy.port) as c:
            await c.stream.send_all(bytes(data))
            with contextlib.suppress(trio.BrokenResourceError):
                await c.stream.send_eof()
            status, _body = await read_answer(c)
        if status is not None:
            assert 100 <= status < 600
            # no 5xx of the proxy's own making, but 505 for a version it does not speak
            assert not (status >= 500 and status not in (502, 505)), (bytes(data), status)
    await h1_request(proxy.port, "GET", "/api/hello")
    assert (await h1_request(proxy.port, "GET", "/health")).status == 200
