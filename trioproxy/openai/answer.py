"""A Chat Completions answer as a Message (pure), and the error shapes."""

from __future__ import annotations

import json
from typing import Any

import orjson

from trioproxy.rules.wording import overflows, prompt_too_long, with_token

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
}


class BadAnswer(ValueError):
    """The provider's answer is not Chat Completions as the proxy knows it."""


def usage_of(usage: object) -> dict[str, int]:
    """OpenAI's usage in Anthropic's four classes: cached prompt tokens are
    cache reads, the rest of the prompt is input."""
    u = usage if isinstance(usage, dict) else {}
    prompt = int(u.get("prompt_tokens") or 0)
    details = u.get("prompt_tokens_details")
    cached = int((details or {}).get("cached_tokens") or 0) if isinstance(details, dict) else 0
    return {
        "input_tokens": max(0, prompt - cached),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": int(u.get("completion_tokens") or 0),
    }


def message_id(chat_id: object) -> str:
    text = str(chat_id or "")
    return text if text.startswith("msg_") else "msg_" + (text or "openai")


def to_message(data: bytes) -> bytes:
    """The Message for a Chat Completions JSON answer. Tool call arguments
    are spliced in as the provider's own JSON text."""
    try:
        doc = orjson.loads(data)
        choice = doc["choices"][0]
        msg = choice.get("message") or {}
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
        raise BadAnswer("not a Chat Completions answer") from None
    content: list[dict[str, Any]] = []
    raw: dict[str, str] = {}
    text = msg.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    if isinstance(msg.get("refusal"), str) and msg["refusal"]:
        content.append({"type": "text", "text": msg["refusal"]})
    for n, call in enumerate(msg.get("tool_calls") or []):
        fn = call.get("function") or {}
        args = fn.get("arguments") or "{}"
        try:
            json.loads(args)
        except ValueError:
            raise BadAnswer(f"tool call {n}: arguments are not JSON") from None
        key = f"\x00tool-input-{n}\x00"
        raw[orjson.dumps(key).decode()] = args
        content.append(
            {
                "type": "tool_use",
                "id": str(call.get("id", "")),
                "name": fn.get("name"),
                "input": key,
            }
        )
    finish = choice.get("finish_reason")
    out = orjson.dumps(
        {
            "id": message_id(doc.get("id")),
            "type": "message",
            "role": "assistant",
            "model": doc.get("model", ""),
            "content": content,
            "stop_reason": STOP_REASONS.get(finish, "end_turn"),
            "stop_sequence": None,
            "usage": usage_of(doc.get("usage")),
        }
    ).decode()
    for quoted, args in raw.items():
        out = out.replace(quoted, args, 1)
    return out.encode()


def to_error(status: int, data: bytes, request_id: str = "") -> tuple[int, bytes]:
    """An OpenAI-style error answer in Anthropic's shape: 429 stays 429,
    5xx is ``api_error``, a context-length error is 400 in Anthropic's words
    (rules/wording.py), the provider's kept."""
    try:
        doc = orjson.loads(data)
        err = doc.get("error") if isinstance(doc, dict) else None
    except orjson.JSONDecodeError:
        err = None
    message = ""
    code = ""
    if isinstance(err, dict):
        message = str(err.get("message") or "")
        code = str(err.get("code") or err.get("type") or "")
    elif isinstance(err, str):
        message = err
    if overflows(message, code):  # Claude Code compacts on Anthropic's words for it
        status, message = 400, prompt_too_long(message)
    else:  # other refusals it recovers from: their class's token
        message = with_token(message, status)
    kind = "api_error" if status >= 500 else ERROR_TYPES.get(status, "invalid_request_error")
    body: dict[str, Any] = {
        "type": "error",
        "error": {"type": kind, "message": message or f"the provider answered {status}"},
    }
    if request_id:
        body["request_id"] = request_id
    return status, orjson.dumps(body)
