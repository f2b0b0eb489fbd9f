"""Lines of Claude Code's gateway contract that no other test pins: the
request headers and the system attribution block reach the upstream as
sent; the response headers Claude Code reads reach it as the upstream sent
them; the proxy's own refusals say when to come back in whole seconds."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import trio

from tests.helpers import Running, h1_request, make_config
from trioproxy.fake.messages import plan_for, stream_events
from trioproxy.inbound.exchange import ClientExchange
from trioproxy.proto.events import ResponseHead
from trioproxy.server import Server

BETAS = ",".join(f"beta-{n}-2026-01-01" for n in range(40))  # a long, open list
ATTRIBUTION = "x-anthropic-billing-header: cc_version=2.1.330.e58; cc_entrypoint=cli;"
UNIFIED = [
    (b"anthropic-ratelimit-unified-status", b"allowed"),
    (b"anthropic-ratelimit-unified-5h-utilization", b"0.42"),
    (b"anthropic-ratelimit-unified-reset", b"1765100000"),
]


class Upstream:
    """Answers a stream with the unified rate-limit headers; keeps what it got."""

    def __init__(self) -> None:
        self.heads: list[list[tuple[bytes, bytes]]] = []
        self.bodies: list[bytes] = []

    async def __call__(self, ex: ClientExchange) -> None:
        parts = []
        while (chunk := await ex.receive_body()) is not None:
            parts.append(chunk.data)
            ex.ack(chunk.flow_controlled_length)
        body = b"".join(parts)
        self.heads.append(list(ex.head.headers))
        self.bodies.append(body)
        doc = orjson.loads(body)
        await ex.send_head(ResponseHead(200, [(b"content-type", b"text/event-stream"), *UNIFIED]))
        for event in stream_events(plan_for(doc, body, tools=False)):
            await ex.send_body(event)
        await ex.end()


async def test_headers_and_the_attribution_block_pass_as_sent(nursery: trio.Nursery) -> None:
    upstream = Upstream()
    port = await nursery.start(Server(make_config()).serve_app, upstream)
    server = Server(
        make_config(
            upstream__url=f"http://127.0.0.1:{port}",
            scrub__mode="pseudonymize",
            scrub__hmac_key="ab" * 32,
            aliases={"opus": "claude-opus-5-5"},
        )
    )
    proxy = Running(server, await nursery.start(server.serve))
    body = orjson.dumps(
        {
            "model": "opus",
            "max_tokens": 10,
            "stream": True,
            "system": [
                {"type": "text", "text": ATTRIBUTION},
                {"type": "text", "text": "You are Claude Code. My key is sk-ant-api03-" + "x" * 40},
            ],
            "messages": [{"role": "user", "content": "hi"}],
        }
    )
    headers = [("anthropic-beta", BETAS), ("anthropic-version", "2023-06-01")]
    r = await h1_request(proxy.port, "POST", "/v1/messages?beta=true", headers, body)
    assert r.status == 200 and b"event: message_stop" in r.body
    for name, value in UNIFIED:  # what Claude Code reads, as the upstream sent it
        assert r.header(name) == value
    got = dict(upstream.heads[0])
    assert got[b"anthropic-beta"] == BETAS.encode() and got[b"anthropic-version"] == b"2023-06-01"
    sent = orjson.loads(upstream.bodies[0])
    assert sent["model"] == "claude-opus-5-5"  # the alias resolved
    assert sent["system"][0] == {"type": "text", "text": ATTRIBUTION}  # first, unchanged
    assert "sk-ant-api03-" not in sent["system"][1]["text"]  # the secret scrubbed after it


async def test_the_proxy_s_own_refusals_say_when_in_whole_seconds(nursery: trio.Nursery) -> None:
    upstream = Upstream()
    port = await nursery.start(Server(make_config()).serve_app, upstream)
    secret = "team-secret-0123456789abcdef"
    callers: list[dict[str, Any]] = [
        {"name": "team", "secret_sha256": [hashlib.sha256(secret.encode()).hexdigest()], "rpm": 1}
    ]
    server = Server(
        make_config(
            upstream__url=f"http://127.0.0.1:{port}", upstream__api_key="k", callers=callers
        )
    )
    proxy = Running(server, await nursery.start(server.serve))
    body = orjson.dumps(
        {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}
    )
    auth = [("x-api-key", secret)]
    assert (await h1_request(proxy.port, "POST", "/v1/messages", auth, body)).status == 200
    r = await h1_request(proxy.port, "POST", "/v1/messages", auth, body)
    assert r.status == 429 and orjson.loads(r.body)["error"]["type"] == "rate_limit_error"
    wait = r.header(b"retry-after")
    assert wait is not None and wait.isdigit() and 1 <= int(wait) <= 60
