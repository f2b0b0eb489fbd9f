"""Chat Completions clients, sans-IO (openai/client.py): their request as a
Messages request, a Message and a stream as Chat Completions."""

from __future__ import annotations

import orjson
import pytest

from trioproxy.fake.messages import Plan, Usage, stream_events
from trioproxy.openai.client import ChunkStream, Untranslatable, to_completion, to_messages


def test_a_conversation_with_tools_and_images() -> None:
    doc = {
        "model": "claude-opus-5-5",
        "max_completion_tokens": 99,
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "a", "arguments": '{"x":1}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "b", "arguments": "{}"},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "one"},
            {"role": "tool", "tool_call_id": "call_2", "content": "two"},
        ],
        "tools": [
            {"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}}
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "stop": "END",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    out, usage = to_messages(doc)
    assert usage is True and out["stream"] is True and out["max_tokens"] == 99
    assert out["system"] == "Be terse.\n\nUse tools."
    assert out["stop_sequences"] == ["END"]
    assert out["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    user, assistant, results = out["messages"]
    assert [b["type"] for b in user["content"]] == ["text", "image", "image"]
    assert user["content"][1]["source"] == {
        "type": "base64",
        "media_type": "image/png",
        "data": "AAAA",
    }
    assert user["content"][2]["source"] == {"type": "url", "url": "https://x.test/a.png"}
    assert [b["id"] for b in assistant["content"]] == ["call_1", "call_2"]
    assert assistant["content"][0]["input"] == {"x": 1}
    assert results["role"] == "user" and [b["tool_use_id"] for b in results["content"]] == [
        "call_1",
        "call_2",
    ]


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"n": 3}, "n: only one"),
        ({"response_format": {"type": "json_schema"}}, "response_format"),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "input_audio"),
        (
            {"tools": [{"type": "web_search"}], "messages": [{"role": "user", "content": "x"}]},
            "function tools",
        ),
    ],
)
def test_what_has_no_equivalent_is_named(extra: dict[str, object], words: str) -> None:
    doc = {"model": "m", "messages": [{"role": "user", "content": "x"}], **extra}
    with pytest.raises(Untranslatable, match=words):
        to_messages(doc)


def _two_tools() -> list[bytes]:
    plan = Plan(
        "msg_1",
        "claude-x",
        "thinking aloud",
        False,
        {"name": "a", "input": {"q": 1}},
        Usage(10, 2, 5, 7),
        "tool_use",
    )
    events = stream_events(plan, delta_chars=4)
    second = [
        b'event: content_block_start\ndata: {"type":"content_block_start","index":5,"content_block":{"type":"tool_use","id":"toolu_2","name":"b","input":{}}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":5,"delta":{"type":"input_json_delta","partial_json":"{\\"z\\":"}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":5,"delta":{"type":"input_json_delta","partial_json":"2}"}}\n\n',
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":5}\n\n',
    ]
    stop = next(i for i, e in enumerate(events) if e.startswith(b"event: message_delta"))
    return events[:stop] + second + events[stop:]


def test_a_stream_with_two_tool_calls_as_chunks() -> None:
    stream = ChunkStream("claude-x", include_usage=True)
    raw = b"".join(stream.feed(e) for e in _two_tools())
    lines = [line[6:] for line in raw.split(b"\n\n") if line.startswith(b"data: ")]
    assert lines[-1] == b"[DONE]"
    docs = [orjson.loads(x) for x in lines[:-1]]
    assert docs[0]["choices"][0]["delta"]["role"] == "assistant"
    calls = [
        tc for d in docs if d["choices"] for tc in d["choices"][0]["delta"].get("tool_calls", [])
    ]
    starts = [tc for tc in calls if "id" in tc]
    assert [(tc["index"], tc["function"]["name"]) for tc in starts] == [(0, "a"), (1, "b")]
    second = "".join(tc["function"]["arguments"] for tc in calls if tc["index"] == 1)
    assert orjson.loads(second) == {"z": 2}
    finish = [d["choices"][0]["finish_reason"] for d in docs if d["choices"]]
    assert finish[-1] == "tool_calls"
    assert docs[-1]["choices"] == [] and docs[-1]["usage"]["prompt_tokens"] == 17


def test_a_message_as_a_completion() -> None:
    message = {
        "id": "msg_abc",
        "model": "claude-x",
        "content": [
            {"type": "thinking", "thinking": "hmm"},
            {"type": "text", "text": "Hi"},
            {
                "type": "tool_use",
                "id": "toolu_9",
                "name": "a",
                "input": {"n": 12345678901234567890},
            },
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 3, "cache_read_input_tokens": 4, "output_tokens": 5},
    }
    out = to_completion(message, "asked")
    choice = out["choices"][0]
    assert out["id"] == "chatcmpl-abc" and out["model"] == "claude-x"
    assert choice["message"]["content"] == "Hi" and choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["id"] == "toolu_9"
    assert out["usage"] == {
        "prompt_tokens": 7,
        "completion_tokens": 5,
        "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 4},
    }
