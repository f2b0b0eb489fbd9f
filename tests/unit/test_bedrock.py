"""Bedrock's dialect, sans-IO: the request body and path, the event
stream as SSE, and its errors in Anthropic's shape."""

from __future__ import annotations

import base64

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trioproxy.bedrock.errors import from_json_answer, mapped_error
from trioproxy.bedrock.request import (
    count_tokens_answer,
    count_tokens_body,
    invoke_body,
    invoke_path,
    split_betas,
)
from trioproxy.bedrock.stream import EventStreamToSSE, StreamError
from trioproxy.fake.messages import plan_for, stream_events
from trioproxy.proto.eventstream import encode_message
from trioproxy.proto.sse import SSEParser
from trioproxy.rules.wording import PROMPT_TOO_LONG

# As Claude Code sends it: a 64-bit integer and odd spacing that must survive.
BODY = (
    b'{"model": "claude-opus-5-5","max_tokens":32000,"stream":true,'
    b'"messages":[{"role":"user","content":"hi","n":12345678901234567890}],'
    b'"tools":[{"name":"a","input_schema":{},"strict":true},'
    b'{"name":"b","input_schema":{},"defer_loading":true},{"name":"c","input_schema":{}}],'
    b'"context_management":{"edits":[]},"output_config":{"effort":"high"},'
    b'"metadata":{"user_id":"u"}}'
)
BETAS = [
    "claude-code-20250219",
    "context-management-2025-06-27",
    "effort-2025-11-24",
    "interleaved-thinking-2025-05-14",
    "advanced-tool-use-2025-11-20",
]


def test_the_invoke_body_drops_each_rejected_field_with_its_betas() -> None:
    out, dropped = invoke_body(BODY, orjson.loads(BODY), BETAS)
    doc = orjson.loads(out)
    assert list(doc)[:2] == ["anthropic_version", "anthropic_beta"]
    assert doc["anthropic_version"] == "bedrock-2023-05-31"
    assert doc["anthropic_beta"] == ["claude-code-20250219", "interleaved-thinking-2025-05-14"]
    assert "model" not in doc and "stream" not in doc
    assert "context_management" not in doc and "output_config" not in doc
    assert doc["tools"] == [
        {"name": "a", "input_schema": {}},
        {"name": "b", "input_schema": {}},
        {"name": "c", "input_schema": {}},
    ]
    assert doc["metadata"] == {"user_id": "u"}
    assert b'"n":12345678901234567890' in out  # every other byte as sent
    assert set(dropped) == {
        "context-management-2025-06-27",
        "effort-2025-11-24",
        "advanced-tool-use-2025-11-20",
        "context_management",
        "output_config",
        "tools[].strict",
        "tools[].defer_loading",
    }


def test_a_field_goes_even_without_its_beta_and_a_beta_without_its_field() -> None:
    body = b'{"model":"m","messages":[],"context_management":{}}'
    out, _ = invoke_body(body, orjson.loads(body), ["effort-2025-11-24"])
    assert orjson.loads(out) == {"anthropic_version": "bedrock-2023-05-31", "messages": []}


def test_a_body_that_is_only_model_and_stream() -> None:
    body = b'{"model":"m","stream":false}'
    out, _ = invoke_body(body, orjson.loads(body), [])
    assert out == b'{"anthropic_version":"bedrock-2023-05-31"}'


def test_the_body_s_own_anthropic_beta_joins_the_header_s() -> None:
    body = b'{"anthropic_beta":["x-1","context-management-1"],"messages":[]}'
    out, dropped = invoke_body(body, orjson.loads(body), ["y-2", "x-1"])
    assert orjson.loads(out)["anthropic_beta"] == ["y-2", "x-1"]
    assert dropped == ["context-management-1"]


def test_paths_and_betas() -> None:
    assert (
        invoke_path("us.anthropic.claude-opus-5-5-v1:0", stream=True)
        == b"/model/us.anthropic.claude-opus-5-5-v1%3A0/invoke-with-response-stream"
    )
    arn = "arn:aws:bedrock:us-east-1:123:inference-profile/x"
    assert invoke_path(arn, stream=False).endswith(b"%2Fx/invoke")
    assert split_betas([b"a, b", b"b,c"]) == ["a", "b", "c"]


def test_count_tokens_wraps_and_unwraps() -> None:
    doc = orjson.loads(count_tokens_body(b'{"messages":[]}'))
    assert base64.b64decode(doc["input"]["invokeModel"]["body"]) == b'{"messages":[]}'
    assert count_tokens_answer(b'{"inputTokens":42}') == b'{"input_tokens":42}'
    assert count_tokens_answer(b"nope") is None


# -- the stream ------------------------------------------------------------------------

SSE = b"".join(
    stream_events(plan_for({"model": "m", "tools": [{"name": "t"}], "thinking": {}}, b"{}"))
)


def _frames(sse: bytes, padding: bool = True) -> bytes:
    """Bedrock's frames for an SSE stream: each event's data as a chunk."""
    out = []
    for ev in SSEParser().feed(sse):
        if ev.event == b"ping":
            continue  # Bedrock sends none
        payload = {"bytes": base64.b64encode(ev.data).decode()}
        if padding:
            payload["p"] = "abcdefghij"
        headers = {
            ":event-type": "chunk",
            ":content-type": "application/json",
            ":message-type": "event",
        }
        out.append(encode_message(headers, orjson.dumps(payload)))
    return b"".join(out)


FRAMES = _frames(SSE)
WITHOUT_PINGS = b"".join(
    b"event: " + e.event + b"\ndata: " + e.data + b"\n\n"
    for e in SSEParser().feed(SSE)
    if e.event != b"ping"
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(FRAMES)), max_size=30))
def test_frames_become_the_same_sse_in_any_chunking(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [FRAMES[a:b] for a, b in zip([0, *points], [*points, len(FRAMES)], strict=True)]
    t = EventStreamToSSE()
    out = b"".join(t.feed(c) for c in chunks) + t.end()
    assert out == WITHOUT_PINGS


def test_an_exception_frame_is_anthropic_s_error_event_and_ends_the_stream() -> None:
    throttled = encode_message(
        {":message-type": "exception", ":exception-type": "throttlingException"},
        b'{"message":"Too many tokens, please wait before trying again."}',
    )
    t = EventStreamToSSE()
    first = int.from_bytes(FRAMES[:4], "big")  # the first frame's length
    out = t.feed(FRAMES[:first] + throttled + FRAMES[first:])
    assert out.startswith(b"event: message_start\n") and out.count(b"event: ") == 2
    name, data = out.rsplit(b"event: ", 1)[1].split(b"\ndata: ")
    assert name == b"error" and t.ended
    error = orjson.loads(data)["error"]
    assert error == {
        "type": "rate_limit_error",
        "message": "Too many tokens, please wait before trying again.",
    }


@pytest.mark.parametrize(
    "raw",
    [
        encode_message({":message-type": "event", ":event-type": "chunk"}, b'{"bytes":"!!"}'),
        encode_message({":message-type": "event", ":event-type": "chunk"}, b"not json"),
        FRAMES[:-1] + bytes([FRAMES[-1] ^ 1]),
    ],
)
def test_a_broken_frame_cuts_the_stream(raw: bytes) -> None:
    with pytest.raises(StreamError):
        EventStreamToSSE().feed(raw)


def test_half_a_frame_at_the_end_is_a_cut() -> None:
    t = EventStreamToSSE()
    t.feed(FRAMES[:-3])
    with pytest.raises(StreamError, match="inside a frame"):
        t.end()


# -- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "kind"),
    [
        ("ThrottlingException", 429, "rate_limit_error"),
        ("throttlingException", 429, "rate_limit_error"),
        ("ServiceUnavailableException", 529, "overloaded_error"),
        ("ModelNotReadyException", 529, "overloaded_error"),
        ("ValidationException", 400, "invalid_request_error"),
        ("AccessDeniedException", 403, "permission_error"),
        ("com.amazon.coral.service#InternalServerException:", 500, "api_error"),
    ],
)
def test_aws_errors_map_to_anthropic_s(name: str, status: int, kind: str) -> None:
    got_status, body = mapped_error(name, 418, "words from AWS", "req_1")
    assert got_status == status
    assert orjson.loads(body) == {
        "type": "error",
        "error": {"type": kind, "message": "words from AWS"},
        "request_id": "req_1",
    }


def test_a_prompt_too_long_carries_the_capability_token() -> None:
    status, body = from_json_answer(
        400,
        "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/",
        b'{"message":"prompt is too long: 210000 tokens > 200000 maximum"}',
    )
    message = orjson.loads(body)["error"]["message"]
    assert status == 400 and message.startswith("prompt is too long: 210000 tokens")
    assert PROMPT_TOO_LONG in message
