"""Keep-alive pings over real sockets: a silent upstream stream gets
`event: ping` between its events, the official SDK's strict SSE parser is
happy, usage is what the upstream said, and a demoted answer gets none."""

from __future__ import annotations

import anthropic
import orjson
import trio

from tests.helpers import H1Response, h1_request, start_fake, start_proxy

STREAM = orjson.dumps(
    {
        "model": "claude-sonnet-4-6",
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
)
PING = b'event: ping\ndata: {"type": "ping"}\n\n'


async def test_a_silent_stream_gets_pings_between_events(nursery: trio.Nursery) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, stream_keepalive_s=0.15)
    slow = [("x-fake-fault", "event-delay=0.4")]
    got: dict[str, H1Response] = {}

    async def fetch(name: str, port: int) -> None:
        got[name] = await h1_request(port, "POST", "/v1/messages", slow, STREAM)

    async with trio.open_nursery() as both:
        both.start_soon(fetch, "proxy", proxy.port)
        both.start_soon(fetch, "direct", fake.port)
    r, direct = got["proxy"], got["direct"]
    assert r.status == 200 and r.complete
    pings = r.body.count(PING)
    assert pings >= 5  # ~2 per 0.4 s gap, about ten gaps
    assert r.body.replace(PING, b"") == direct.body  # the upstream's bytes, intact
    for piece in r.body.split(PING)[:-1]:
        assert piece == b"" or piece.endswith(b"\n\n")  # only ever after a whole event
    fast = await h1_request(proxy.port, "POST", "/v1/messages", [], STREAM)
    assert PING not in fast.body  # an upstream that talks needs none
    metrics = (await h1_request(proxy.port, "GET", "/metrics")).body.decode()
    assert f"trioproxy_stream_pings_total {pings}" in metrics


async def test_the_sdk_reads_a_pinged_stream(nursery: trio.Nursery) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, stream_keepalive_s=0.2)

    def use_sdk() -> tuple[str, list[str], int]:
        with anthropic.Anthropic(
            base_url=proxy.url,
            api_key="sk-ant-test",
            max_retries=0,
            default_headers={"x-fake-fault": "event-delay=0.3"},
        ) as c:
            kinds: list[str] = []
            with c.messages.stream(
                model="claude-sonnet-4-6",
                max_tokens=50,
                messages=[{"role": "user", "content": "hi"}],
            ) as stream:
                for ev in stream:
                    kinds.append(ev.type)
                final = stream.get_final_message()
            text = "".join(b.text for b in final.content if b.type == "text")
            return text, kinds, final.usage.output_tokens

    text, kinds, output_tokens = await trio.to_thread.run_sync(use_sdk)
    assert text.startswith("Hello from trioproxy")
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert output_tokens > 1  # the cumulative usage, not a ping's
    record = proxy.server.state.metrics
    assert record.pings > 0


async def test_a_demoted_answer_gets_no_pings(nursery: trio.Nursery) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, stream_keepalive_s=0.2, demote_nonstreaming=True)
    body = STREAM.replace(b'"stream":true,', b"")
    r = await h1_request(
        proxy.port, "POST", "/v1/messages", [("x-fake-fault", "event-delay=0.3")], body
    )
    assert r.status == 200 and b"ping" not in r.body
    assert orjson.loads(r.body)["type"] == "message"
    assert proxy.server.state.metrics.pings == 0
