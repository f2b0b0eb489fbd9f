"""TLS (trustme) inbound with ALPN and upstream with verification; HTTP/2 inbound."""

from __future__ import annotations

import ssl
import sys
from pathlib import Path

import orjson
import pytest
import trio
import trustme

from tests.helpers import (
    H1Client,
    H2Client,
    H2Result,
    Running,
    h1_request,
    make_config,
    start_fake,
    start_proxy,
)
from trioproxy.server import Server

STREAM = orjson.dumps(
    {"model": "m", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "x"}]}
)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, alpn: list[str]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    ctx.set_alpn_protocols(alpn)
    return ctx


def client_context(ca: trustme.CA, alpn: list[str]) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    ctx.set_alpn_protocols(alpn)
    return ctx


@pytest.mark.parametrize("http2", [True, False], ids=["alpn-h2", "alpn-h1"])
async def test_tls_upstream_verified_with_ca_bundle(
    nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path, http2: bool
) -> None:
    fake = await start_fake(nursery, ssl_context=server_context(ca, ["h2", "http/1.1"]))
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    proxy = await start_proxy(
        nursery,
        f"https://127.0.0.1:{fake.port}",
        upstream__ca_bundle=str(bundle),
        upstream__http2=http2,
    )
    r = await h1_request(proxy.port, "POST", "/echo/tls", [], b"secret body")
    assert r.status == 200 and r.body == b"secret body"
    assert r.header(b"x-echo-protocol") == (b"h2" if http2 else b"h1")


async def test_tls_upstream_verification_failure_is_502(
    nursery: trio.Nursery, ca: trustme.CA
) -> None:
    fake = await start_fake(nursery, ssl_context=server_context(ca, ["h2", "http/1.1"]))
    proxy = await start_proxy(
        nursery, f"https://127.0.0.1:{fake.port}"
    )  # system store: does not know our CA
    r = await h1_request(proxy.port, "GET", "/api/hello")
    assert r.status == 502
    doc = orjson.loads(r.body)
    assert doc["error"]["type"] == "api_error"
    assert "certificate verification failed" in doc["error"]["message"]
    assert "127.0.0.1" not in doc["error"]["message"]  # the address is for the log only
    assert fake.fake is not None and fake.fake.requests == 0  # never downgraded


async def test_tls_inbound_with_alpn(nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path) -> None:
    fake = await start_fake(nursery)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    leaf.private_key_pem.write_to_path(str(key))
    with cert.open("wb") as fh:
        for pem in leaf.cert_chain_pems:
            fh.write(pem.bytes())
    proxy = await start_proxy(nursery, fake.url, tls__cert=str(cert), tls__key=str(key))
    async with await H1Client.connect(proxy.port, client_context(ca, ["http/1.1"])) as c:
        assert (
            isinstance(c.stream, trio.SSLStream) and c.stream.selected_alpn_protocol() == "http/1.1"
        )
        r = await c.request("POST", "/echo/over-tls", [], b"abc")
        assert (r.status, r.body) == (200, b"abc")
    h2c = await H2Client.connect(nursery, proxy.port, client_context(ca, ["h2", "http/1.1"]))
    res = await h2c.request("POST", "/echo/over-h2-tls", [("x-a", "1")], b"xyz")
    assert (res.status, bytes(res.body)) == (200, b"xyz")
    await h2c.aclose()


async def test_h2_many_concurrent_streams(
    nursery: trio.Nursery, upstream_opts: dict[str, object]
) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, **upstream_opts)
    client = await H2Client.connect(nursery, proxy.port)
    n = 60
    sids = [
        await client.start(
            "POST", "/v1/messages?beta=true", [("x-fake-fault", "event-delay=0.02")], STREAM
        )
        for _ in range(n)
    ]
    with trio.fail_after(20):
        for sid in sids:
            await client.results[sid].done.wait()
    bodies = [bytes(client.results[s].body) for s in sids]
    assert all(client.results[s].status == 200 and client.results[s].ended for s in sids)
    assert all(
        b.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n') for b in bodies
    )
    assert len(set(bodies)) == 1  # same request, same deterministic answer on every stream
    assert fake.fake is not None and fake.fake.requests == n
    await client.aclose()


async def test_h2_large_upload_and_stream_reset_cancels_upstream(
    nursery: trio.Nursery, upstream_opts: dict[str, object]
) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, **upstream_opts)
    client = await H2Client.connect(nursery, proxy.port)
    big = bytes(range(256)) * 8000  # 2 MB: many window updates, acknowledged as forwarded
    res = await client.request("POST", "/echo/upload", [], big)
    assert res.status == 200 and bytes(res.body) == big
    sid = await client.start("POST", "/v1/messages", [("x-fake-fault", "event-delay=0.5")], STREAM)
    assert fake.fake is not None
    with trio.fail_after(5):
        await fake.fake.wait_for(lambda f: f.requests >= 2)
    await client.reset(sid)
    with trio.fail_after(1):
        await fake.fake.wait_for(lambda f: f.cancelled >= 1)
    await client.aclose()


async def test_slow_client_pushes_back_on_upstream(
    nursery: trio.Nursery, upstream_opts: dict[str, object]
) -> None:
    """A client that stops reading: the upstream is held back (by TCP and HTTP/2
    windows) instead of the proxy buffering the response."""
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, **upstream_opts)
    assert fake.fake is not None
    total = 160 * 1024 * 1024
    async with await H1Client.connect(proxy.port) as c:
        await c.send_request("GET", f"/bytes/{total}")
        await c.stream.receive_some(65536)
        await trio.sleep(1.0)  # observe for a while that the upstream cannot run ahead
        held = fake.fake.bytes_sent
        assert held < 40 * 1024 * 1024, held
        received = 0
        while True:
            data = await c.stream.receive_some(1024 * 1024)
            if not data:
                break
            received += len(data)
            if fake.fake.bytes_sent >= total and received > total - 1024 * 1024:
                break
    assert fake.fake.bytes_sent == total


async def test_h2_upstream_opens_connections_at_the_stream_limit(nursery: trio.Nursery) -> None:
    """The upstream allows 5 concurrent streams per connection: 20 concurrent
    requests must spread over at least 4 connections, none of them queued."""
    fake = await start_fake(nursery, limits__h2_max_concurrent_streams=5)
    proxy = await start_proxy(nursery, fake.url, upstream__h2_prior_knowledge=True)
    client = await H2Client.connect(nursery, proxy.port)
    sids = [
        await client.start("POST", "/v1/messages", [("x-fake-fault", "event-delay=0.3")], STREAM)
        for _ in range(20)
    ]
    assert fake.fake is not None
    with trio.fail_after(3):  # all 20 reached the upstream at once, none waited for another
        await fake.fake.wait_for(lambda f: f.requests >= 20)
    pool = proxy.server.pool
    assert pool is not None
    assert len(pool.state.h2) >= 4, repr(pool)
    assert all(c.leased <= c.max_streams == 5 for c in pool.state.h2), repr(pool)
    with trio.fail_after(20):
        for sid in sids:
            await client.results[sid].done.wait()
    assert all(client.results[s].status == 200 and client.results[s].ended for s in sids)
    await client.aclose()


async def test_h2_upload_to_a_stalled_upstream_is_held_back(nursery: trio.Nursery) -> None:
    """The upstream accepts and never reads. Credit goes back to the HTTP/2
    client only for bytes forwarded, so the client stalls after about one
    stream window plus socket buffers, instead of the proxy buffering 40 MB."""
    accepted = trio.Event()

    async def never_read(stream: trio.SocketStream) -> None:
        async with stream:
            accepted.set()
            await trio.sleep_forever()

    listeners = await nursery.start(trio.serve_tcp, never_read, 0)
    port = listeners[0].socket.getsockname()[1]
    proxy = await start_proxy(nursery, f"http://127.0.0.1:{port}")
    client = await H2Client.connect(nursery, proxy.port)
    total = 30 * 1024 * 1024  # under the 32 MiB body limit
    sent = 0

    async def upload() -> None:
        nonlocal sent
        sid = client.conn.get_next_available_stream_id()
        client.results[sid] = H2Result()
        hdrs = [
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", "x"),
            (":path", "/upload"),
            ("content-length", str(total)),
        ]
        client.conn.send_headers(sid, [(k.encode(), v.encode()) for k, v in hdrs])
        await client.flush()
        chunk = bytes(16384)
        while sent < total:
            n = min(client.conn.local_flow_control_window(sid), len(chunk))
            if n <= 0:
                await client.window.wait()
                continue
            client.conn.send_data(sid, chunk[:n])
            sent += n
            await client.flush()

    nursery.start_soon(upload)
    with trio.fail_after(5):
        await accepted.wait()
    await trio.sleep(1.0)  # observe: the client cannot run ahead of the stalled upstream
    assert sent < 16 * 1024 * 1024, sent
    assert sent > 0
    await client.aclose()


async def test_h2_client_sees_rst_stream_for_a_broken_json_body(
    nursery: trio.Nursery, upstream_opts: dict[str, object]
) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, **upstream_opts)
    client = await H2Client.connect(nursery, proxy.port)
    json_body = orjson.dumps(
        {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    )
    with trio.fail_after(10):
        res = await client.request(
            "POST", "/v1/messages", [("x-fake-fault", "drop-mid-stream")], json_body
        )
    assert res.status == 200
    assert res.reset is not None and not res.ended  # RST_STREAM, never a clean END_STREAM
    await client.aclose()


async def test_dev_cert_and_tls_reload_without_restart(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """`trioproxy dev-cert` output serves TLS; after the files are replaced, a
    reload (what SIGHUP does) makes new connections use the new certificate
    while an open connection keeps working; a broken file rejects the reload
    and leaves the old one in force."""
    first = await trio.run_process(
        [sys.executable, "-m", "trioproxy", "dev-cert", "--dir", str(tmp_path / "one")],
        capture_stdout=True,
    )
    assert b"TRIOPROXY_TLS_CERT=" in first.stdout
    assert (tmp_path / "one" / "key.pem").stat().st_mode & 0o077 == 0
    live = tmp_path / "live"
    live.mkdir()
    for name in ("cert.pem", "key.pem"):
        (live / name).write_bytes((tmp_path / "one" / name).read_bytes())
    fake = await start_fake(nursery)
    settings = {
        "upstream__url": fake.url,
        "tls__cert": str(live / "cert.pem"),
        "tls__key": str(live / "key.pem"),
        "state_dir": str(tmp_path / "state"),
    }
    server = Server(make_config(**settings), loader=lambda: make_config(**settings))
    proxy = Running(server, await nursery.start(server.serve))

    def trusting(ca_dir: str) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(tmp_path / ca_dir / "ca.pem"))
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    old_conn = await H1Client.connect(proxy.port, trusting("one"))
    assert (await old_conn.request("GET", "/health")).status == 200
    await trio.run_process(
        [sys.executable, "-m", "trioproxy", "dev-cert", "--dir", str(tmp_path / "two")],
        capture_stdout=True,
    )
    for name in ("cert.pem", "key.pem"):
        (live / name).write_bytes((tmp_path / "two" / name).read_bytes())
    assert proxy.server.reload()
    async with await H1Client.connect(proxy.port, trusting("two")) as new_conn:
        assert (await new_conn.request("GET", "/health")).status == 200
    with pytest.raises(trio.BrokenResourceError):
        await H1Client.connect(proxy.port, trusting("one"))  # the old CA no longer matches
    assert (await old_conn.request("GET", "/health")).status == 200  # open connection unaffected
    await old_conn.aclose()
    (live / "key.pem").write_text("not a key")
    assert not proxy.server.reload()
    async with await H1Client.connect(proxy.port, trusting("two")) as still:
        assert (
            await still.request("GET", "/health")
        ).status == 200  # the old context stays in force
