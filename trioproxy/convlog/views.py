"""Stored rows as documents for the viewer's API and ``log export``
(pure): bodies decompressed and parsed, and a session's requests threaded
into a conversation.

Threading: Claude Code sends the whole history every turn, so a turn's new
messages are those past the previous request's, when this request's
history starts the same way; a request that does not (a subagent, a
``/clear``, a compacted history) starts a new thread in the view.
"""

from __future__ import annotations

from typing import Any

import orjson
import zstandard

from trioproxy.db.base import Row
from trioproxy.db.schema import LOG_SUMMARY
from trioproxy.rules.demote import DemoteFailed, MessageAssembler

_TOKENS = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
)


def summary(row: Row) -> dict[str, Any]:
    """A list entry: what happened, never a body."""
    return {c: _plain(row[c]) for c in LOG_SUMMARY if c in row}


def detail(row: Row, unzstd: zstandard.ZstdDecompressor) -> dict[str, Any]:
    """Everything stored about one request, bodies decoded: JSON parsed,
    an SSE answer as its text, anything else as text (undecodable bytes
    replaced)."""
    doc = summary(row)
    doc["request_headers"] = orjson.loads(row["request_headers"])
    doc["response_headers"] = orjson.loads(row["response_headers"])
    doc["request_body"] = _decoded(_raw(row["request_body"], unzstd))
    response = _raw(row["response_body"], unzstd)
    doc["response_body"] = _decoded(response)
    message = _raw(row["message"], unzstd)  # stored by older versions
    if message:
        doc["message"] = orjson.loads(message)
    elif response and not row["response_truncated"] and _is_event_stream(doc):
        doc["message"] = rebuilt(response, str(row["request_id"]))
    else:
        doc["message"] = None
    return doc


def rebuilt(raw: bytes, request_id: str) -> dict[str, Any] | None:
    """The Message an SSE answer adds up to (None when it does not: cut
    short, an error, or not Anthropic's events)."""
    assembler = MessageAssembler(request_id=request_id)
    try:
        assembler.feed(raw)
        status, body = assembler.result()
    except DemoteFailed:
        return None
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return message if status == 200 and isinstance(message, dict) else None


def _is_event_stream(doc: dict[str, Any]) -> bool:
    return any(
        str(n).lower() == "content-type" and "text/event-stream" in str(v)
        for n, v in doc["response_headers"]
    )


def answer_of(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The Message a request got: rebuilt from its stream, or its JSON."""
    message = doc.get("message")
    if isinstance(message, dict):
        return message
    body = doc.get("response_body")
    if isinstance(body, dict) and body.get("type") == "message":
        return body
    return None


def conversation(details: list[dict[str, Any]]) -> dict[str, Any]:
    """A session's requests (oldest first, as ``detail`` made them) as
    turns: each with the messages it added, the answer, its tokens (cache
    reads and writes per turn) and cost."""
    turns: list[dict[str, Any]] = []
    previous: list[Any] = []  # the last request's history, fingerprinted
    answered = False
    system: Any = None
    for d in details:
        request = d.get("request_body")
        messages = request.get("messages") if isinstance(request, dict) else None
        messages = messages if isinstance(messages, list) else []
        this_system = request.get("system") if isinstance(request, dict) else None
        prints = [_fingerprint(m) for m in messages]
        continues = bool(previous) and prints[: len(previous)] == previous
        added = messages[len(previous) :] if continues else messages
        if continues and answered and added and _role(added[0]) == "assistant":
            added = added[1:]  # the last turn's answer, shown there
        answer = answer_of(d)
        turns.append(
            {
                "request_id": d["request_id"],
                "ts": d["ts"],
                "model": d["model"],
                "status": d["status"],
                "caller": d["caller"],
                "new_thread": not continues,
                "system": this_system if (not continues or this_system != system) else None,
                "messages": added,
                "answer": answer,
                "error": d["response_body"] if d["status"] >= 400 else None,
                "tokens": {t: d.get(t, 0) for t in _TOKENS},
                "cost_usd": d.get("cost_usd", 0.0),
                "duration_s": d.get("duration_s"),
                "request_class": d.get("request_class", ""),
                "agent_type": d.get("agent_type", ""),
                "prompt_id": d.get("prompt_id", ""),
            }
        )
        system, previous, answered = this_system, prints, answer is not None
    return {
        "session": details[0]["session"] if details else "",
        "turns": turns,
        "tokens": {t: sum(x["tokens"][t] for x in turns) for t in _TOKENS},
        "cost_usd": round(sum(x["cost_usd"] or 0.0 for x in turns), 6),
    }


def _role(message: Any) -> str:
    return str(message.get("role", "")) if isinstance(message, dict) else ""


def _fingerprint(message: Any) -> Any:
    """What identifies a message across requests. Clients rewrite their
    history between requests: Claude Code moves ``cache_control`` markers,
    sends a content list as a plain string the next time, and may drop
    thinking text; so a message is compared by its role and its blocks'
    text, tool ids and tool result ids, thinking left out."""
    if not isinstance(message, dict):
        return message
    content = message.get("content")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    if not isinstance(content, list):
        return (_role(message), content)
    keys: list[Any] = []
    for block in content:
        if not isinstance(block, dict):
            keys.append(block)
            continue
        kind = block.get("type")
        if kind == "text":
            keys.append(("text", str(block.get("text", "")).strip()))
        elif kind == "tool_use":
            keys.append(("tool_use", block.get("id")))
        elif kind == "tool_result":
            keys.append(("tool_result", block.get("tool_use_id")))
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            keys.append((kind,))
    return (_role(message), keys)


def export_line(row: Row, unzstd: zstandard.ZstdDecompressor) -> bytes:
    """One JSON Lines record of ``trioproxy log export``."""
    return orjson.dumps(detail(row, unzstd)) + b"\n"


def _raw(blob: Any, unzstd: zstandard.ZstdDecompressor) -> bytes:
    if blob is None:
        return b""
    return unzstd.decompress(bytes(blob))


def _decoded(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", errors="replace")


def _plain(value: Any) -> Any:
    return bytes(value).decode("latin-1") if isinstance(value, memoryview | bytes) else value
