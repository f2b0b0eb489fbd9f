"""The exchange and the transports together, over memory streams, in
virtual time: what a client sees when an upstream fails before its first
byte, breaks mid-stream, answers before the upload ended, or when the proxy
drains; and which stages a request gets."""

from __future__ import annotations

import orjson
import pytest
import trio
import trio.testing

from tests.component.rig import rig
from trioproxy.exchange.attempt import UPLOAD_GRACE
from trioproxy.exchange.stages import Chain, Leg
from trioproxy.exchange.trip import Trip
from trioproxy.fake.app import FakeUpstream
from trioproxy.inbound.exchange import ClientExchange, respond
from trioproxy.proto.events import ResponseHead

MESSAGE = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 20,
    "messages": [{"role": "user", "content": "hi"}],
}
BODY = orjson.dumps(MESSAGE)
STREAM = orjson.dumps({**MESSAGE, "stream": True})


def events(body: bytes) -> list[str]:
    return [line[7:] for line in body.decode().splitlines() if line.startswith("event: ")]


async def test_failover_before_the_first_byte(autojump_clock: trio.testing.MockClock) -> None:
    """a hangs up on every request, twice (one retry); b answers. The client
    sees one clean answer, and nothing of a."""
    a, b = FakeUpstream(faults=b"hang-up"), FakeUpstream()
    async with rig(
        {"a": a, "b": b}, providers={"b": {"priority": 200}}, routing__retries=1
    ) as world:
        client = await world.h1()
        r = await client.request("POST", "/v1/messages", [("x-api-key", "k")], STREAM)
    assert r.status == 200 and r.complete
    assert events(r.body)[0] == "message_start" and events(r.body)[-1] == "message_stop"
    assert (a.requests, b.requests) == (2, 1)  # a: the attempt and its retry
    assert r.header(b"x-trioproxy-error") is None


async def test_a_cut_mid_stream_reaches_the_client_as_a_cut(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After two events the upstream drops the connection. HTTP/1.1: the
    chunked body ends without its last chunk; HTTP/2: RST_STREAM
    INTERNAL_ERROR. What went out stays out; nothing is invented."""
    up = FakeUpstream()
    up.script.extend([b"drop-mid-stream=2", b"drop-mid-stream=2"])
    async with rig({"a": up}) as world:
        h1 = await world.h1()
        r = await h1.request("POST", "/v1/messages", [("x-api-key", "k")], STREAM)
        h2 = await world.h2()
        r2 = await h2.request("POST", "/v1/messages", [("x-api-key", "k")], STREAM)
    assert r.status == 200 and not r.complete
    assert events(r.body) == ["message_start", "content_block_start"]
    assert r2.status == 200 and not r2.ended and r2.reset == 2  # INTERNAL_ERROR
    assert events(bytes(r2.body)) == ["message_start", "content_block_start"]
    assert up.requests == 2  # a stream that began is never retried


async def test_a_cut_as_an_error_event_when_configured(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """stream_failure = error_event: the same cut ends as Anthropic's
    `event: error` and a well-formed end."""
    up = FakeUpstream()
    up.script.append(b"drop-mid-stream=2")
    async with rig({"a": up}, stream_failure="error_event") as world:
        client = await world.h1()
        r = await client.request("POST", "/v1/messages", [("x-api-key", "k")], STREAM)
    assert r.status == 200 and r.complete
    assert events(r.body) == ["message_start", "content_block_start", "error"]
    assert b'"message":"the upstream stream was interrupted"' in r.body


class EarlyAnswer:
    """An upstream that refuses a large upload by its head alone, at once,
    and reads the rest only slowly (as a real server may, or not at all)."""

    def __init__(self) -> None:
        self.received = 0

    async def __call__(self, ex: ClientExchange) -> None:
        body = orjson.dumps(
            {"type": "error", "error": {"type": "request_too_large", "message": "too large"}}
        )
        await respond(ex, ResponseHead(413, [(b"content-type", b"application/json")]), body)


async def test_upload_grace_after_an_early_answer(autojump_clock: trio.testing.MockClock) -> None:
    """A 2 MiB upload whose client stalls after 64 KiB; the upstream answers
    413 at once. The client gets that answer verbatim, told to close (the
    rest is too large to read and discard), and the proxy stops pumping the
    upload UPLOAD_GRACE after the answer ended: the connection closes then,
    not when the client's body timeout would have fired."""
    up = EarlyAnswer()
    async with rig({"a": up}, routing__retries=0) as world:
        client = await world.h1()
        declared = 2 * 1024 * 1024
        head = (
            b"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: k\r\n"
            b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % declared
        )
        await client.stream.send_all(head + b"a" * 65536)
        t0 = trio.current_time()
        r = await client.read_response()
        answered = trio.current_time() - t0
        assert r.status == 413 and b"request_too_large" in r.body
        assert r.header(b"connection") == b"close"
        with trio.fail_after(60):
            while await client.stream.receive_some(65536):
                pass  # until the proxy closes
        closed = trio.current_time() - t0
    assert answered < 0.1
    assert UPLOAD_GRACE <= closed < UPLOAD_GRACE + 3.0  # the linger after it is bounded too


async def test_drain_finishes_what_is_in_flight(autojump_clock: trio.testing.MockClock) -> None:
    """Drain begins while a stream is half-way: it finishes whole. A second
    request on the same connection is still answered, saying `connection:
    close`; then the connection ends. A kept-alive idle connection closes
    once accepting stops."""
    up = FakeUpstream()
    up.script.extend([b"", b"event-delay=0.5"])
    async with rig({"a": up}) as world:
        busy, idle = await world.h1(), await world.h1()
        warm = await idle.request("POST", "/v1/messages", [("x-api-key", "k")], BODY)
        assert warm.status == 200  # then kept alive, idle
        async with trio.open_nursery() as n:
            results = []

            async def stream() -> None:
                results.append(
                    await busy.request("POST", "/v1/messages", [("x-api-key", "k")], STREAM)
                )

            n.start_soon(stream)
            await up.wait_for(lambda f: f.requests == 2)
            await trio.sleep(1.0)
            world.state.listening.begin_drain()
        (first,) = results
        assert first.status == 200 and first.complete
        assert events(first.body)[-1] == "message_stop"
        second = await busy.request("POST", "/v1/messages", [("x-api-key", "k")], BODY)
        assert second.status == 200 and second.header(b"connection") == b"close"
        assert await busy.stream.receive_some(1) == b""  # closed after it
        world.state.listening.stop_accepting()
        with trio.fail_after(5):
            assert await idle.stream.receive_some(1) == b""


async def test_h2_drain_still_takes_a_request_the_client_sent_before_reading_the_goaway(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """RFC 9113 6.8's two GOAWAYs: "imminent" (last stream 2^31-1) with a
    PING, then the final one once the PING comes back. A request the client
    wrote while the first GOAWAY was on its way is served; closing at once
    would have reset it, and the client could not have known whether to
    send it again."""
    up = FakeUpstream()
    async with rig({"a": up}) as world:
        client = await world.h2()
        warm = await client.request("POST", "/v1/messages", [("x-api-key", "k")], BODY)
        assert warm.status == 200
        world.state.listening.begin_drain()  # GOAWAY and PING queued, not yet read
        late = await client.request("POST", "/v1/messages", [("x-api-key", "k")], BODY)
        assert late.status == 200 and late.ended and late.reset is None
        with trio.fail_after(5):
            await client.closed.wait()  # then the connection ends
        assert (
            client.goaway is not None and client.goaway.last_stream_id == 3
        )  # final: 1 and 3 taken
    assert up.requests == 2


class EchoSSE:
    """An upstream that streams back, as text deltas, the last user message
    it received, and remembers the body it was sent."""

    def __init__(self) -> None:
        self.body = b""

    async def __call__(self, ex: ClientExchange) -> None:
        parts = []
        while (chunk := await ex.receive_body()) is not None:
            parts.append(chunk.data)
        self.body = b"".join(parts)
        doc = orjson.loads(self.body)
        text = doc["messages"][-1]["content"]
        usage = {"input_tokens": 7, "output_tokens": 1}
        message = {"id": "m", "type": "message", "role": "assistant", "content": [], "usage": usage}
        block = {"type": "text", "text": ""}
        sse: list[tuple[str, dict[str, object]]] = [
            ("message_start", {"message": {**message, "model": doc["model"]}}),
            ("content_block_start", {"index": 0, "content_block": block}),
        ]
        for i in range(0, len(text), 5):  # placeholders split across deltas
            delta = {"type": "text_delta", "text": text[i : i + 5]}
            sse.append(("content_block_delta", {"index": 0, "delta": delta}))
        sse += [
            ("content_block_stop", {"index": 0}),
            (
                "message_delta",
                {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}},
            ),
            ("message_stop", {}),
        ]
        head = ResponseHead(200, [(b"content-type", b"text/event-stream")])
        await ex.send_head(head)
        for name, data in sse:
            line = orjson.dumps({"type": name, **data})
            await ex.send_body(b"event: %s\ndata: %s\n\n" % (name.encode(), line))
        await ex.end()


SECRET = "AKIAIOSFODNN7EXAMPLE"


async def test_stages_compose_scrub_edit_usage_restore(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Scrubbing, a provider's model map, usage and restore, each a stage:
    the upstream gets a placeholder and the mapped model; the client gets
    its secret back across split deltas; the usage is counted."""
    up = EchoSSE()
    async with rig(
        {"a": up},
        scrub__mode="pseudonymize",
        scrub__hmac_key="0123456789abcdef" * 4,
        providers={"a": {"models": {"claude-sonnet-4-6": "vendor-sonnet"}}},
    ) as world:
        client = await world.h1()
        asked = [{"role": "user", "content": f"key {SECRET} ok"}]
        doc = {**MESSAGE, "stream": True, "messages": asked}
        r = await client.request("POST", "/v1/messages", [("x-api-key", "k")], orjson.dumps(doc))
        tokens = world.state.metrics.snapshot()["tokens"]
    sent = orjson.loads(up.body)
    assert SECRET not in up.body.decode() and sent["model"] == "vendor-sonnet"
    text = "".join(
        orjson.loads(line[6:])["delta"]["text"]
        for line in r.body.decode().splitlines()
        if line.startswith("data: ") and "text_delta" in line
    )
    assert r.status == 200 and r.complete and text == f"key {SECRET} ok"
    counted = {t["class"]: t["count"] for t in tokens}
    assert counted["input"] == 7 and counted["output"] == 9


async def test_a_plain_request_goes_through_no_stage(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a Messages call, no scrubbing, no provider edits: the bytes pass
    untouched (and uncopied: no stage is composed). A Messages answer gets
    the usage stage alone."""
    from trioproxy.exchange import respond as respond_module
    from trioproxy.exchange.stages import response_chain

    built: list[object] = []

    def spy(trip: Trip, leg: Leg, head: ResponseHead) -> Chain | None:
        chain = response_chain(trip, leg, head)
        built.append(chain)
        return chain

    monkeypatch.setattr(respond_module, "response_chain", spy)
    up = FakeUpstream()
    async with rig({"a": up}) as world:
        client = await world.h1()
        r = await client.request("GET", "/bytes/100000", [("x-api-key", "k")])
        m = await client.request("POST", "/v1/messages", [("x-api-key", "k")], BODY)
    assert r.status == 200 and len(r.body) == 100000
    assert m.status == 200
    plain, messages = built
    assert plain is None  # /bytes: nothing composed
    assert isinstance(messages, Chain)
    assert [type(s).__name__ for s in messages.stages] == ["UsageStage"]


BIG = orjson.dumps({**MESSAGE, "metadata": {"pad": "x" * 200_000}})


async def test_a_body_without_a_kept_copy_is_not_sent_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A body over limits.retained_body_bytes streams without a copy: a
    connection that fails under it is not retried (502). The same failure
    on a body under the budget is retried, and the retry answers. (With
    several providers, routing reads bodies whole: those are always kept.)"""
    for body, skipped in ((BIG, True), (BODY, False)):
        a = FakeUpstream()
        a.script.append(b"hang-up")  # the first request only
        async with rig({"a": a}, routing__retries=1, limits__retained_body_bytes=100_000) as world:
            client = await world.h1()
            r = await client.request("POST", "/v1/messages", [("x-api-key", "k")], body)
            metrics = world.state.metrics
        if skipped:
            assert r.status == 502, r.body
            assert a.requests == 1
            assert metrics.retention_skipped == 1
        else:
            assert r.status == 200 and a.requests == 2
            assert metrics.retention_skipped == 0


async def test_a_queued_record_keeps_no_body(autojump_clock: trio.testing.MockClock) -> None:
    """What waits for the journal's writer is the record alone: the body
    traits (which reference up to 32 KiB of the request's chunks) are let
    go when the request ends, after the diagnostic line took what it needs.
    A writer 6,000 records behind held 200 MB of 50 KB bodies that way."""
    up = FakeUpstream()
    big = orjson.dumps({**MESSAGE, "metadata": {"pad": "x" * 50_000}})
    async with rig({"a": up}) as world:
        client = await world.h1()
        ok = await client.request("POST", "/v1/messages", [("x-api-key", "k")], big)
        failed = [("x-api-key", "k"), ("x-fake-fault", "500")]
        bad = await client.request("POST", "/v1/messages", failed, big)
        assert (ok.status, bad.status) == (200, 500)
        queued = world.state.journal.queued
    assert len(queued) == 2
    assert all(record.traits is None for record in queued)
    assert [record.stream for record in queued] == [False, False]
