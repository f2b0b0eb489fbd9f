"""The text the viewer's search looks in, made when a row is written.

A streamed answer's text is read from its ``data:`` lines parsed a batch at
a time as one JSON array, not by rebuilding the Message event by event
(several microseconds per event, and a 150 KB answer has a thousand): the
writer thread runs on the proxy's core. The viewer rebuilds the Message
when a row is opened (``views.detail``)."""

from __future__ import annotations

from typing import Any

import orjson

SEARCH_MAX = 32 * 1024  # characters of prompt and of answer kept for search
_BATCH = 256  # data lines parsed at once
_DELTA_FIELDS = {
    "text_delta": "text",
    "thinking_delta": "thinking",
    "input_json_delta": "partial_json",
}


def search_text(request: Any, answer: str) -> str:
    """What the viewer's search looks in: the system prompt's start, the
    last user turn and the answer's text (each within SEARCH_MAX)."""
    parts: list[str] = []
    if isinstance(request, dict):
        system = request.get("system")
        parts.append(text_of(system)[:SEARCH_MAX] if system else "")
        messages = request.get("messages")
        if isinstance(messages, list):
            users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
            if users:
                parts.append(text_of(users[-1].get("content"))[:SEARCH_MAX])
    parts.append(answer[:SEARCH_MAX])
    return "\n".join(p for p in parts if p)


def json_answer_text(answer: Any) -> str:
    """The readable text of a JSON answer (a Message, or anything else)."""
    return text_of(answer.get("content")) if isinstance(answer, dict) else ""


def streamed_answer_text(raw: bytes) -> str:
    """The readable text of a streamed answer, up to SEARCH_MAX characters:
    blocks on lines of their own, a tool's name before its input, as a JSON
    answer's reads. Whatever the bytes are (cut short, an error, not
    Anthropic's events), it gives what it finds, never an error."""
    data = [line[5:] for line in raw.splitlines() if line[:5] == b"data:"]
    pieces: list[str] = []
    size = 0
    for at in range(0, len(data), _BATCH):
        for doc in _parsed(data[at : at + _BATCH]):
            size += _add(doc, pieces)
        if size >= SEARCH_MAX:
            break
    return "".join(pieces)[:SEARCH_MAX]


def _parsed(lines: list[bytes]) -> list[Any]:
    try:
        docs = orjson.loads(b"[" + b",".join(lines) + b"]")
    except orjson.JSONDecodeError:  # a line that is not JSON (or half of one): one by one
        docs = []
        for line in lines:
            try:
                docs.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
    return docs if isinstance(docs, list) else []


def _add(doc: Any, pieces: list[str]) -> int:
    """Add what one event says to ``pieces``; returns the characters added."""
    if not isinstance(doc, dict):
        return 0
    kind = doc.get("type")
    if kind == "content_block_delta":
        delta = doc.get("delta")
        if isinstance(delta, dict):
            value = delta.get(_DELTA_FIELDS.get(str(delta.get("type")), ""))
            if isinstance(value, str):
                pieces.append(value)
                return len(value)
        return 0
    if kind != "content_block_start":
        return 0
    block = doc.get("content_block")
    if not isinstance(block, dict):
        return 0
    start = "\n" if pieces else ""  # each block after the first on a line of its own
    if block.get("type") == "tool_use":
        start += f"{block.get('name', '')} "
    else:
        value = block.get("text", block.get("thinking", ""))
        start += value if isinstance(value, str) else ""
    pieces.append(start)
    return len(start)


def text_of(value: Any) -> str:
    """The readable text of a content value: strings, text blocks, tool
    inputs and results, thinking."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(t for v in value if (t := text_of(v)))
    if isinstance(value, dict):
        kind = value.get("type")
        if kind == "text":
            return str(value.get("text", ""))
        if kind == "thinking":
            return str(value.get("thinking", ""))
        if kind == "tool_use":
            return f"{value.get('name', '')} {orjson.dumps(value.get('input')).decode()}"
        if kind == "tool_result":
            return text_of(value.get("content"))
    return ""
