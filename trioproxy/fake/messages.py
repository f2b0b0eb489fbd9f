"""Pure builders for fake Messages API responses: JSON bodies and SSE events."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

import orjson

ECHO_PREFIX = "repeat after me: "
DEFAULT_TEXT = "Hello from trioproxy's fake upstream! Your proxy streams SSE event by event."
MODELS = ("claude-opus-4-7", "claude-sonnet-4-6", "claude-haiku-4-5")


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    output_tokens: int

    def as_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "output_tokens": self.output_tokens,
        }


@dataclass(frozen=True, slots=True)
class Plan:
    """What one fake response will contain, derived from the request."""

    message_id: str
    model: str
    text: str
    thinking: bool
    tool: dict[str, Any] | None
    usage: Usage
    stop_reason: str = "end_turn"
    stop_sequence: str | None = None


def plan_for(
    request: dict[str, Any],
    raw_body: bytes,
    *,
    text_bytes: int | None = None,
    tools: bool = True,
    max_tokens_cut: bool = False,
) -> Plan:
    """Deterministic: the same request always gets the same answer. With
    ``tools`` it calls the request's first tool (as a model would when told
    to use one), unless the last message carries a tool's result: then it
    answers in text and ends its turn, as a model does, so an agent's tool
    loop (Claude Code's) ends. Without ``tools`` it only ever answers in text."""
    # The same answer whether it is asked for as a stream or not: the id and
    # the input tokens come from the request without its "stream" flag.
    basis = orjson.dumps({k: v for k, v in request.items() if k != "stream"})
    digest = hashlib.sha256(basis).hexdigest()
    model = str(request.get("model") or MODELS[1])
    text = DEFAULT_TEXT
    messages = request.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    content = last.get("content") if isinstance(last, dict) else None
    if isinstance(content, str) and content.startswith(ECHO_PREFIX):
        text = content[len(ECHO_PREFIX) :]  # a model that repeats what it was told
    if text_bytes:
        reps = text_bytes // len(DEFAULT_TEXT) + 1
        text = ((DEFAULT_TEXT + " ") * reps)[:text_bytes]
    offered = request.get("tools") or []
    tool = None
    if (
        tools
        and not _carries_tool_result(content)
        and isinstance(offered, list)
        and offered
        and isinstance(offered[0], dict)
    ):
        tool = {
            "name": str(offered[0].get("name", "tool")),
            "input": {"query": "weather in Paris", "units": "metric"},
        }
    choice = request.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "none":
        tool = None
    thinking = isinstance(request.get("thinking"), dict) and request["thinking"].get("type") in (
        "enabled",
        "adaptive",  # as the model chooses: the fake always does
    )
    stop_reason, stop_sequence = "tool_use" if tool else "end_turn", None
    for seq in request.get("stop_sequences") or []:
        if isinstance(seq, str) and seq and seq in text:
            text, tool = text[: text.index(seq)], None
            stop_reason, stop_sequence = "stop_sequence", seq
            break
    max_tokens = request.get("max_tokens")
    if (
        max_tokens_cut
        and isinstance(max_tokens, int)
        and 0 < max_tokens < len(text) // 4 + (20 if tool else 0)
    ):
        # About four characters a token, as the usage below counts them.
        text, tool = text[: max_tokens * 4], None
        stop_reason, stop_sequence = "max_tokens", None
    input_tokens = max(1, len(basis) // 4)
    cached = b'"cache_control"' in raw_body
    usage = Usage(
        input_tokens=input_tokens if not cached else max(1, input_tokens // 4),
        cache_creation_input_tokens=(input_tokens // 2) if cached else 0,
        cache_read_input_tokens=(input_tokens // 4) if cached else 0,
        output_tokens=max(1, len(text) // 4) + (20 if tool else 0) + (10 if thinking else 0),
    )
    return Plan(
        f"msg_fake_{digest[:24]}", model, text, thinking, tool, usage, stop_reason, stop_sequence
    )


def with_call(plan: Plan, request: dict[str, Any], call: tuple[str, dict[str, Any]] | None) -> Plan:
    """``plan`` answering with ``call`` (a tool name and its input) when the
    request offers that tool and its last message is not already its
    result: a model that uses one given tool, once."""
    if call is None or not offers(request, call[0]) or answered(request):
        return plan
    return replace(plan, tool={"name": call[0], "input": call[1]}, stop_reason="tool_use")


def offers(request: dict[str, Any], name: str) -> bool:
    """Whether the request offers a tool of that name."""
    return any(isinstance(t, dict) and t.get("name") == name for t in request.get("tools") or [])


def answered(request: dict[str, Any]) -> bool:
    """Whether the request's last message carries a tool's result."""
    messages = request.get("messages") or []
    last = messages[-1] if isinstance(messages, list) and messages else None
    return _carries_tool_result(last.get("content") if isinstance(last, dict) else None)


def _carries_tool_result(content: object) -> bool:
    return isinstance(content, list) and any(
        isinstance(block, dict) and block.get("type") == "tool_result" for block in content
    )


def _content(plan: Plan) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if plan.thinking:
        blocks.append(
            {"type": "thinking", "thinking": "Let me think about that.", "signature": "fakesig=="}
        )
    blocks.append({"type": "text", "text": plan.text})
    if plan.tool:
        blocks.append(
            {
                "type": "tool_use",
                "id": "toolu_fake_01",
                "name": plan.tool["name"],
                "input": plan.tool["input"],
            }
        )
    return blocks


def message_json(plan: Plan) -> bytes:
    return orjson.dumps(
        {
            "id": plan.message_id,
            "type": "message",
            "role": "assistant",
            "model": plan.model,
            "content": _content(plan),
            "stop_reason": plan.stop_reason,
            "stop_sequence": plan.stop_sequence,
            "usage": plan.usage.as_dict(),
        }
    )


def sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def stream_events(plan: Plan, *, delta_chars: int = 24) -> list[bytes]:
    """The exact event sequence of a streaming Messages response."""
    u = plan.usage
    start_usage = {**u.as_dict(), "output_tokens": 1}
    out = [
        sse(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": plan.message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": plan.model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage,
                },
            },
        )
    ]
    index = 0
    if plan.thinking:
        out.append(
            sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                },
            )
        )
        out.append(
            sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "thinking_delta", "thinking": "Let me think about that."},
                },
            )
        )
        out.append(
            sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "signature_delta", "signature": "fakesig=="},
                },
            )
        )
        out.append(sse("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    out.append(
        sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "text", "text": ""},
            },
        )
    )
    out.append(sse("ping", {"type": "ping"}))
    for piece in _chunks(plan.text, delta_chars):
        out.append(
            sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "text_delta", "text": piece},
                },
            )
        )
    out.append(sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    if plan.tool:
        index += 1
        out.append(
            sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {
                        "type": "tool_use",
                        "id": "toolu_fake_01",
                        "name": plan.tool["name"],
                        "input": {},
                    },
                },
            )
        )
        for piece in _chunks(orjson.dumps(plan.tool["input"]).decode(), 12):
            out.append(
                sse(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": piece},
                    },
                )
            )
        out.append(sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    out.append(
        sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": plan.stop_reason, "stop_sequence": plan.stop_sequence},
                "usage": u.as_dict(),  # cumulative, as the real API sends it
            },
        )
    )
    out.append(sse("message_stop", {"type": "message_stop"}))
    return out


def error_json(error_type: str, message: str, request_id: str) -> bytes:
    return orjson.dumps(
        {
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": request_id,
        }
    )


def models_json() -> bytes:
    return orjson.dumps(
        {
            "data": [
                {
                    "type": "model",
                    "id": m,
                    "display_name": m.replace("-", " ").title(),
                    "created_at": "2025-01-01T00:00:00Z",
                }
                for m in MODELS
            ],
            "has_more": False,
            "first_id": MODELS[0],
            "last_id": MODELS[-1],
        }
    )
