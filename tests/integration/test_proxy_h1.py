"""HTTP/1.1 clients through the proxy to the fake upstream, over loopback."""

from __future__ import annotations

import itertools
import os

import orjson
import trio

from tests.helpers import H1Client, h1_request, start_fake, start_proxy
from trioproxy.proto.sse import SSEParser

STREAM_BODY = orjson.dumps(
    {
        "model": "claude-sonnet-4-6",
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
)
JSON_BODY = orjson.dumps(
    {
        "model": "claude-sonnet-4-6",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
    }
)


async def test_sse_events_arrive_one_by_one(
    nursery: trio.Nursery, upstream_opts: dict[str, object]
) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, **upstream_opts)
    async with await H1Client.connect(proxy.port) as client:
        await client.send_request(
            "POST", "/v1/messages?beta=true", [("x-fake-fault", "event-delay=0.15")], STREAM_BODY
        )
        resp = await client.read_response()
    assert resp.status == 200 and resp.complete
    parser = SSEParser()
    arrivals: list[tuple[float, bytes]] = []
    for t, data in resp.chunks:
        arrivals.extend((t, ev.event) for ev in parser.feed(data))
    names = [n for _, n in arrivals]
    assert names[0] == b"message_start" and names[-1] == b"message_stop"
    # Each event reached the client on its own, as the upstream sent it: the
    # arrival times are spread out by the upstream's delay, not bunched at the end.
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(arrivals)]
    assert len(gaps) >= 8
    assert min(gaps) > 0.1, gaps
    assert fake.fake is not None and fake.fake.seen[-1].target == b"/v1/messages?beta=true"


async def test_bodies_and_headers_byte_identical_both_ways(
    nursery: trio.Nursery, upstream_opts: dict[str, object]
) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, **upstream_opts)
    body = os.urandom(1_500_000)
    sent_headers = [
        ("x-api-key", "sk-test"),
        ("anthropic-version", "2023-06-01"),
        (
            "anthropic-beta",
            "claude-code-20250219,interleaved-thinking-2025-05-14,future-thing-2031",
        ),
        ("x-claude-code-session-id", "0b8c"),
        ("x-stainless-lang", "js"),
        ("x-app", "cli"),
        ("x-never-seen", "Value With  Spaces"),
        ("connection", "keep-alive"),
        ("content-type", "application/octet-stream"),
    ]
    resp = await h1_request(
        proxy.port, "POST", "/echo/path%20x?beta=true&a=%2F", sent_headers, body
    )
    assert resp.status == 200
    assert resp.body == body
    assert resp.header(b"x-echo-target") == b"/echo/path%20x?beta=true&a=%2F"
    got = [tuple(h) for h in orjson.loads(resp.header(b"x-echo-headers") or b"[]")]
    end_to_end = [(k, v) for k, v in sent_headers if k != "connection"]
    end_to_end.append(("content-length", str(len(body))))
    if resp.header(b"x-echo-protocol") == b"h1":
        assert got == [("host", f"127.0.0.1:{fake.port}"), *end_to_end]
    else:  # HTTP/2 upstream: the authority travels as :authority
        assert got == end_to_end
    assert resp.header(b"x-echo-authority") == f"127.0.0.1:{fake.port}".encode()
    h2 = upstream_opts["upstream__h2_prior_knowledge"]
    assert resp.header(b"x-echo-protocol") == (b"h2" if h2 else b"h1")
    assert resp.header(b"request-id") is not None


async def test_upstream_error_responses_pass_through_unchanged(
    nursery: trio.Nursery, upstream_opts: dict[str, object]
) -> None:
    """With one provider, what the upstream says is what the client gets,
    every time: the proxy never answers for it (a 429 does not make the proxy
    refuse the next request, a 529 or 503 is not retried behind the client's
    back), so the client's own retry logic sees what it would see direct."""
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, **upstream_opts)
    assert fake.fake is not None
    for fault, kind in (
        ("529", "overloaded_error"),
        ("503", "api_error"),
        ("500", "api_error"),
    ):
        r = await h1_request(
            proxy.port, "POST", "/v1/messages", [("x-fake-fault", fault)], JSON_BODY
        )
        assert r.status == int(fault) and orjson.loads(r.body)["error"]["type"] == kind
        assert r.header(b"x-trioproxy-error") is None
    assert fake.fake.requests == 3  # nothing retried
    direct = await h1_request(
        fake.port, "POST", "/v1/messages", [("x-fake-fault", "429=7")], JSON_BODY
    )
    via = await h1_request(
        proxy.port, "POST", "/v1/messages", [("x-fake-fault", "429=7")], JSON_BODY
    )
    assert via.status == 429 and via.header(b"retry-after") == b"7"
    assert orjson.loads(via.body)["error"]["type"] == "rate_limit_error"
    assert via.body.replace(b"000005", b"000004") == direct.body
    assert via.header(b"x-trioproxy-error") is None
    # The next request goes upstream at once: the upstream decides.
    again = await h1_request(proxy.port, "POST", "/v1/messages", [], JSON_BODY)
    assert again.status == 200 and fake.fake.requests == 6


async def test_keepalive_chunked_100_continue_and_pipelining(
    nursery: trio.Nursery, upstream_opts: dict[str, object]
) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, **upstream_opts)
    client = await H1Client.connect(proxy.port)
    await client.send_request(
        "POST", "/echo/chunked", [("expect", "100-continue")], b"abc" * 1000, chunked=True
    )
    first = await client.read_response()
    assert first.status == 200 and first.body == b"abc" * 1000
    echoed = dict(tuple(h) for h in orjson.loads(first.header(b"x-echo-headers") or b"[]"))
    assert "expect" not in echoed and "content-length" not in echoed
    if upstream_opts["upstream__h2_prior_knowledge"]:
        assert "transfer-encoding" not in echoed  # HTTP/2 frames the body itself
    else:
        assert echoed.get("transfer-encoding") == "chunked"
    # Pipelined: three requests in one write, answered in order on the same connection.
    raw = b"".join(b"GET /echo/%d HTTP/1.1\r\nhost: x\r\n\r\n" % i for i in range(3))
    await client.stream.send_all(raw)
    targets = [r.header(b"x-echo-target") for r in await client.read_pipelined(["GET"] * 3)]
    assert targets == [b"/echo/0", b"/echo/1", b"/echo/2"]
    client.conn = __import__("h11").Connection(__import__("h11").CLIENT)
    head = await client.request("HEAD", "/api/hello")
    assert head.status == 200 and head.body == b"" and head.header(b"content-length") == b"19"
    await client.aclose()


async def test_own_endpoints(nursery: trio.Nursery, upstream_opts: dict[str, object]) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, **upstream_opts)
    health = await h1_request(proxy.port, "GET", "/health")
    assert (health.status, orjson.loads(health.body)) == (200, {"status": "ok"})
    live = orjson.loads((await h1_request(proxy.port, "GET", "/livez")).body)
    assert set(live) == {
        "status",
        "in_flight",
        "draining",
        "uptime_s",
        "connections",
        "workers",
        "state_store",
    }
    assert live["workers"] == 1 and live["state_store"] == "ok"  # one process, its SQLite store
    missing = await h1_request(proxy.port, "GET", "/admin/nothing")
    assert (
        missing.status == 404 and orjson.loads(missing.body)["error"]["type"] == "not_found_error"
    )
    assert fake.fake is not None and fake.fake.requests == 0  # none of this was forwarded
    hello = await h1_request(proxy.port, "HEAD", "/api/hello")
    assert hello.status == 200 and fake.fake.requests == 1


async def test_body_limit_by_length_and_by_stream(
    nursery: trio.Nursery, upstream_opts: dict[str, object]
) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, limits__max_body_bytes=100_000, **upstream_opts)
    async with await H1Client.connect(proxy.port) as raw:
        # Only the head: the proxy must answer from Content-Length alone.
        await raw.stream.send_all(
            b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: 100001\r\n\r\n"
        )
        [declared] = await raw.read_pipelined(["POST"])
    assert (
        declared.status == 413
        and orjson.loads(declared.body)["error"]["type"] == "request_too_large"
    )
    assert fake.fake is not None and fake.fake.requests == 0
    async with await H1Client.connect(proxy.port) as client:
        await client.send_request("POST", "/echo/big", [], b"x" * 300_000, chunked=True)
        streamed = await client.read_response()
    assert streamed.status == 413
    assert orjson.loads(streamed.body)["error"]["type"] == "request_too_large"
