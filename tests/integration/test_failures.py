"""Timeouts, upstream failures and client cancellation, over loopback."""

from __future__ import annotations

import socket

import orjson
import pytest
import trio
import trio.testing

from tests.helpers import H1Client, H2Client, h1_request, start_fake, start_proxy
from trioproxy.proto.sse import SSEParser

STREAM = orjson.dumps(
    {"model": "m", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "x"}]}
)
JSON = orjson.dumps({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})


def error_type(body: bytes) -> str:
    doc = orjson.loads(body)
    assert doc["type"] == "error" and isinstance(doc["error"]["message"], str)
    return str(doc["error"]["type"])


def sse_events(body: bytes) -> list[tuple[bytes, bytes]]:
    return [(e.event, e.data) for e in SSEParser().feed(body)]


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_upstream_unreachable_is_502(nursery: trio.Nursery) -> None:
    proxy = await start_proxy(nursery, f"http://127.0.0.1:{unused_port()}")
    r = await h1_request(proxy.port, "POST", "/v1/messages", [], JSON)
    assert r.status == 502 and error_type(r.body) == "api_error"
    message = orjson.loads(r.body)["error"]["message"]
    assert "the upstream cannot be reached" in message and "127.0.0.1" not in message
    assert r.header(b"x-trioproxy-error") == b"1"


async def test_slow_headers_is_504(nursery: trio.Nursery, upstream_opts: dict[str, object]) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, timeouts__response_headers=0.3, **upstream_opts)
    r = await h1_request(
        proxy.port, "POST", "/v1/messages", [("x-fake-fault", "slow-headers=5")], JSON
    )
    assert r.status == 504 and error_type(r.body) == "timeout_error"


async def test_stalled_stream_is_cut(
    nursery: trio.Nursery, upstream_opts: dict[str, object]
) -> None:
    """The proxy's own body idle timeout ends the client's stream the way an
    upstream cut would: no final chunk, no made-up event."""
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, timeouts__upstream_body_idle=0.3, **upstream_opts)
    r = await h1_request(proxy.port, "POST", "/v1/messages", [("x-fake-fault", "stall=2")], STREAM)
    assert r.status == 200 and not r.complete  # closed without the final chunk
    names = [e for e, _ in sse_events(r.body)]
    assert names == [b"message_start", b"content_block_start"]


async def test_dropped_stream_is_cut_the_same_way(
    nursery: trio.Nursery, upstream_opts: dict[str, object]
) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, **upstream_opts)
    cut = [("x-fake-fault", "drop-mid-stream=3")]
    r = await h1_request(proxy.port, "POST", "/v1/messages", cut, STREAM)
    direct = await h1_request(fake.port, "POST", "/v1/messages", cut, STREAM)
    assert r.status == direct.status == 200
    assert not r.complete and not direct.complete  # both truncated
    assert r.body == direct.body  # every byte the upstream sent, and nothing more
    assert [e for e, _ in sse_events(r.body)] == [b"message_start", b"content_block_start", b"ping"]


async def test_dropped_stream_resets_the_http2_stream(
    nursery: trio.Nursery, upstream_opts: dict[str, object]
) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, **upstream_opts)
    client = await H2Client.connect(nursery, proxy.port)
    r = await client.request(
        "POST", "/v1/messages", [("x-fake-fault", "drop-mid-stream=3")], STREAM
    )
    await client.aclose()
    assert r.status == 200 and not r.ended and r.reset == 2  # RST_STREAM INTERNAL_ERROR
    assert [e for e, _ in sse_events(bytes(r.body))] == [
        b"message_start",
        b"content_block_start",
        b"ping",
    ]


@pytest.mark.parametrize("fault", ["stall=2", "drop-mid-stream=2"])
async def test_error_event_mode_ends_a_broken_stream_with_an_event(
    nursery: trio.Nursery, fault: str
) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(
        nursery, fake.url, stream_failure="error_event", timeouts__upstream_body_idle=0.3
    )
    r = await h1_request(proxy.port, "POST", "/v1/messages", [("x-fake-fault", fault)], STREAM)
    assert r.status == 200 and r.complete  # ended cleanly, with the final chunk
    events = sse_events(r.body)
    assert [e for e, _ in events[:2]] == [b"message_start", b"content_block_start"]
    assert events[-1][0] == b"error"
    error = orjson.loads(events[-1][1])["error"]
    assert error["type"] == "api_error" and "127.0.0.1" not in error["message"]


async def test_upstream_error_event_passes_through(nursery: trio.Nursery) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url)
    r = await h1_request(
        proxy.port, "POST", "/v1/messages", [("x-fake-fault", "error-mid-stream=2")], STREAM
    )
    direct = await h1_request(
        fake.port, "POST", "/v1/messages", [("x-fake-fault", "error-mid-stream=2")], STREAM
    )
    assert r.body == direct.body  # byte for byte, the upstream's own error event
    assert orjson.loads(sse_events(r.body)[-1][1])["error"]["type"] == "overloaded_error"


async def test_broken_json_body_is_truncated_not_completed(
    nursery: trio.Nursery, upstream_opts: dict[str, object]
) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, **upstream_opts)
    r = await h1_request(
        proxy.port, "POST", "/v1/messages", [("x-fake-fault", "drop-mid-stream")], JSON
    )
    assert r.status == 200
    assert not r.complete  # the client sees a truncation, never a body that looks complete
    declared = int(r.header(b"content-length") or 0)
    assert 0 < len(r.body) < declared


async def test_client_head_timeout_is_408(nursery: trio.Nursery) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, timeouts__client_head=0.3)
    async with await H1Client.connect(proxy.port) as c:
        await c.stream.send_all(b"POST /v1/messages HTTP/1.1\r\nhost: x\r\n")  # never finished
        with trio.fail_after(5):
            [r] = await c.read_pipelined(["POST"])
    assert r.status == 408 and error_type(r.body) == "timeout_error"
    assert fake.fake is not None and fake.fake.requests == 0


@pytest.mark.parametrize("declared", [100, 1_000_000], ids=["inline-body", "streamed-body"])
async def test_client_body_idle_is_408(
    nursery: trio.Nursery, upstream_opts: dict[str, object], declared: int
) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, timeouts__client_body_idle=0.3, **upstream_opts)
    async with await H1Client.connect(proxy.port) as c:
        await c.stream.send_all(
            b"POST /echo/x HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n0123456789" % declared
        )
        with trio.fail_after(5):
            [r] = await c.read_pipelined(["POST"])
    assert r.status == 408 and error_type(r.body) == "timeout_error"
    assert fake.fake is not None
    await trio.testing.wait_all_tasks_blocked()
    # The first bytes went upstream; the upstream request was then cancelled,
    # not left waiting for a body that will never come.
    assert fake.fake.requests == fake.fake.cancelled == 1


async def test_idle_keepalive_closes_quietly(nursery: trio.Nursery) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, timeouts__keepalive_idle=0.3)
    async with await H1Client.connect(proxy.port) as c:
        assert (await c.request("GET", "/health")).status == 200
        with trio.fail_after(3):
            assert await c.stream.receive_some(100) == b""  # closed, no 408 sent


async def test_client_disconnect_cancels_upstream(
    nursery: trio.Nursery, upstream_opts: dict[str, object]
) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, **upstream_opts)
    assert fake.fake is not None
    async with await H1Client.connect(proxy.port) as c:
        await c.send_request("POST", "/v1/messages", [("x-fake-fault", "event-delay=0.5")], STREAM)
        assert await c.stream.receive_some(65536)  # the stream started
    with trio.fail_after(1):  # the upstream saw the cancellation within 1 s
        await fake.fake.wait_for(lambda f: f.cancelled >= 1)
    await trio.testing.wait_all_tasks_blocked()
    assert proxy.server.state.in_flight == 0
    pool = proxy.server.pool
    assert pool is not None
    assert pool.state.active == 0 and all(c.leased == 0 for c in pool.state.h2), repr(pool)


async def test_stale_keepalive_connection_is_retried_once(nursery: trio.Nursery) -> None:
    """An upstream that closes a kept-alive connection right after reading the
    next request (the classic keep-alive race): the proxy retries once on a
    fresh connection and the client never notices."""
    served: list[str] = []

    async def upstream(stream: trio.SocketStream) -> None:
        buf = b""
        first_on_conn = True
        async with stream:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buf += data
                _head, _, buf = buf.partition(b"\r\n\r\n")
                served.append("answered" if first_on_conn else "dropped")
                if not first_on_conn:
                    return  # close without a byte of response
                first_on_conn = False
                await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    listeners = await nursery.start(trio.serve_tcp, upstream, 0)
    port = listeners[0].socket.getsockname()[1]
    proxy = await start_proxy(nursery, f"http://127.0.0.1:{port}")
    first = await h1_request(proxy.port, "GET", "/x")
    second = await h1_request(proxy.port, "GET", "/x")
    assert (first.status, first.body, second.status, second.body) == (200, b"ok", 200, b"ok")
    assert served == ["answered", "dropped", "answered"]


async def test_connect_timeout_is_502(nursery: trio.Nursery) -> None:
    """A listener whose accept queue is full drops SYNs, so connecting hangs:
    the proxy gives up after timeouts.connect with a 502 that says so."""
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    port = full.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # fill the (tiny) accept queue; later SYNs are dropped
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        proxy = await start_proxy(nursery, f"http://127.0.0.1:{port}", timeouts__connect=0.5)
        t0 = trio.current_time()
        r = await h1_request(proxy.port, "GET", "/api/hello")
        assert r.status == 502 and error_type(r.body) == "api_error"
        assert "within 0.5 s" in orjson.loads(r.body)["error"]["message"]
        assert 0.4 < trio.current_time() - t0 < 5
    finally:
        for s in fillers:
            s.close()
        full.close()
