"""Chat Completions clients: the official OpenAI Python SDK against the
proxy's /v1/chat/completions, served by an Anthropic provider (the fake):
JSON, streaming, tools (parallel calls), images and usage; errors parse as
OpenAI errors; what has no equivalent is a 400 naming it."""

from __future__ import annotations

import base64
import hashlib
import tempfile
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
import trio

from tests.helpers import Running, make_config
from trioproxy.fake.app import FakeUpstream
from trioproxy.server import Server

SECRET = "team-secret-0123456789abcdef"
CALLERS = [{"name": "team", "secret_sha256": [hashlib.sha256(SECRET.encode()).hexdigest()]}]
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "the weather",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
]
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 32).decode()


async def setup(nursery: trio.Nursery, **cfg: Any) -> tuple[FakeUpstream, Running]:
    fake = FakeUpstream()
    port = await nursery.start(Server(make_config()).serve_app, fake)
    key = Path(tempfile.mkdtemp(prefix="trioproxy-key-")) / "anthropic.key"
    key.write_text("sk-ant-fake-0123456789")
    provider = {
        "name": "anthropic",
        "base_url": f"http://127.0.0.1:{port}",
        "api_key_file": str(key),
    }
    server = Server(make_config(providers=[provider], callers=CALLERS, **cfg))
    return fake, Running(server, await nursery.start(server.serve))


def client(proxy: Running, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{proxy.url}/v1", api_key=SECRET, max_retries=0, **kw)


async def test_json_stream_tools_images_and_usage(nursery: trio.Nursery) -> None:
    fake, proxy = await setup(nursery)

    def run() -> tuple[Any, Any, list[Any], Any]:
        with client(proxy) as c:
            first = c.chat.completions.create(
                model="claude-opus-5-5",
                messages=[
                    {"role": "system", "content": "You are terse."},
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "weather in Paris?"},
                            {
                                "type": "image_url",
                                "image_url": {"url": f"data:image/png;base64,{PNG}"},
                            },
                        ],
                    },
                ],
                tools=TOOLS,
            )
            call = first.choices[0].message.tool_calls[0]
            history: list[Any] = [
                {"role": "user", "content": "weather in Paris?"},
                {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
            ]
            second = c.chat.completions.create(model="claude-opus-5-5", messages=history)
            chunks = list(
                c.chat.completions.create(
                    model="claude-opus-5-5",
                    messages=history,
                    stream=True,
                    stream_options={"include_usage": True},
                )
            )
            streamed_tools = list(
                c.chat.completions.create(
                    model="claude-opus-5-5",
                    messages=[{"role": "user", "content": "weather?"}],
                    tools=TOOLS,
                    stream=True,
                )
            )
            return first, second, chunks, streamed_tools

    first, second, chunks, streamed_tools = await trio.to_thread.run_sync(run)
    assert first.object == "chat.completion" and first.choices[0].finish_reason == "tool_calls"
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and orjson.loads(call.function.arguments) == {
        "query": "weather in Paris",
        "units": "metric",
    }
    assert first.usage.prompt_tokens > 0 and first.usage.completion_tokens > 0
    assert second.choices[0].message.content.startswith("Hello from trioproxy")
    assert second.choices[0].finish_reason == "stop"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == second.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    calls = [tc for c in streamed_tools if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert calls[0].id and calls[0].function.name == "get_weather"
    args = "".join(tc.function.arguments or "" for tc in calls)
    assert orjson.loads(args) == {"query": "weather in Paris", "units": "metric"}
    # What the Anthropic provider got: a Messages request.
    asked = [orjson.loads(b) for b in [fake.last_body]]
    assert asked[0]["messages"][0]["role"] == "user" and "max_tokens" in asked[0]
    seen_first = fake.seen[0]
    assert seen_first.target == b"/v1/messages"


async def test_errors_parse_as_openai_errors(nursery: trio.Nursery) -> None:
    _fake, proxy = await setup(nursery, routing__retries=0)

    def run() -> list[Exception]:
        errors: list[Exception] = []
        with client(proxy, default_headers={"x-fake-fault": "429"}) as c:
            try:
                c.chat.completions.create(
                    model="claude-opus-5-5", messages=[{"role": "user", "content": "x"}]
                )
            except openai.RateLimitError as exc:
                errors.append(exc)
        with client(proxy) as c:
            try:
                c.chat.completions.create(
                    model="claude-opus-5-5", messages=[{"role": "user", "content": "x"}], n=2
                )
            except openai.BadRequestError as exc:
                errors.append(exc)
        with openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="wrong", max_retries=0) as c:
            try:
                c.chat.completions.create(
                    model="claude-opus-5-5", messages=[{"role": "user", "content": "x"}]
                )
            except openai.AuthenticationError as exc:
                errors.append(exc)
        return errors

    errors = await trio.to_thread.run_sync(run)
    assert [type(e) for e in errors] == [
        openai.RateLimitError,
        openai.BadRequestError,
        openai.AuthenticationError,
    ]
    assert "rate limit" in str(errors[0]).lower()
    assert "n: only one choice" in str(errors[1])
    body = errors[1].body  # type: ignore[attr-defined]
    assert isinstance(body, dict) and body["type"] == "invalid_request_error"


async def test_the_models_list_in_openai_s_shape(nursery: trio.Nursery) -> None:
    _fake, proxy = await setup(nursery, aliases={"claude-team": "claude-opus-5-5"})

    def run() -> list[str]:
        with client(proxy) as c:
            return [m.id for m in c.models.list()]

    assert await trio.to_thread.run_sync(run) == ["claude-team"]


@pytest.mark.parametrize("field", ["logprobs", "audio"])
def test_untranslatable_fields_are_named(field: str) -> None:
    from trioproxy.openai.client import Untranslatable, to_messages

    with pytest.raises(Untranslatable, match=field):
        to_messages({"model": "m", "messages": [{"role": "user", "content": "x"}], field: True})
