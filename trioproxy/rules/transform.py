"""What a provider needs changed in a Messages request body, done without
re-serialising it (see jsonedit): the top-level ``model`` value, top-level
fields the provider rejects, and ``thinking`` blocks of earlier assistant
turns when a session moves to a provider of another family (their signatures
are only valid where they were made: another provider answers
``400 Invalid signature in thinking block`` and the session wedges).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from trioproxy.rules.jsonedit import Edit, apply, array_items, object_members, remove_elements

THINKING_TYPES = frozenset({"thinking", "redacted_thinking"})
# Claude Code's metadata.user_id: "user_<hex>_account_<uuid>_session_<uuid>",
# or (newer) a JSON object in a string with a "session_id".
_SESSION_IN_USER_ID = re.compile(r"_session_([0-9A-Za-z-]{8,64})")


@dataclass(frozen=True, slots=True)
class ParsedBody:
    """A request body parsed once: what routing and the edits need to know."""

    raw: bytes
    doc: dict[str, Any]

    @property
    def model(self) -> str | None:
        value = self.doc.get("model")
        return value if isinstance(value, str) else None

    @property
    def session_id(self) -> str | None:
        """The session named inside ``metadata.user_id``, if any."""
        meta = self.doc.get("metadata")
        user_id = meta.get("user_id") if isinstance(meta, dict) else None
        if not isinstance(user_id, str):
            return None
        if user_id.startswith("{"):
            try:
                inner = orjson.loads(user_id)
            except orjson.JSONDecodeError:
                inner = None
            sid = inner.get("session_id") if isinstance(inner, dict) else None
            return sid if isinstance(sid, str) and sid else None
        m = _SESSION_IN_USER_ID.search(user_id)
        return m.group(1) if m else None

    @property
    def has_thinking(self) -> bool:
        return bool(_thinking_positions(self.doc))


def parse_body(raw: bytes) -> ParsedBody | None:
    """The body as a JSON object, or None (not JSON, or not an object): such a
    body is forwarded as it is and the provider judges it."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return ParsedBody(raw, doc) if isinstance(doc, dict) else None


def _thinking_positions(doc: dict[str, Any]) -> dict[int, set[int]]:
    """message index -> indexes of thinking blocks in assistant turns."""
    found: dict[int, set[int]] = {}
    messages = doc.get("messages")
    if not isinstance(messages, list):
        return found
    for mi, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") != "assistant":
            continue
        content = msg.get("content")
        if not isinstance(content, list):
            continue
        blocks = {
            bi
            for bi, block in enumerate(content)
            if isinstance(block, dict) and block.get("type") in THINKING_TYPES
        }
        if blocks:
            found[mi] = blocks
    return found


def rewrite(
    body: ParsedBody,
    *,
    model: str | None = None,
    drop_fields: frozenset[str] = frozenset(),
    strip_thinking: bool = False,
) -> bytes:
    """The body with ``model`` set, ``drop_fields`` removed and (if asked)
    thinking blocks of assistant turns removed. With nothing to change it is
    the very same bytes object."""
    raw = body.raw
    want_model = model is not None and model != body.model
    drops = drop_fields & body.doc.keys()
    thinking = _thinking_positions(body.doc) if strip_thinking else {}
    if not (want_model or drops or thinking):
        return raw
    members = object_members(raw)
    edits: list[Edit] = []
    if want_model:
        # With duplicate keys the last one wins (as in orjson): edit that one.
        last = max(i for i, m in enumerate(members) if m.key == "model")
        m = members[last]
        edits.append(Edit(m.value_start, m.end, orjson.dumps(model)))
    if drops:
        spans = [(m.start, m.end) for m in members]
        edits.extend(remove_elements(spans, {i for i, m in enumerate(members) if m.key in drops}))
    if thinking:
        msgs = [m for m in members if m.key == "messages"][-1]
        items = array_items(raw, msgs.value_start)
        # A turn that held nothing but thinking would be left with empty
        # content, which the API refuses ("all messages must have non-empty
        # content except for the optional final assistant message"): the turn
        # goes (a final one too: an empty prefill is no prefill), and the user
        # turns around it are read as one, as the API reads consecutive turns.
        messages = body.doc["messages"]
        emptied = {
            mi for mi, blocks in thinking.items() if len(blocks) == len(messages[mi]["content"])
        }
        for mi, blocks in thinking.items():
            if mi in emptied:
                continue
            content = [m for m in object_members(raw, items[mi][0]) if m.key == "content"][-1]
            edits.extend(remove_elements(array_items(raw, content.value_start), blocks))
        edits.extend(remove_elements(items, emptied))
    return apply(raw, edits)


def drop_betas(value: bytes, drop: frozenset[bytes]) -> bytes:
    """An ``anthropic-beta`` list without the values a provider rejects
    (comma-separated, as clients send it). Empty result: drop the header."""
    kept = [v.strip() for v in value.split(b",") if v.strip() and v.strip() not in drop]
    return b",".join(kept)
