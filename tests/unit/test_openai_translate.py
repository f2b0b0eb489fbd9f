"""Messages <-> Chat Completions, both directions, as tables: request shapes
in, Chat Completions bodies out; the fake's Chat answers (JSON and SSE under
any re-chunking) out as Anthropic's Message and events; errors."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trioproxy.fake.openai import chat_chunks, chat_error, chat_json, chat_plan
from trioproxy.openai.answer import to_error, to_message
from trioproxy.openai.request import Untranslatable, to_chat
from trioproxy.openai.stream import ChatStreamTranslator, StreamError
from trioproxy.rules.demote import MessageAssembler

TOOL = {"name": "get_weather", "description": "w", "input_schema": {"type": "object"}}
TOOL2 = {"name": "get_time", "input_schema": {"type": "object"}}
PNG = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}

# name -> (Messages request fields, expected Chat Completions fields)
REQUESTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "text and system blocks": (
        {
            "system": [
                {"type": "text", "text": "You are terse."},
                {"type": "text", "text": "Agent prompt.", "cache_control": {"type": "ephemeral"}},
            ],
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 100,
            "temperature": 0.2,
            "top_p": 0.9,
            "metadata": {"user_id": "user_abc"},
        },
        {
            "messages": [
                {"role": "system", "content": "You are terse.\n\nAgent prompt."},
                {"role": "user", "content": "hi"},
            ],
            "max_tokens": 100,
            "temperature": 0.2,
            "top_p": 0.9,
            "user": "user_abc",
        },
    ),
    "images, base64 and URL": (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this"},
                        {"type": "image", "source": PNG},
                        {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                    ],
                }
            ]
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this"},
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                        },
                        {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                    ],
                }
            ]
        },
    ),
    "parallel tool calls and results, one an error": (
        {
            "tools": [TOOL, TOOL2],
            "tool_choice": {"type": "auto"},
            "messages": [
                {"role": "user", "content": "weather and time?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hm", "signature": "s"},
                        {"type": "text", "text": "Checking."},
                        {
                            "type": "tool_use",
                            "id": "t1",
                            "name": "get_weather",
                            "input": {"q": "Paris"},
                        },
                        {"type": "tool_use", "id": "t2", "name": "get_time", "input": {}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t1",
                            "content": [
                                {"type": "text", "text": "sunny"},
                                {"type": "text", "text": "20C"},
                            ],
                        },
                        {
                            "type": "tool_result",
                            "tool_use_id": "t2",
                            "content": "no clock",
                            "is_error": True,
                        },
                        {"type": "text", "text": "thanks"},
                    ],
                },
            ],
        },
        {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "parameters": {"type": "object"},
                        "description": "w",
                    },
                },
                {
                    "type": "function",
                    "function": {"name": "get_time", "parameters": {"type": "object"}},
                },
            ],
            "tool_choice": "auto",
            "messages": [
                {"role": "user", "content": "weather and time?"},
                {
                    "role": "assistant",
                    "content": "Checking.",
                    "tool_calls": [
                        {
                            "id": "t1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"q":"Paris"}'},
                        },
                        {
                            "id": "t2",
                            "type": "function",
                            "function": {"name": "get_time", "arguments": "{}"},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "t1", "content": "sunny\n20C"},
                {"role": "tool", "tool_call_id": "t2", "content": "Error: no clock"},
                {"role": "user", "content": "thanks"},
            ],
        },
    ),
    "tool_choice any, no parallel": (
        {
            "tools": [TOOL],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
            "messages": [],
        },
        {"tool_choice": "required", "parallel_tool_calls": False},
    ),
    "tool_choice tool": (
        {"tools": [TOOL], "tool_choice": {"type": "tool", "name": "get_weather"}, "messages": []},
        {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
    ),
    "tool_choice none": (
        {"tools": [TOOL], "tool_choice": {"type": "none"}, "messages": []},
        {"tool_choice": "none"},
    ),
    "stop sequences and a stream": (
        {"stop_sequences": ["END", "STOP"], "stream": True, "messages": []},
        {"stop": ["END", "STOP"], "stream": True, "stream_options": {"include_usage": True}},
    ),
}


@pytest.mark.parametrize("name", list(REQUESTS))
def test_requests_translate(name: str) -> None:
    doc, want = REQUESTS[name]
    got = to_chat(doc, "gpt-4o").body
    assert got["model"] == "gpt-4o"
    for key, value in want.items():
        assert got[key] == value, key
    if "messages" in want:
        assert got["messages"] == want["messages"]


def test_what_is_dropped_is_noted_and_thinking_can_become_effort() -> None:
    doc = REQUESTS["parallel tool calls and results, one an error"][0]
    t = to_chat({**doc, "thinking": {"type": "enabled", "budget_tokens": 8000}, "top_k": 5}, "m")
    assert set(t.notes) == {"thinking blocks in the history", "thinking", "top_k"}
    t = to_chat(
        {"messages": [], "thinking": {"type": "enabled", "budget_tokens": 20000}},
        "o3",
        reasoning=True,
    )
    assert t.body["reasoning_effort"] == "high" and "thinking" not in t.notes


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        (
            {"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
            "document",
        ),
        (
            {"messages": [], "tools": [{"type": "web_search_20250305", "name": "web_search"}]},
            "server tool",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "t",
                                "content": [{"type": "image", "source": PNG}],
                            }
                        ],
                    }
                ]
            },
            "image in a tool result",
        ),
        ({"messages": [], "container": "c"}, "container"),
    ],
)
def test_features_without_an_equivalent_are_refused_by_name(doc: dict[str, Any], says: str) -> None:
    with pytest.raises(Untranslatable, match=says):
        to_chat(doc, "m")


# -- answers ------------------------------------------------------------------------
ANSWERS = {
    "text": ({"model": "gpt-4o", "messages": []}, False),
    "one tool call": (
        {"model": "gpt-4o", "tools": [{"type": "function", "function": {"name": "get_weather"}}]},
        False,
    ),
    "parallel tool calls": (
        {
            "model": "gpt-4o",
            "tools": [
                {"type": "function", "function": {"name": "get_weather"}},
                {"type": "function", "function": {"name": "get_time"}},
            ],
        },
        True,
    ),
    "max_tokens cut": ({"model": "gpt-4o", "max_tokens": 3}, False),
    "cached tokens": (
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "cache me"}]},
        False,
    ),
}


def translated_stream(chunks: list[bytes], cuts: list[int] | None = None) -> bytes:
    raw = b"".join(chunks)
    tr = ChatStreamTranslator()
    out = bytearray()
    at = 0
    for n in cuts or []:
        out += tr.feed(raw[at : at + n])
        at += n
    out += tr.feed(raw[at:])
    out += tr.end()
    return bytes(out)


def rebuilt(stream: bytes) -> dict[str, Any]:
    asm = MessageAssembler()
    asm.feed(stream)
    status, body = asm.result()
    assert status == 200
    return dict(orjson.loads(body))


@pytest.mark.parametrize("name", list(ANSWERS))
def test_json_and_stream_answers_translate_to_the_same_message(name: str) -> None:
    request, parallel = ANSWERS[name]
    raw = orjson.dumps(request)
    plan = chat_plan(request, raw, parallel=parallel)
    message = orjson.loads(to_message(chat_json(plan)))
    assert rebuilt(translated_stream(chat_chunks(plan))) == message
    kinds = [b["type"] for b in message["content"]]
    if plan.calls:
        assert kinds == ["tool_use"] * len(plan.calls) and message["stop_reason"] == "tool_use"
        # Each block is the provider's own call: its id (which the tool
        # result must name), its function and its arguments, in order.
        assert [(b["id"], b["name"], b["input"]) for b in message["content"]] == [
            (c["id"], c["name"], orjson.loads(c["arguments"])) for c in plan.calls
        ]
        assert len({c["id"] for c in plan.calls}) == len(plan.calls)
    else:
        assert kinds == ["text"]
    if name == "max_tokens cut":
        assert message["stop_reason"] == "max_tokens"
    u = message["usage"]
    assert u["cache_read_input_tokens"] == plan.cached_tokens
    assert u["input_tokens"] + u["cache_read_input_tokens"] == plan.prompt_tokens
    assert u["output_tokens"] == plan.completion_tokens
    if name == "cached tokens":
        assert plan.cached_tokens > 0


@given(st.lists(st.integers(min_value=1, max_value=120), max_size=50))
def test_any_split_of_the_chat_stream_gives_the_same_events(cuts: list[int]) -> None:
    request, _ = ANSWERS["parallel tool calls"]
    plan = chat_plan(request, orjson.dumps(request), parallel=True)
    whole = translated_stream(chat_chunks(plan))
    assert translated_stream(chat_chunks(plan), cuts) == whole


def test_events_come_out_as_chunks_go_in() -> None:
    """Nothing is held back: each text chunk gives its delta at once."""
    request, _ = ANSWERS["text"]
    chunks = chat_chunks(chat_plan(request, orjson.dumps(request)))
    tr = ChatStreamTranslator()
    first = tr.feed(chunks[0])
    assert first.startswith(b"event: message_start")
    second = tr.feed(chunks[1])
    assert b"content_block_start" in second and b"text_delta" in second


def test_a_cut_chat_stream_is_an_error() -> None:
    request, _ = ANSWERS["text"]
    chunks = chat_chunks(chat_plan(request, orjson.dumps(request)))
    tr = ChatStreamTranslator()
    tr.feed(b"".join(chunks[:2]))
    with pytest.raises(StreamError, match="before its finish reason"):
        tr.end()


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return b"data: " + orjson.dumps({"id": "x", "choices": [choice]}) + b"\n\n"


def _call(index: int, args: str, name: str | None = None) -> bytes:
    fn: dict[str, Any] = {"arguments": args}
    if name:
        fn["name"] = name
    call = {"index": index, **({"id": f"c{index}"} if name else {}), "function": fn}
    return _chunk({"tool_calls": [call]})


def test_interleaved_parallel_calls_come_out_whole_and_in_order() -> None:
    """A provider may send the argument fragments of parallel calls mixed;
    Anthropic's blocks are sequential. The first call streams live, the
    others are given whole when it ends."""
    tr = ChatStreamTranslator()
    live = tr.feed(_call(0, "", "get_weather") + _call(1, "", "get_time") + _call(0, '{"city"'))
    assert b"input_json_delta" in live and b"get_time" not in live  # the second is held
    live += tr.feed(
        _call(1, '{"tz": "UTC"}') + _call(2, '{"q": 1}', "search") + _call(0, ': "Oslo"}')
    )
    assert b'"Oslo' in live and b"search" not in live
    tail = tr.feed(_chunk({}, "tool_calls") + b"data: [DONE]\n\n") + tr.end()
    assert tail.index(b"get_time") < tail.index(b"search")
    message = rebuilt(live + tail)
    assert [(b["name"], b["input"]) for b in message["content"]] == [
        ("get_weather", {"city": "Oslo"}),
        ("get_time", {"tz": "UTC"}),
        ("search", {"q": 1}),
    ]
    assert message["stop_reason"] == "tool_use"


def test_a_fragment_for_a_call_after_text_followed_it_is_an_error() -> None:
    tr = ChatStreamTranslator()
    tr.feed(_call(0, "", "a") + _chunk({"content": "and now some text"}))
    with pytest.raises(StreamError, match="after text"):
        tr.feed(_call(0, "{}"))


@pytest.mark.parametrize(
    ("status", "error", "want_status", "want_type"),
    [
        (429, chat_error(429, "slow down"), 429, "rate_limit_error"),
        (500, chat_error(500, "boom"), 500, "api_error"),
        (503, chat_error(503, "busy"), 503, "api_error"),
        (
            400,
            chat_error(
                400,
                "This model's maximum context length is 128000 tokens",
                "context_length_exceeded",
            ),
            400,
            "invalid_request_error",
        ),
        (401, chat_error(401, "bad key"), 401, "authentication_error"),
        (404, b"not json", 404, "not_found_error"),
    ],
)
def test_errors_take_anthropics_shape(
    status: int, error: bytes, want_status: int, want_type: str
) -> None:
    got_status, body = to_error(status, error, "req_1")
    doc = orjson.loads(body)
    assert got_status == want_status and doc["type"] == "error"
    assert doc["error"]["type"] == want_type and doc["error"]["message"]
    assert doc["request_id"] == "req_1"
