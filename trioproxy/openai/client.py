"""Clients that speak Chat Completions to the proxy (``POST /v1/chat/completions``:
the OpenAI SDKs and the tools built on them), sans-IO: the reverse of
request.py, answer.py and stream.py.

The request becomes a Messages request: system messages the ``system``,
text and image parts blocks, an assistant's ``tool_calls`` ``tool_use``
blocks (their ids kept), ``tool`` messages ``tool_result`` blocks (several
in a row one user turn, as Anthropic wants them), ``tools`` and every
``tool_choice``, ``max_tokens`` / ``max_completion_tokens``, ``stop``,
``temperature``, ``top_p``, ``user``, ``stream``. What has no equivalent is
refused with a 400 naming it (``n`` > 1, logprobs, audio, a JSON schema).

The answer comes back in Chat Completions' shapes: a Message as one
``chat.completion`` (tool calls with their ids, stop reasons mapped, usage
with cached prompt tokens), a stream as ``chat.completion.chunk`` events
ending in ``[DONE]`` (with ``stream_options.include_usage`` a last chunk
with the usage), errors as OpenAI's ``{"error": {...}}``.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from trioproxy.proto.sse import SSEParser

DEFAULT_MAX_TOKENS = 4096  # Chat Completions may leave it out; Messages may not
FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
}
_REFUSED = ("logprobs", "top_logprobs", "audio", "modalities", "prediction", "logit_bias")


class Untranslatable(ValueError):
    """A request with no Messages equivalent: a 400 naming what."""


def to_messages(doc: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(the Messages request, whether the client wants usage in its stream)."""
    for key in _REFUSED:
        if doc.get(key) not in (None, False, [], {}):
            raise Untranslatable(f"{key}: not supported by this proxy's Messages providers")
    if int(doc.get("n") or 1) != 1:
        raise Untranslatable("n: only one choice can be asked for")
    fmt = doc.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") not in (None, "text"):
        raise Untranslatable(f"response_format {fmt.get('type')!r}: not supported")
    model = doc.get("model")
    if not isinstance(model, str) or not model:
        raise Untranslatable("model: required")
    messages = doc.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Untranslatable("messages: required, a non-empty list")
    out: dict[str, Any] = {
        "model": model,
        "max_tokens": int(
            doc.get("max_completion_tokens") or doc.get("max_tokens") or DEFAULT_MAX_TOKENS
        ),
    }
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise Untranslatable(f"messages.{i}: expected an object")
        role = m.get("role")
        if role in ("system", "developer"):
            system.append(_text(m.get("content"), f"messages.{i}.content"))
        elif role == "user":
            _append(turns, "user", _parts(m.get("content"), f"messages.{i}.content"))
        elif role == "assistant":
            blocks = _parts(m.get("content"), f"messages.{i}.content") if m.get("content") else []
            for call in m.get("tool_calls") or []:
                blocks.append(_tool_use(call, f"messages.{i}.tool_calls"))
            _append(turns, "assistant", blocks)
        elif role == "tool":
            result = {
                "type": "tool_result",
                "tool_use_id": str(m.get("tool_call_id") or ""),
                "content": _text(m.get("content"), f"messages.{i}.content"),
            }
            _append(turns, "user", [result])
        else:
            raise Untranslatable(f"messages.{i}.role: {role!r} is not supported")
    if system:
        out["system"] = "\n\n".join(system)
    out["messages"] = turns
    for src, dst in (("temperature", "temperature"), ("top_p", "top_p")):
        if doc.get(src) is not None:
            out[dst] = doc[src]
    stop = doc.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if isinstance(doc.get("user"), str):
        out["metadata"] = {"user_id": doc["user"]}
    tools = doc.get("tools")
    if tools:
        out["tools"] = [_tool(t, f"tools.{n}") for n, t in enumerate(tools)]
    choice = doc.get("tool_choice")
    if choice is not None and tools:
        out["tool_choice"] = _tool_choice(choice)
    if doc.get("parallel_tool_calls") is False and "tool_choice" in out:
        out["tool_choice"]["disable_parallel_tool_use"] = True
    usage = False
    if doc.get("stream") is True:
        out["stream"] = True
        opts = doc.get("stream_options")
        usage = isinstance(opts, dict) and opts.get("include_usage") is True
    return out, usage


def _append(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Consecutive turns of one role are one (Anthropic alternates roles)."""
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": list(blocks)})


def _text(content: object, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    if content is None:
        return ""
    raise Untranslatable(f"{where}: expected text")


def _parts(content: object, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise Untranslatable(f"{where}: expected text or a list of parts")
    blocks: list[dict[str, Any]] = []
    for n, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            blocks.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind == "image_url":
            blocks.append(_image(part.get("image_url"), f"{where}.{n}"))
        else:
            raise Untranslatable(f"{where}.{n}: a part of type {kind!r} is not supported")
    return blocks


def _image(spec: object, where: str) -> dict[str, Any]:
    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str):
        raise Untranslatable(f"{where}.image_url: expected a URL")
    if url.startswith("data:"):
        head, _, data = url.partition(",")
        media = head[5:].split(";")[0]
        if ";base64" not in head or not media:
            raise Untranslatable(f"{where}.image_url: a data URL must be base64")
        return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _tool_use(call: object, where: str) -> dict[str, Any]:
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(call, dict) or not isinstance(fn, dict):
        raise Untranslatable(f"{where}: expected function calls")
    try:
        args = orjson.loads(fn.get("arguments") or "{}")
    except orjson.JSONDecodeError:
        raise Untranslatable(f"{where}: arguments are not JSON") from None
    return {
        "type": "tool_use",
        "id": str(call.get("id") or ""),
        "name": str(fn.get("name", "")),
        "input": args,
    }


def _tool(tool: object, where: str) -> dict[str, Any]:
    fn = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise Untranslatable(f"{where}: only function tools are supported")
    out: dict[str, Any] = {
        "name": fn["name"],
        "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
    }
    if fn.get("description"):
        out["description"] = fn["description"]
    return out


def _tool_choice(choice: object) -> dict[str, Any]:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    fn = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(fn, dict) and isinstance(fn.get("name"), str):
        return {"type": "tool", "name": fn["name"]}
    raise Untranslatable("tool_choice: not understood")


def usage(u: object) -> dict[str, Any]:
    """Anthropic's four classes as OpenAI's usage (cache reads are cached
    prompt tokens; cache writes count as prompt tokens)."""
    d = u if isinstance(u, dict) else {}
    cached = int(d.get("cache_read_input_tokens") or 0)
    prompt = (
        int(d.get("input_tokens") or 0) + cached + int(d.get("cache_creation_input_tokens") or 0)
    )
    completion = int(d.get("output_tokens") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def chat_id(message_id: object) -> str:
    return "chatcmpl-" + str(message_id or "trioproxy").removeprefix("msg_")


def to_completion(message: dict[str, Any], model: str) -> dict[str, Any]:
    """A Message as one ``chat.completion``."""
    text = "".join(
        b.get("text", "") for b in message.get("content") or [] if b.get("type") == "text"
    )
    calls = [
        {
            "id": b.get("id", ""),
            "type": "function",
            "function": {
                "name": b.get("name", ""),
                "arguments": orjson.dumps(b.get("input", {})).decode(),
            },
        }
        for b in message.get("content") or []
        if b.get("type") == "tool_use"
    ]
    msg: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        msg["tool_calls"] = calls
    return {
        "id": chat_id(message.get("id")),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(message.get("model") or model),
        "choices": [
            {
                "index": 0,
                "message": msg,
                "finish_reason": FINISH.get(str(message.get("stop_reason")), "stop"),
                "logprobs": None,
            }
        ],
        "usage": usage(message.get("usage")),
    }


def to_error(status: int, body: bytes) -> bytes:
    """An Anthropic-shaped error as OpenAI's, its words kept."""
    try:
        doc = orjson.loads(body)
        err = doc.get("error") if isinstance(doc, dict) else None
    except orjson.JSONDecodeError:
        err = None
    kind = str(err.get("type", "")) if isinstance(err, dict) else ""
    message = (
        str(err.get("message", "")) if isinstance(err, dict) else body.decode("utf-8", "replace")
    )
    openai_type = (
        "server_error"
        if status >= 500
        else "rate_limit_error"
        if status == 429
        else "authentication_error"
        if status == 401
        else "invalid_request_error"
    )
    return orjson.dumps(
        {"error": {"message": message, "type": openai_type, "param": None, "code": kind or None}}
    )


class ChunkStream:
    """Anthropic's SSE events as ``chat.completion.chunk`` events, as they
    arrive: text deltas as content, each tool_use block a tool call (its
    argument fragments as they come), the stop reason a finish_reason, then
    (with include_usage) the usage, then ``[DONE]``. Thinking is not sent."""

    def __init__(self, model: str, *, include_usage: bool) -> None:
        self._sse = SSEParser()
        self._model = model
        self._usage_wanted = include_usage
        self._id = "chatcmpl-trioproxy"
        self._created = int(time.time())
        self._calls: dict[int, int] = {}  # Anthropic block index -> tool call index
        self._usage: dict[str, Any] = {}
        self.done = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        doc = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **extra,
        }
        return b"data: " + orjson.dumps(doc) + b"\n\n"

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        for ev in self._sse.feed(data):
            if self.done or ev.event == b"ping":
                continue
            try:
                doc = orjson.loads(ev.data)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(doc, dict):
                continue
            out.append(self._event(ev.event.decode("latin-1"), doc))
        return b"".join(out)

    def _event(self, name: str, doc: dict[str, Any]) -> bytes:
        if name == "message_start":
            message = doc.get("message") or {}
            self._id = chat_id(message.get("id"))
            self._model = str(message.get("model") or self._model)
            self._usage = dict(message.get("usage") or {})
            return self._chunk({"role": "assistant", "content": ""})
        if name == "content_block_start":
            block = doc.get("content_block") or {}
            if block.get("type") == "tool_use":
                n = self._calls[int(doc.get("index", 0))] = len(self._calls)
                call = {
                    "index": n,
                    "id": block.get("id", ""),
                    "type": "function",
                    "function": {"name": block.get("name", ""), "arguments": ""},
                }
                return self._chunk({"tool_calls": [call]})
            return b""
        if name == "content_block_delta":
            delta = doc.get("delta") or {}
            if delta.get("type") == "text_delta":
                return self._chunk({"content": delta.get("text", "")})
            if delta.get("type") == "input_json_delta":
                at = self._calls.get(int(doc.get("index", 0)))
                if at is None:
                    return b""
                frag = {"index": at, "function": {"arguments": delta.get("partial_json", "")}}
                return self._chunk({"tool_calls": [frag]})
            return b""  # thinking, signatures, citations: nothing in Chat Completions
        if name == "message_delta":
            self._usage.update(doc.get("usage") or {})
            stop = (doc.get("delta") or {}).get("stop_reason")
            return self._chunk({}, FINISH.get(str(stop), "stop"))
        if name == "message_stop":
            self.done = True
            tail = b""
            if self._usage_wanted:
                tail = (
                    b"data: "
                    + orjson.dumps(
                        {
                            "id": self._id,
                            "object": "chat.completion.chunk",
                            "created": self._created,
                            "model": self._model,
                            "choices": [],
                            "usage": usage(self._usage),
                        }
                    )
                    + b"\n\n"
                )
            return tail + b"data: [DONE]\n\n"
        if name == "error":
            self.done = True
            err = doc.get("error") or {}
            status = 529 if err.get("type") == "overloaded_error" else 500
            return b"data: " + to_error(status, orjson.dumps(doc)) + b"\n\n"
        return b""
