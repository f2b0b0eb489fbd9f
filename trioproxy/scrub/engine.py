"""Scrubbing a Messages request body: credentials become numbered
placeholders (``<GITHUB_TOKEN_1>``), identifiers become keyed hashes
(``<EMAIL_HMAC:A3F1B2C0>``), and every other byte stays as it was.

Rules, and why:

* Cheap when there is nothing to find: the detectors' literal anchors are
  searched in the raw body first (``bytes in bytes``, C speed); no anchor,
  no parse, and the original bytes go upstream.
* Only text the model reads as prose or tool input is scrubbed: ``system``
  text, message text, ``tool_use.input`` values and ``tool_result`` text.
  Never ``model``, ``role``, ``type``, ``metadata``, tool definitions,
  image/document ``source`` data, ``thinking`` / ``redacted_thinking``
  blocks or any ``signature`` (changing them breaks the signature check).
* Numbered in the order the API reads the prompt (system, then messages in
  order), not in JSON key order: a conversation grows at its end, so every
  placeholder already sent keeps its number and the cached prefix stays
  byte-identical from one request to the next.
* Edited in place: a changed string is re-encoded on its own (orjson); the
  bytes between changed strings are the client's. The fast way finds a
  changed string by its canonical encoding in the raw body and checks that
  it occurs exactly as often as in scrubbable places; when it does not (the
  client escaped differently, or the same text sits in a place never to be
  touched) the structural walk over byte spans (pipeline/jsonedit) edits
  exactly the right tokens, more slowly.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from trioproxy.pipeline.jsonedit import (
    Edit,
    Member,
    apply,
    array_items,
    object_members,
    value_end,
)
from trioproxy.scrub.detectors import Detector, Hit, anchor_pattern, candidates, find

HMAC_CHARS = 8  # hex digits of the truncated HMAC-SHA256 in identifier placeholders


@dataclass
class ScrubResult:
    body: bytes  # the very same object when nothing changed
    mapping: dict[str, str] = field(default_factory=dict)  # placeholder -> original
    hits: Counter[str] = field(default_factory=Counter)  # detector name -> replacements
    skipped: str = ""  # why the body was not looked at: too_large, not_json
    doc: dict[str, object] | None = None  # the parsed body, when it was parsed


class _Namer:
    """Placeholders of one request: the same value always gets the same one."""

    def __init__(self, hmac_key: bytes) -> None:
        self._key = hmac_key
        self._by_value: dict[tuple[str, str], str] = {}
        self._counts: Counter[str] = Counter()
        self.mapping: dict[str, str] = {}
        self.hits: Counter[str] = Counter()

    def name(self, detector: Detector, value: str) -> str:
        self.hits[detector.name] += 1
        key = (detector.label, value)
        existing = self._by_value.get(key)
        if existing is not None:
            return existing
        if detector.identifier:
            digest = hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()
            placeholder = f"<{detector.label}:{digest[:HMAC_CHARS].upper()}>"
        else:
            self._counts[detector.label] += 1
            placeholder = f"<{detector.label}_{self._counts[detector.label]}>"
        self._by_value[key] = placeholder
        self.mapping[placeholder] = value
        return placeholder


class Scrubber:
    def __init__(self, hmac_key: bytes, *, max_body_bytes: int) -> None:
        self._key = hmac_key
        self.max_body_bytes = max_body_bytes

    def scrub(self, raw: bytes) -> ScrubResult:
        if len(raw) > self.max_body_bytes:
            return ScrubResult(raw, skipped="too_large")
        detectors = candidates(raw)
        if not detectors:
            return ScrubResult(raw)
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return ScrubResult(raw, skipped="not_json")
        if not isinstance(doc, dict):
            return ScrubResult(raw, skipped="not_json")
        namer = _Namer(self._key)
        anchors = anchor_pattern(detectors)
        changed: dict[str, tuple[str, list[Hit]]] = {}  # original -> (scrubbed, its hits)
        seen: Counter[str] = Counter()  # occurrences of each changed string
        for text in _scrubbable(doc):
            if text in changed:  # the same text again: same result, counted again
                seen[text] += 1
                for h in changed[text][1]:
                    namer.hits[h.detector.name] += 1
                continue
            if not anchors.search(text):
                continue
            hits = find(text, detectors)
            new = _replace(text, hits, namer)
            if new != text:
                changed[text] = (new, hits)
                seen[text] += 1
        if not changed:
            return ScrubResult(raw, doc=doc)
        out = raw
        for old, (new, _) in changed.items():
            enc = orjson.dumps(old)
            if out.count(enc) != seen[old]:
                break
            out = out.replace(enc, orjson.dumps(new))
        else:
            return ScrubResult(out, namer.mapping, namer.hits, doc=doc)
        # The careful way, same numbering (the namer is fresh again).
        walk = _Walk(raw, detectors, _Namer(self._key))
        walk.body(object_members(raw))
        return ScrubResult(apply(raw, walk.edits), walk.namer.mapping, walk.namer.hits, doc=doc)


def _replace(text: str, hits: list[Hit], namer: _Namer) -> str:
    if not hits:
        return text
    out: list[str] = []
    at = 0
    for h in hits:
        out.append(text[at : h.start])
        out.append(namer.name(h.detector, text[h.start : h.end]))
        at = h.end
    out.append(text[at:])
    return "".join(out)


def _scrubbable(doc: dict[str, Any]) -> Iterator[str]:
    """The strings to scrub, in the order the API reads the prompt (the same
    rules as _Walk, on the parsed document)."""
    system = doc.get("system")
    yield from _content(system)
    messages = doc.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                yield from _content(message.get("content"))


def _content(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for block in value:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "text" and isinstance(block.get("text"), str):
                yield block["text"]
            elif kind == "tool_use":
                yield from _values(block.get("input"))
            elif kind == "tool_result":
                yield from _content(block.get("content"))


def _values(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _values(v)
    elif isinstance(value, list):
        for v in value:
            yield from _values(v)


def _last(members: list[Member], key: str) -> Member | None:
    found = None
    for m in members:
        if m.key == key:
            found = m
    return found


class _Walk:
    """Finds the strings to scrub, in the API's reading order."""

    def __init__(self, raw: bytes, detectors: tuple[Detector, ...], namer: _Namer) -> None:
        self.raw = raw
        self.detectors = detectors
        self.namer = namer
        self.edits: list[Edit] = []

    def _kind(self, at: int) -> str:
        return {b'"': "string", b"{": "object", b"[": "array"}.get(self.raw[at : at + 1], "scalar")

    def string(self, m: Member | tuple[int, int]) -> None:
        start, end = (m.value_start, m.end) if isinstance(m, Member) else m
        if self.raw[start : start + 1] != b'"':
            return
        text = orjson.loads(self.raw[start:end])
        new = _replace(text, find(text, self.detectors), self.namer)
        if new != text:
            self.edits.append(Edit(start, end, orjson.dumps(new)))

    def body(self, top: list[Member]) -> None:
        system = _last(top, "system")
        if system is not None:
            self.text_or_blocks(system.value_start)
        messages = _last(top, "messages")
        if messages is not None and self._kind(messages.value_start) == "array":
            for start, _ in array_items(self.raw, messages.value_start):
                if self._kind(start) != "object":
                    continue
                content = _last(object_members(self.raw, start), "content")
                if content is not None:
                    self.text_or_blocks(content.value_start)

    def text_or_blocks(self, at: int) -> None:
        kind = self._kind(at)
        if kind == "string":
            self.string((at, self._end(at)))
        elif kind == "array":
            for start, _ in array_items(self.raw, at):
                if self._kind(start) == "object":
                    self.block(object_members(self.raw, start))

    def _end(self, at: int) -> int:
        return value_end(self.raw, at)

    def block(self, members: list[Member]) -> None:
        type_m = _last(members, "type")
        kind = orjson.loads(self.raw[type_m.value_start : type_m.end]) if type_m else None
        if kind == "text":
            text = _last(members, "text")
            if text is not None:
                self.string(text)
        elif kind == "tool_use":
            tool_input = _last(members, "input")
            if tool_input is not None:
                self.any_value(tool_input.value_start)
        elif kind == "tool_result":
            content = _last(members, "content")
            if content is not None:
                self.text_or_blocks(content.value_start)
        # thinking, redacted_thinking, image, document, and anything unknown:
        # never touched.

    def any_value(self, at: int) -> None:
        """Every string value inside tool input (keys are the tool's schema)."""
        kind = self._kind(at)
        if kind == "string":
            self.string((at, self._end(at)))
        elif kind == "object":
            for m in object_members(self.raw, at):
                self.any_value(m.value_start)
        elif kind == "array":
            for start, _ in array_items(self.raw, at):
                self.any_value(start)
