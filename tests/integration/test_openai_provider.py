"""A provider of kind "openai" over real sockets: the official Anthropic
SDK talks Messages to the proxy, the fake Chat Completions API behind it
gets Chat Completions; JSON, streams (not buffered), a tool round trip,
errors, count_tokens, and accounting in Anthropic's token classes."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import anthropic
import orjson
import trio

from tests.helpers import Running, h1_request, make_config
from trioproxy.fake.openai_app import OpenAIFake
from trioproxy.server import Server

TOOLS: list[Any] = [
    {
        "name": "get_weather",
        "description": "the weather",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
]


async def setup(nursery: trio.Nursery, tmp_path: Path, **cfg: Any) -> tuple[OpenAIFake, Running]:
    fake = OpenAIFake()
    port = await nursery.start(Server(make_config()).serve_app, fake)
    key = tmp_path / "openai.key"
    key.write_text("sk-openai-fake-0123456789")
    provider = {
        "name": "gpt",
        "kind": "openai",
        "base_url": f"http://127.0.0.1:{port}/v1",
        "api_key_file": str(key),
        "auth": "bearer",
        "models": {"claude-*": "gpt-4o"},
    }
    server = Server(make_config(providers=[provider], **cfg))
    proxy = Running(server, await nursery.start(server.serve))
    return fake, proxy


def client(proxy: Running, **kw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-test", max_retries=0, **kw)


async def test_sdk_create_and_stream_with_tools_and_a_round_trip(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    fake, proxy = await setup(nursery, tmp_path)

    def round_trip() -> tuple[anthropic.types.Message, anthropic.types.Message, list[str]]:
        with client(proxy) as c:
            first = c.messages.create(
                model="claude-sonnet-4-6",
                max_tokens=100,
                system="You are terse.",
                tools=TOOLS,
                messages=[{"role": "user", "content": "weather in Paris?"}],
            )
            call = next(b for b in first.content if b.type == "tool_use")
            kinds: list[str] = []
            with c.messages.stream(
                model="claude-sonnet-4-6",
                max_tokens=100,
                messages=[
                    {"role": "user", "content": "weather in Paris?"},
                    {"role": "assistant", "content": first.content},  # type: ignore[typeddict-item]
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}
                        ],
                    },
                ],
            ) as stream:
                for ev in stream:
                    kinds.append(ev.type)
                second = stream.get_final_message()
            return first, second, kinds

    first, second, kinds = await trio.to_thread.run_sync(round_trip)
    assert first.stop_reason == "tool_use" and first.model == "gpt-4o"
    tool = next(b for b in first.content if b.type == "tool_use")
    assert tool.name == "get_weather" and tool.input == {"query": "weather in Paris", "n": 0}
    assert second.stop_reason == "end_turn"
    assert second.content[0].type == "text" and second.content[0].text.startswith("Hello")
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert second.usage.output_tokens > 0 and second.usage.input_tokens > 0
    # What the provider got: Chat Completions, at its own path, with its key.
    asked = orjson.loads(fake.last_body)
    assert fake.seen[-1].target == b"/v1/chat/completions"
    assert asked["model"] == "gpt-4o" and asked["stream"] is True
    assert asked["messages"][-1] == {"role": "tool", "tool_call_id": tool.id, "content": "sunny"}
    headers = dict(fake.seen[-1].headers)
    assert headers[b"authorization"] == b"Bearer sk-openai-fake-0123456789"
    assert not any(n.startswith(b"anthropic-") for n in headers)


async def test_a_stream_is_translated_as_it_arrives(nursery: trio.Nursery, tmp_path: Path) -> None:
    _fake, proxy = await setup(nursery, tmp_path)

    def timed() -> list[float]:
        times: list[float] = []
        with (
            client(proxy, default_headers={"x-fake-fault": "event-delay=0.15"}) as c,
            c.messages.stream(
                model="claude-sonnet-4-6",
                max_tokens=100,
                messages=[{"role": "user", "content": "hi"}],
            ) as stream,
        ):
            for ev in stream:
                if ev.type == "content_block_delta":
                    times.append(time.monotonic())
        return times

    times = await trio.to_thread.run_sync(timed)
    assert len(times) >= 5
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert sum(g > 0.1 for g in gaps) >= len(gaps) - 1  # spread as the fake sent them


async def test_errors_and_count_tokens(nursery: trio.Nursery, tmp_path: Path) -> None:
    fake, proxy = await setup(nursery, tmp_path, routing__retries=0)
    body = orjson.dumps(
        {
            "model": "claude-sonnet-4-6",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "x"}],
        }
    )
    r = await h1_request(proxy.port, "POST", "/v1/messages", [("x-fake-fault", "429=3")], body)
    doc = orjson.loads(r.body)
    assert r.status == 429 and doc["error"]["type"] == "rate_limit_error"
    assert r.header(b"retry-after") == b"3"
    r = await h1_request(proxy.port, "POST", "/v1/messages", [("x-fake-fault", "500")], body)
    assert r.status == 500 and orjson.loads(r.body)["error"]["type"] == "api_error"
    r = await h1_request(proxy.port, "POST", "/v1/messages/count_tokens", [], body)
    assert r.status == 200 and r.header(b"x-trioproxy-estimate") == b"bytes/4"
    assert orjson.loads(r.body)["input_tokens"] == len(body) // 4
    doc_body = orjson.dumps(
        {
            "model": "claude-sonnet-4-6",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}],
        }
    )
    before = fake.requests
    r = await h1_request(proxy.port, "POST", "/v1/messages", [], doc_body)
    doc = orjson.loads(r.body)
    assert r.status == 400 and doc["error"]["type"] == "invalid_request_error"
    assert "document" in doc["error"]["message"] and fake.requests == before
    # The gateway guide's token: Claude Code drops the documents and retries.
    assert doc["error"]["message"].endswith("(capability_rejected: document_block)")
    r = await h1_request(proxy.port, "GET", "/api/hello", [])
    assert r.status == 404 and fake.requests == before


async def test_tokens_are_counted_in_anthropics_classes(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    _fake, proxy = await setup(nursery, tmp_path)
    body = orjson.dumps(
        {
            "model": "claude-sonnet-4-6",
            "max_tokens": 10,
            "stream": True,
            "messages": [{"role": "user", "content": "cache this please"}],
        }
    )
    r = await h1_request(proxy.port, "POST", "/v1/messages", [], body)
    assert r.status == 200 and b"event: message_stop" in r.body
    metrics = proxy.server.state.metrics
    tokens = {cls: n for (cls, _, _, _), n in metrics.tokens.items()}
    assert tokens["cache_read_input"] > 0 and tokens["input"] > 0 and tokens["output"] > 0


async def test_scrubbing_and_caller_limits_work_on_translated_requests(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """The secret is a placeholder in what the Chat Completions provider
    gets; a caller's rpm counts translated requests like any other."""
    import hashlib

    gh = "ghp_" + "a1B2c3D4e5" * 3 + "f6G7h8"
    secret = "alice-secret-0123456789"
    fake, proxy = await setup(
        nursery,
        tmp_path,
        scrub__mode="pseudonymize",
        scrub__hmac_key="ab" * 32,
        callers=[
            {
                "name": "alice",
                "secret_sha256": [hashlib.sha256(secret.encode()).hexdigest()],
                "rpm": 1,
            }
        ],
    )
    body = orjson.dumps(
        {
            "model": "claude-sonnet-4-6",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": f"my token is {gh}"}],
        }
    )
    r = await h1_request(proxy.port, "POST", "/v1/messages", [("x-api-key", secret)], body)
    assert r.status == 200 and orjson.loads(r.body)["type"] == "message"
    assert gh.encode() not in fake.last_body and b"ghp_" not in fake.last_body
    r = await h1_request(proxy.port, "POST", "/v1/messages", [("x-api-key", secret)], body)
    assert r.status == 429 and fake.requests == 1


async def test_sdk_stream_with_parallel_tool_calls(nursery: trio.Nursery, tmp_path: Path) -> None:
    _fake, proxy = await setup(nursery, tmp_path)
    tools = [*TOOLS, {"name": "get_time", "input_schema": {"type": "object"}}]

    def stream() -> anthropic.types.Message:
        with (
            client(proxy, default_headers={"x-fake-fault": "parallel-tools"}) as c,
            c.messages.stream(
                model="claude-sonnet-4-6",
                max_tokens=100,
                tools=tools,
                messages=[{"role": "user", "content": "weather and time?"}],
            ) as s,
        ):
            return s.get_final_message()

    msg = await trio.to_thread.run_sync(stream)
    calls = [b for b in msg.content if b.type == "tool_use"]
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    assert [c.input for c in calls] == [{"query": "weather in Paris", "n": n} for n in (0, 1)]
    assert msg.stop_reason == "tool_use"
