"""A Messages request as a Chat Completions request (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

# What happens to each Anthropic feature without a Chat Completions
# equivalent: "dropped" (the request goes on; the access line notes it) or
# "refused" (400 invalid_request_error naming it: dropping it would change
# the answer the caller asked for).
FEATURES: dict[str, tuple[str, str]] = {
    "cache_control": ("dropped", "prompt caching markers; the provider caches (or not) on its own"),
    "thinking blocks in the history": ("dropped", "signed by another model; meaningless elsewhere"),
    "thinking": ("dropped", "unless the provider takes `reasoning_effort` (`reasoning = true`)"),
    "top_k": ("dropped", "no equivalent"),
    "document": ("refused", "PDF and text documents have no Chat Completions equivalent"),
    "server tools": ("refused", "web search, code execution and the like run on Anthropic's side"),
    "image in a tool result": ("refused", "tool messages carry text only"),
    "container, mcp_servers": ("refused", "Anthropic-hosted features"),
}
REFUSED_TOP = ("container", "mcp_servers")
DROPPED_TOP = ("top_k", "context_management", "service_tier", "output_config")


class Untranslatable(ValueError):
    """The request uses a feature with no equivalent that must not be dropped.
    ``capability``: the gateway guide's class for it (``document_block``,
    ``image_block``), for a client that can drop the feature and retry."""

    def __init__(self, message: str, capability: str = "") -> None:
        super().__init__(message)
        self.capability = capability


@dataclass
class Translated:
    body: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # features dropped, for the access line

    def note(self, what: str) -> None:
        if what not in self.notes:
            self.notes.append(what)


def reasoning_effort(budget: int) -> str:
    """Anthropic's thinking budget, as the effort levels reasoning models take."""
    return "low" if budget < 4096 else "medium" if budget < 16384 else "high"


def to_chat(doc: dict[str, Any], model: str, *, reasoning: bool = False) -> Translated:
    """``doc``: the Messages request; ``model``: the provider's model name."""
    for key in REFUSED_TOP:
        if key in doc:
            raise Untranslatable(f"{key} has no equivalent on an OpenAI-compatible provider")
    out = Translated({"model": model})
    body = out.body
    messages: list[dict[str, Any]] = []
    system = doc.get("system")
    if system:
        messages.append({"role": "system", "content": _system_text(system, out)})
    for i, m in enumerate(doc.get("messages") or []):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant", "system"):
            raise Untranslatable(f"messages[{i}]: expected a user, assistant or system message")
        if m["role"] == "user":
            messages.extend(_user(m.get("content"), out, i))
        elif m["role"] == "system":  # Claude Code sends one mid-conversation
            messages.append({"role": "system", "content": _system_text(m.get("content"), out)})
        else:
            messages.append(_assistant(m.get("content"), out))
    body["messages"] = messages
    if "max_tokens" in doc:
        body["max_tokens"] = doc["max_tokens"]
    for key in ("temperature", "top_p"):
        if key in doc:
            body[key] = doc[key]
    if doc.get("stop_sequences"):
        body["stop"] = list(doc["stop_sequences"])
    user = (doc.get("metadata") or {}).get("user_id")
    if isinstance(user, str) and user:
        body["user"] = user[:256]
    if doc.get("tools"):
        body["tools"] = [_tool(t, out) for t in doc["tools"]]
    if (choice := doc.get("tool_choice")) is not None:
        _tool_choice(choice, body)
    thinking = doc.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        if reasoning:
            body["reasoning_effort"] = reasoning_effort(int(thinking.get("budget_tokens") or 0))
        else:
            out.note("thinking")
    for key in DROPPED_TOP:
        if key in doc:
            out.note(key)
    if doc.get("stream") is True:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return out


def _system_text(system: object, out: Translated) -> str:
    if isinstance(system, str):
        return system
    parts = []
    for b in system if isinstance(system, list) else []:
        if isinstance(b, dict) and b.get("type") == "text":
            if "cache_control" in b:
                out.note("cache_control")
            parts.append(str(b.get("text", "")))
    return "\n\n".join(parts)


def _blocks(content: object) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _user(content: object, out: Translated, i: int) -> list[dict[str, Any]]:
    """One user turn: its tool results first (each a ``tool`` message, as
    Chat Completions wants them right after the assistant's calls), then
    what the user said."""
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for b in _blocks(content):
        if "cache_control" in b:
            out.note("cache_control")
        kind = b.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": str(b.get("text", ""))})
        elif kind == "image":
            parts.append({"type": "image_url", "image_url": {"url": _image_url(b, i)}})
        elif kind == "tool_result":
            tools.append(_tool_result(b, i))
        elif kind == "document":
            raise Untranslatable(
                f"messages[{i}]: document blocks have no equivalent here", "document_block"
            )
        else:
            raise Untranslatable(f"messages[{i}]: {kind} blocks have no equivalent here")
    out_messages = list(tools)
    if parts:
        only_text = all(p["type"] == "text" for p in parts)
        content_out: Any = "\n\n".join(p["text"] for p in parts) if only_text else parts
        out_messages.append({"role": "user", "content": content_out})
    return out_messages


def _image_url(b: dict[str, Any], i: int) -> str:
    src = b.get("source") or {}
    if src.get("type") == "base64":
        return f"data:{src.get('media_type', 'image/png')};base64,{src.get('data', '')}"
    if src.get("type") == "url":
        return str(src.get("url", ""))
    raise Untranslatable(
        f"messages[{i}]: an image source of type {src.get('type')!r}", "image_block"
    )


def _tool_result(b: dict[str, Any], i: int) -> dict[str, Any]:
    content = b.get("content")
    texts = []
    for part in _blocks(content) if content is not None else []:
        if part.get("type") == "text":
            texts.append(str(part.get("text", "")))
        elif part.get("type") == "image":
            raise Untranslatable(
                f"messages[{i}]: an image in a tool result has no equivalent here", "image_block"
            )
    text = "\n".join(texts)
    if b.get("is_error"):
        text = "Error: " + text
    return {"role": "tool", "tool_call_id": str(b.get("tool_use_id", "")), "content": text}


def _assistant(content: object, out: Translated) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for b in _blocks(content):
        kind = b.get("type")
        if kind == "text":
            texts.append(str(b.get("text", "")))
        elif kind == "tool_use":
            calls.append(
                {
                    "id": str(b.get("id", "")),
                    "type": "function",
                    "function": {
                        "name": str(b.get("name", "")),
                        "arguments": orjson.dumps(b.get("input", {})).decode(),
                    },
                }
            )
        elif kind in ("thinking", "redacted_thinking"):
            out.note("thinking blocks in the history")
        else:
            raise Untranslatable(f"an assistant {kind} block has no equivalent here")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool(t: object, out: Translated) -> dict[str, Any]:
    if not isinstance(t, dict):
        raise Untranslatable("tools: expected tool objects")
    if t.get("type") not in (None, "custom") or "input_schema" not in t:
        raise Untranslatable(
            f"server tool {t.get('name') or t.get('type')!r} runs on Anthropic's side"
        )
    if "cache_control" in t:
        out.note("cache_control")
    fn: dict[str, Any] = {"name": t.get("name"), "parameters": t["input_schema"]}
    if t.get("description"):
        fn["description"] = t["description"]
    return {"type": "function", "function": fn}


def _tool_choice(choice: object, body: dict[str, Any]) -> None:
    if not isinstance(choice, dict):
        raise Untranslatable("tool_choice: expected an object")
    kind = choice.get("type")
    if kind == "auto":
        body["tool_choice"] = "auto"
    elif kind == "any":
        body["tool_choice"] = "required"
    elif kind == "none":
        body["tool_choice"] = "none"
    elif kind == "tool":
        body["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    else:
        raise Untranslatable(f"tool_choice {kind!r} has no equivalent here")
    if choice.get("disable_parallel_tool_use") and body.get("tools"):
        body["parallel_tool_calls"] = False
