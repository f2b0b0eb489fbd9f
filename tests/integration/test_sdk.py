"""The official Anthropic Python SDK, unchanged, through the proxy."""

from __future__ import annotations

import anthropic
import pytest
import trio

from tests.helpers import start_fake, start_proxy
from trioproxy.fake.messages import DEFAULT_TEXT


async def test_sdk_streaming_and_json(
    nursery: trio.Nursery, upstream_opts: dict[str, object]
) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, **upstream_opts)

    def use_sdk() -> tuple[str, str, list[str], anthropic.types.Usage]:
        with anthropic.Anthropic(
            base_url=proxy.url, api_key="sk-ant-test", max_retries=0
        ) as client:
            msg = client.messages.create(
                model="claude-sonnet-4-6",
                max_tokens=64,
                messages=[{"role": "user", "content": "hi"}],
            )
            events: list[str] = []
            with client.messages.stream(
                model="claude-sonnet-4-6",
                max_tokens=64,
                messages=[{"role": "user", "content": "hi"}],
                tools=[
                    {
                        "name": "get_weather",
                        "description": "w",
                        "input_schema": {"type": "object", "properties": {}},
                    }
                ],
            ) as stream:
                for ev in stream:
                    events.append(ev.type)
                final = stream.get_final_message()
            text = "".join(b.text for b in final.content if b.type == "text")
            first = msg.content[0]
            assert first.type == "text"
            return first.text, text, events, final.usage

    json_text, stream_text, events, usage = await trio.to_thread.run_sync(use_sdk)
    assert json_text == DEFAULT_TEXT and stream_text == DEFAULT_TEXT
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert "input_json" in events  # the tool_use block's input_json_delta, parsed by the SDK
    assert usage.output_tokens > 0 and usage.cache_read_input_tokens == 0


async def test_sdk_sees_upstream_errors_as_the_api_sends_them(nursery: trio.Nursery) -> None:
    fake = await start_fake(nursery)
    # No retries by the proxy, and a 429 does not cool the provider down for
    # long (it is the last provider: the next call must reach it again).
    proxy = await start_proxy(nursery, fake.url, routing__retries=0)

    def call(fault: str) -> None:
        with anthropic.Anthropic(
            base_url=proxy.url, api_key="k", max_retries=0, default_headers={"x-fake-fault": fault}
        ) as client:  # closes its connection pool
            client.messages.create(
                model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]
            )

    with pytest.raises(anthropic.InternalServerError) as overloaded:
        await trio.to_thread.run_sync(call, "529")
    assert overloaded.value.status_code == 529
    with pytest.raises(anthropic.RateLimitError) as rate:
        await trio.to_thread.run_sync(call, "429=3")
    assert rate.value.response.headers["retry-after"] == "3"
    assert rate.value.request_id is not None and rate.value.request_id.startswith("req_fake_")
