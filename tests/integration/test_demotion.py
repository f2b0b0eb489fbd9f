"""Demotion over real sockets: a non-streaming request goes upstream as a
stream and the client gets exactly the JSON the fake answers a non-streaming
request with (one table of behaviours); the official SDK's non-streaming
calls work through it; a slow first event no longer hits the header timeout."""

from __future__ import annotations

import logging
from typing import Any

import anthropic
import orjson
import pytest
import trio

from tests.helpers import h1_request, start_fake, start_proxy

TOOLS = [
    {
        "name": "get_weather",
        "description": "w",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
]
BASE: dict[str, Any] = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 200,
    "messages": [{"role": "user", "content": "hi"}],
}
# name -> (request body changes, x-fake-fault)
BEHAVIOURS: dict[str, tuple[dict[str, Any], str]] = {
    "plain text": ({}, ""),
    "tool use, forced": (
        {"tools": TOOLS, "tool_choice": {"type": "tool", "name": "get_weather"}},
        "",
    ),
    "tool use, optional": ({"tools": TOOLS, "tool_choice": {"type": "auto"}}, ""),
    "thinking with signature": (
        {"thinking": {"type": "enabled", "budget_tokens": 1024}, "max_tokens": 2000},
        "",
    ),
    "max_tokens cut": ({"max_tokens": 5}, "max-tokens-cut"),
    "stop sequence": ({"stop_sequences": ["streams"]}, ""),
    "long text in small deltas": ({}, "text-bytes=5000,delta-chars=7"),
    "429": ({}, "429"),
    "529": ({}, "529"),
    "500": ({}, "500"),
    "error mid-stream": ({}, "error-mid-stream=4"),
}


def without_request_id(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "request_id"}


@pytest.mark.parametrize("name", list(BEHAVIOURS))
async def test_a_demoted_answer_is_the_non_streaming_answer(
    nursery: trio.Nursery, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    changes, fault = BEHAVIOURS[name]
    body = orjson.dumps({**BASE, **changes})
    headers = [("x-fake-fault", fault)] if fault else []
    direct_fake = await start_fake(nursery)
    behind = await start_fake(nursery)
    proxy = await start_proxy(nursery, behind.url, demote_nonstreaming=True, routing__retries=0)
    direct = await h1_request(direct_fake.port, "POST", "/v1/messages", headers, body)
    with caplog.at_level(logging.INFO, logger="trioproxy.access"):
        demoted = await h1_request(proxy.port, "POST", "/v1/messages", headers, body)
    assert behind.fake is not None
    upstream_asked = orjson.loads(behind.fake.last_body)
    assert upstream_asked["stream"] is True  # it went upstream as a stream
    assert demoted.status == direct.status, demoted.body
    want, got = orjson.loads(direct.body), orjson.loads(demoted.body)
    if direct.status == 200:
        assert got == want  # id, model, content, stop_reason, stop_sequence, usage
        assert list(got) == list(want)  # in the API's own key order
        assert got["content"] == want["content"] and got["usage"] == want["usage"]
        assert (got["stop_reason"], got["stop_sequence"]) == (
            want["stop_reason"],
            want["stop_sequence"],
        )
    else:
        assert without_request_id(got) == without_request_id(want)
        assert got["request_id"]  # the upstream's request id
    assert demoted.header(b"content-type") == b"application/json"
    assert int(demoted.header(b"content-length") or -1) == len(demoted.body)
    assert demoted.header(b"request-id") is not None
    for header in (b"retry-after", b"x-should-retry"):
        assert demoted.header(header) == direct.header(header), header
    if direct.header(b"anthropic-ratelimit-requests-limit") is not None:
        assert demoted.header(b"anthropic-ratelimit-requests-limit") == b"4000"
    assert demoted.header(b"cache-control") is None  # the event stream's, not JSON's


async def test_thirty_digit_integers_survive_the_body_edit(nursery: trio.Nursery) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, demote_nonstreaming=True)
    big = b"123456789012345678901234567890"
    body = (
        b'{"model":"claude-sonnet-4-6","max_tokens":20,"stream":false,'
        b'"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t",'
        b'"content":"x"}]}],"metadata":{"n":' + big + b', "stream": false}}'
    )
    r = await h1_request(proxy.port, "POST", "/v1/messages", [], body)
    assert r.status == 200
    assert fake.fake is not None
    sent = fake.fake.last_body
    assert sent == body.replace(b'"stream":false', b'"stream":true', 1)  # one top-level edit
    assert big in sent and b'"stream": false}' in sent  # the nested one untouched


async def test_the_sdk_non_streaming_calls_through_demotion(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, demote_nonstreaming=True)

    def use_sdk() -> anthropic.types.Message:
        with anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-test", max_retries=0) as c:
            return c.messages.create(
                model="claude-sonnet-4-6",
                max_tokens=64,
                messages=[{"role": "user", "content": "hi"}],
                tools=TOOLS,  # type: ignore[arg-type]
            )

    with caplog.at_level(logging.INFO, logger="trioproxy.access"):
        msg = await trio.to_thread.run_sync(use_sdk)
        for _ in range(100):  # the journal writes its batches every 0.2 s
            if any(r.name == "trioproxy.access" for r in caplog.records):
                break
            await trio.sleep(0.05)
    line = orjson.loads(
        next(r for r in caplog.records if r.name == "trioproxy.access").getMessage()
    )
    assert line["demoted"] is True and line["stream"] is False
    assert line["output_tokens"] == msg.usage.output_tokens  # accounting saw the stream's usage
    assert proxy.server.state.metrics.demoted == 1
    assert [b.type for b in msg.content] == ["text", "tool_use"]
    tool = msg.content[1]
    assert tool.type == "tool_use" and tool.input == {
        "query": "weather in Paris",
        "units": "metric",
    }
    assert msg.stop_reason == "tool_use" and msg.usage.output_tokens > 0
    assert fake.fake is not None and orjson.loads(fake.fake.last_body)["stream"] is True


@pytest.mark.parametrize("demote", [True, False])
async def test_a_slow_first_event_with_demotion_and_without(
    nursery: trio.Nursery, demote: bool
) -> None:
    """The first event after 5 s, timeouts.response_headers = 2: demoted,
    the stream's head came at once and the SDK gets its answer; without
    demotion the JSON answer's head is late and the client gets 504."""
    fake = await start_fake(nursery)
    proxy = await start_proxy(
        nursery,
        fake.url,
        demote_nonstreaming=demote,
        timeouts__response_headers=2,
        routing__retries=0,
    )

    def use_sdk() -> anthropic.types.Message:
        with anthropic.Anthropic(
            base_url=proxy.url,
            api_key="sk-ant-test",
            max_retries=0,
            default_headers={"x-fake-fault": "slow-headers=5"},
        ) as c:
            return c.messages.create(
                model="claude-sonnet-4-6",
                max_tokens=64,
                messages=[{"role": "user", "content": "hi"}],
            )

    if demote:
        msg = await trio.to_thread.run_sync(use_sdk)
        assert msg.content[0].type == "text"
    else:
        with pytest.raises(anthropic.APIStatusError) as info:
            await trio.to_thread.run_sync(use_sdk)
        assert info.value.status_code == 504


async def test_a_cut_stream_is_retried_then_a_502(nursery: trio.Nursery) -> None:
    """Nothing reached the client: a stream cut before message_stop is
    retried (routing.retries), and when every try is cut, a 502."""
    fake = await start_fake(nursery)
    assert fake.fake is not None
    fake.fake.default_faults = b"drop-mid-stream=3"
    proxy = await start_proxy(nursery, fake.url, demote_nonstreaming=True, routing__retries=1)
    r = await h1_request(proxy.port, "POST", "/v1/messages", [], orjson.dumps(BASE))
    doc = orjson.loads(r.body)
    assert r.status == 502 and doc["type"] == "error" and doc["error"]["type"] == "api_error"
    assert fake.fake.requests == 2
    fake.fake.default_faults = None
    fake.fake.script.append(b"drop-mid-stream=3")  # once: the retry answers
    r = await h1_request(proxy.port, "POST", "/v1/messages", [], orjson.dumps(BASE))
    assert r.status == 200 and orjson.loads(r.body)["type"] == "message"
