"""Graceful drain: in-flight requests finish, idle connections close, GOAWAY."""

from __future__ import annotations

import gc
import ssl
import warnings

import orjson
import pytest
import trio
import trio.testing
import trustme

from tests.helpers import H1Client, H2Client, h1_request, make_config, start_fake, start_proxy
from trioproxy.admin.endpoints import route
from trioproxy.proto.events import RequestHead
from trioproxy.server import Server
from trioproxy.state import ServerState

STREAM = orjson.dumps(
    {"model": "m", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "x"}]}
)


def test_health_says_draining() -> None:
    state = ServerState(make_config())
    head = RequestHead(b"GET", b"/health", [])
    assert route(head, state)[0].status == 200
    state.begin_drain()
    status, body = route(head, state)[0].status, route(head, state)[1]
    assert (status, orjson.loads(body)) == (503, {"status": "draining"})


async def test_drain_finishes_streams_and_closes_the_rest(nursery: trio.Nursery) -> None:
    fake = await start_fake(nursery)
    server = Server(make_config(upstream__url=fake.url))
    stopped = trio.Event()

    async def run(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        await server.serve(task_status=task_status)
        stopped.set()

    port = await nursery.start(run)
    idle = await H1Client.connect(port)
    assert (await idle.request("GET", "/health")).status == 200
    streaming = await H1Client.connect(port)
    await streaming.send_request(
        "POST", "/v1/messages", [("x-fake-fault", "event-delay=0.1")], STREAM
    )
    h2 = await H2Client.connect(nursery, port)
    sid = await h2.start("POST", "/v1/messages", [("x-fake-fault", "event-delay=0.1")], STREAM)
    assert fake.fake is not None
    with trio.fail_after(5):
        await fake.fake.wait_for(lambda f: f.requests >= 2)

    server.begin_drain()
    with trio.fail_after(2):
        assert await idle.stream.receive_some(100) == b""  # idle keep-alive closed at once
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", port)  # no longer accepting
    with trio.fail_after(10):
        resp = await streaming.read_response()
        await h2.results[sid].done.wait()
    assert resp.complete and resp.body.endswith(b'data: {"type":"message_stop"}\n\n')
    assert h2.results[sid].ended and bytes(h2.results[sid].body).endswith(
        b'{"type":"message_stop"}\n\n'
    )
    assert h2.goaway is not None and h2.goaway.last_stream_id >= sid and h2.goaway.error_code == 0
    with trio.fail_after(5):
        await stopped.wait()
    assert not server.forced
    for c in (idle, streaming, h2):
        await c.aclose()


async def test_drain_deadline_cancels_what_is_left(nursery: trio.Nursery) -> None:
    fake = await start_fake(nursery)
    server = Server(make_config(upstream__url=fake.url, timeouts__drain=0.5))
    stopped = trio.Event()

    async def run(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        await server.serve(task_status=task_status)
        stopped.set()

    port = await nursery.start(run)
    async with await H1Client.connect(port) as c:
        await c.send_request("POST", "/v1/messages", [("x-fake-fault", "stall=2")], STREAM)
        assert await c.receive_some()
        t0 = trio.current_time()
        server.begin_drain()
        with trio.fail_after(5):
            await stopped.wait()
        assert 0.4 < trio.current_time() - t0 < 3
        resp = await c.read_response()
        assert not resp.complete  # cut off at the deadline, visibly


JSON = orjson.dumps({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})


async def test_drain_grace_serves_while_health_says_503(nursery: trio.Nursery) -> None:
    """Phase one: /health is 503 at once on both listeners, and both still
    accept and serve (HTTP/1.1 answers say `connection: close`, HTTP/2
    connections get GOAWAY). Phase two, after the grace: connections are
    refused and what was in flight completes."""
    fake = await start_fake(nursery)
    server = Server(
        make_config(upstream__url=fake.url, timeouts__drain_grace=1.0, admin__listen="127.0.0.1:0")
    )
    stopped = trio.Event()

    async def run(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        await server.serve(task_status=task_status)
        stopped.set()

    port = await nursery.start(run)
    admin_port = server.admin_port
    assert admin_port is not None
    slow = [("x-fake-fault", "event-delay=0.2")]  # about 3 s of stream
    streaming = await H1Client.connect(port)
    await streaming.send_request("POST", "/v1/messages", slow, STREAM)
    h2 = await H2Client.connect(nursery, port)
    sid = await h2.start("POST", "/v1/messages", slow, STREAM)
    idle = await H1Client.connect(port)
    assert (await idle.request("GET", "/health")).status == 200
    assert fake.fake is not None
    with trio.fail_after(5):
        await fake.fake.wait_for(lambda f: f.requests >= 2)

    t0 = trio.current_time()
    server.begin_drain()
    for p in (port, admin_port):  # at once, on both listeners, on new connections
        health = await h1_request(p, "GET", "/health")
        assert (health.status, orjson.loads(health.body)) == (503, {"status": "draining"})
    served = await h1_request(port, "POST", "/v1/messages", [], JSON)
    assert served.status == 200 and served.header(b"connection") == b"close"
    # an idle keep-alive connection still gets its next request answered, then closes
    again = await idle.request("GET", "/v1/models")
    assert again.status == 200 and again.header(b"connection") == b"close"
    with trio.fail_after(2):
        await h2.goaway_seen.wait()  # the open HTTP/2 connection was told at once
    fresh = await H2Client.connect(nursery, port)  # a new one: served, then told
    r = await fresh.request("GET", "/v1/models")
    assert r.status == 200 and r.ended
    with trio.fail_after(2):
        await fresh.goaway_seen.wait()
    assert trio.current_time() - t0 < 1.0  # all of that within the grace

    with trio.fail_after(3):
        while True:  # phase two: refused on both listeners
            try:
                s = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                break
            await s.aclose()
            await trio.sleep(0.05)
    assert trio.current_time() - t0 >= 1.0
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", admin_port)
    with trio.fail_after(10):
        resp = await streaming.read_response()
        await h2.results[sid].done.wait()
    assert resp.complete and resp.body.endswith(b'data: {"type":"message_stop"}\n\n')
    assert h2.results[sid].ended
    with trio.fail_after(5):
        await stopped.wait()
    for c in (idle, streaming, h2, fresh):
        await c.aclose()


@pytest.mark.parametrize("tls", [False, True], ids=["cleartext", "tls"])
async def test_a_silent_connection_is_closed_when_the_server_stops(tls: bool) -> None:
    """A client that connected and said nothing yet (a browser's preconnect)
    is closed by the server as it stops, not left to the garbage collector:
    its socket is owned by no transport yet."""
    ssl_ctx = None
    if tls:
        ca = trustme.CA()
        ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(ssl_ctx)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with trio.open_nursery() as outer:
            proxy = await start_proxy(outer, "http://127.0.0.1:9", ssl_context=ssl_ctx)
            client = await trio.open_tcp_stream("127.0.0.1", proxy.port)
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)  # accepted, waiting
            outer.cancel_scope.cancel()
        gc.collect()
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert unclosed == []
    with trio.fail_after(5):
        assert await client.receive_some(100) == b""  # the server's end is closed
    await client.aclose()
