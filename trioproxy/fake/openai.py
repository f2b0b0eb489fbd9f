"""Pure builders for fake Chat Completions answers: the JSON body and the
SSE chunks of the same answer, with tool calls (parallel ones too), usage
with cached tokens, and the error shape."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from trioproxy.fake.messages import DEFAULT_TEXT


@dataclass(frozen=True, slots=True)
class ChatPlan:
    chat_id: str
    model: str
    text: str
    calls: tuple[dict[str, Any], ...] = field(default=())  # {"id", "name", "arguments"}
    finish: str = "stop"
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0


def chat_plan(
    request: dict[str, Any],
    raw: bytes,
    *,
    parallel: bool = False,
    tools_used: bool = True,
    call: tuple[str, dict[str, Any]] | None = None,
) -> ChatPlan:
    """Deterministic, like the Anthropic fake: the first tool is called when
    tools are offered (and not refused by tool_choice "none", or by
    ``tools_used``); ``parallel`` calls the first two. ``call`` (name,
    arguments): call that tool instead, once: not after a tool result."""
    basis = orjson.dumps(
        {k: v for k, v in request.items() if k not in ("stream", "stream_options")}
    )
    digest = hashlib.sha256(basis).hexdigest()
    tools = [t for t in request.get("tools") or [] if isinstance(t, dict)]
    calls: list[dict[str, Any]] = []
    history = [m for m in request.get("messages") or [] if isinstance(m, dict)]
    answered = any(m.get("role") == "tool" for m in history)
    offered = {(t.get("function") or {}).get("name") for t in tools}
    # Ids differ per answer, as a real provider's do: a translation that
    # replaced them with anything else would pair results with wrong calls.
    if call is not None and call[0] in offered and not answered:
        arguments = orjson.dumps(call[1]).decode()
        calls.append({"id": f"call_{digest[:16]}_0", "name": call[0], "arguments": arguments})
    elif tools and tools_used and call is None and request.get("tool_choice") != "none":
        for n, t in enumerate(tools[: 2 if parallel else 1]):
            calls.append(
                {
                    "id": f"call_{digest[:16]}_{n}",
                    "name": (t.get("function") or {}).get("name", "tool"),
                    "arguments": orjson.dumps({"query": "weather in Paris", "n": n}).decode(),
                }
            )
    text = "" if calls else DEFAULT_TEXT
    finish = "tool_calls" if calls else "stop"
    max_tokens = request.get("max_tokens")
    if isinstance(max_tokens, int) and not calls and max_tokens * 4 < len(text):
        text, finish = text[: max_tokens * 4], "length"
    prompt = max(1, len(basis) // 4)
    cached = prompt // 2 if b"cache" in raw else 0
    return ChatPlan(
        f"chatcmpl-{digest[:20]}",
        str(request.get("model") or "gpt-fake"),
        text,
        tuple(calls),
        finish,
        prompt,
        cached,
        max(1, len(text) // 4) + 10 * len(calls),
    )


def _usage(plan: ChatPlan) -> dict[str, Any]:
    return {
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": plan.completion_tokens,
        "total_tokens": plan.prompt_tokens + plan.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": plan.cached_tokens},
    }


def chat_json(plan: ChatPlan) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": plan.text or None}
    if plan.calls:
        message["tool_calls"] = [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": c["arguments"]},
            }
            for c in plan.calls
        ]
    return orjson.dumps(
        {
            "id": plan.chat_id,
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": plan.model,
            "choices": [{"index": 0, "message": message, "finish_reason": plan.finish}],
            "usage": _usage(plan),
        }
    )


def chat_chunks(plan: ChatPlan, *, piece: int = 7) -> list[bytes]:
    """The SSE of the same answer, ``data:`` lines as OpenAI sends them."""

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        doc = {
            "id": plan.chat_id,
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": plan.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return b"data: " + orjson.dumps(doc) + b"\n\n"

    out = [chunk({"role": "assistant", "content": ""})]
    for i in range(0, len(plan.text), piece):
        out.append(chunk({"content": plan.text[i : i + piece]}))
    for n, c in enumerate(plan.calls):
        out.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": n,
                            "id": c["id"],
                            "type": "function",
                            "function": {"name": c["name"], "arguments": ""},
                        }
                    ]
                }
            )
        )
        args = c["arguments"]
        for i in range(0, len(args), piece):
            out.append(
                chunk(
                    {"tool_calls": [{"index": n, "function": {"arguments": args[i : i + piece]}}]}
                )
            )
    out.append(chunk({}, plan.finish))
    usage = {
        "id": plan.chat_id,
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": plan.model,
        "choices": [],
        "usage": _usage(plan),
    }
    out.append(b"data: " + orjson.dumps(usage) + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return out


def chat_error(status: int, message: str, code: str = "") -> bytes:
    kind = (
        "rate_limit_exceeded"
        if status == 429
        else "invalid_request_error"
        if status < 500
        else "server_error"
    )
    return orjson.dumps(
        {"error": {"message": message, "type": kind, "param": None, "code": code or None}}
    )
