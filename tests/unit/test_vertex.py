"""Vertex AI's dialect, sans-IO: the rawPredict body and path, and
Google's errors in Anthropic's shape (Claude's own passing as they are)."""

from __future__ import annotations

import orjson
import pytest

from trioproxy.bedrock.request import BEDROCK_BRIDGE
from trioproxy.vertex.errors import from_answer
from trioproxy.vertex.request import count_tokens_path, predict_body, predict_path

BODY = (
    b'{"model":"claude-opus-5-5","max_tokens":100,"stream":true,'
    b'"messages":[{"role":"user","content":"hi","n":12345678901234567890}],'
    b'"tools":[{"name":"a","input_schema":{},"defer_loading":true}],'
    b'"context_management":{"edits":[]}}'
)


def test_the_predict_body_keeps_stream_drops_model_and_the_bridge() -> None:
    betas = ["claude-code-20250219", "context-management-2025-06-27", "tool-search-tool-2025-10-19"]
    out, kept, dropped = predict_body(BODY, orjson.loads(BODY), betas, BEDROCK_BRIDGE)
    doc = orjson.loads(out)
    assert (
        next(iter(doc)) == "anthropic_version" and doc["anthropic_version"] == "vertex-2023-10-16"
    )
    assert "model" not in doc and doc["stream"] is True
    assert "context_management" not in doc and doc["tools"] == [{"name": "a", "input_schema": {}}]
    assert b'"n":12345678901234567890' in out
    assert kept == ["claude-code-20250219"]
    assert set(dropped) == {
        "context-management-2025-06-27",
        "tool-search-tool-2025-10-19",
        "context_management",
        "tools[].defer_loading",
    }


def test_token_counting_keeps_the_model() -> None:
    out, _, _ = predict_body(BODY, orjson.loads(BODY), [], BEDROCK_BRIDGE, keep_model=True)
    assert orjson.loads(out)["model"] == "claude-opus-5-5"


def test_paths() -> None:
    assert predict_path("p-1", "global", "claude-opus-5-5@20261101", stream=True) == (
        b"/v1/projects/p-1/locations/global/publishers/anthropic/models/"
        b"claude-opus-5-5@20261101:streamRawPredict"
    )
    assert predict_path("p-1", "us-east5", "claude-opus-5-5", stream=False).endswith(b":rawPredict")
    assert count_tokens_path("p-1", "us-east5").endswith(b"/models/count-tokens:rawPredict")


@pytest.mark.parametrize(
    ("status", "google", "mapped", "kind"),
    [
        (429, "RESOURCE_EXHAUSTED", 429, "rate_limit_error"),
        (503, "UNAVAILABLE", 529, "overloaded_error"),
        (400, "INVALID_ARGUMENT", 400, "invalid_request_error"),
        (403, "PERMISSION_DENIED", 403, "permission_error"),
        (401, "UNAUTHENTICATED", 401, "authentication_error"),
        (404, "NOT_FOUND", 404, "not_found_error"),
    ],
)
def test_google_s_errors_map_to_anthropic_s(
    status: int, google: str, mapped: int, kind: str
) -> None:
    raw = orjson.dumps(
        {"error": {"code": status, "message": "words from Google", "status": google}}
    )
    got = from_answer(status, raw, "req_9")
    assert got is not None
    assert got[0] == mapped
    assert orjson.loads(got[1]) == {
        "type": "error",
        "error": {"type": kind, "message": "words from Google"},
        "request_id": "req_9",
    }


def test_claude_s_own_error_passes_and_a_long_prompt_carries_the_token() -> None:
    own = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    assert from_answer(529, own) is None
    raw = orjson.dumps(
        {
            "error": {
                "code": 400,
                "message": "prompt is too long: 300000 tokens",
                "status": "INVALID_ARGUMENT",
            }
        }
    )
    got = from_answer(400, raw)
    assert got is not None and "capability_rejected: prompt_too_long" in got[1].decode()
    assert from_answer(502, b"<html>bad gateway</html>") == (
        502,
        b'{"type":"error","error":{"type":"api_error","message":"<html>bad gateway</html>"}}',
    )
