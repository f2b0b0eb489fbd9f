"""The text the viewer's search looks in, made when a row is written.

A streamed answer's text is taken from its SSE bytes by one regular
expression and one JSON parse of what it found, not by rebuilding the
Message event by event: the writer thread runs on the same core as the
proxy, and a rebuild costs several microseconds per event, a thousand
events for a 150 KB answer. The viewer rebuilds the Message when a row is
opened (``views.detail``)."""

from __future__ import annotations

import re
from typing import Any

import orjson

SEARCH_MAX = 32 * 1024  # characters of prompt and of answer kept for search

# In a streamed Messages answer: a block's start (a new line in the text),
# a tool's name, and the fragments of text, thinking and tool input. A JSON
# string's body is matched whole, escapes included ("unrolled" so that the
# engine does not backtrack per character).
_STREAMED = re.compile(
    rb'"(content_block_start)"'
    rb'|"(text|thinking|partial_json|name)":"([^"\\]*(?:\\.[^"\\]*)*)"'
)


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
    """The readable text of a streamed answer, from its first SEARCH_MAX
    characters' worth of fragments: blocks on lines of their own, a tool's
    name before its input. Whatever the bytes are (cut short, an error, not
    Anthropic's events), it gives what it finds, never an error."""
    pieces: list[bytes] = []
    size = 0
    for m in _STREAMED.finditer(raw):
        if m.group(1):
            if pieces:  # the first block needs no line before it
                pieces.append(b"\\n")
            continue
        pieces.append(m.group(3))
        if m.group(2) == b"name":
            pieces.append(b" ")  # "name {input}", as a JSON answer's tool_use reads
        size += len(m.group(3))
        if size > SEARCH_MAX * 2:  # escapes make the bytes longer than the text
            break
    if not pieces:
        return ""
    try:
        strings = orjson.loads(b'["' + b'","'.join(pieces) + b'"]')
    except orjson.JSONDecodeError:
        return ""
    return "".join(strings)[:SEARCH_MAX]


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
