"""Scrubbing a Messages request body: credentials become numbered
placeholders (``<GITHUB_TOKEN_1>``), identifiers become keyed hashes
(``<EMAIL_HMAC:A3F1B2C0>``), and every other byte stays as it was.

Rules, and why:

* Cheap when there is nothing to find: every detector's *core* is looked
  for in the raw bytes in one pass (prefilter.py). No core hit, no parse,
  and the original bytes go upstream; otherwise only the JSON strings the
  hits fall in are decoded and checked with the exact patterns.
* Only text the model reads as prose or tool input is scrubbed: ``system``
  text, message text, ``tool_use.input`` values and ``tool_result`` text.
  Never ``model``, ``role``, ``type``, ``metadata``, tool definitions,
  image/document ``source`` data, ``thinking`` / ``redacted_thinking``
  blocks or any ``signature`` (changing them breaks the signature check).
* Numbered in the order the API reads the prompt (system, then messages in
  order), not in JSON key order: a conversation grows at its end, so every
  placeholder already sent keeps its number and the cached prefix stays
  byte-identical from one request to the next.
* Edited in place: a changed string is re-encoded on its own (orjson) at
  the byte spans where the prefilter found it; the bytes between are the
  client's. When the same text also sits where it must not be touched (a
  thinking block, an object key), the structural walk over byte spans
  (rules/jsonedit) picks exactly the right tokens, more slowly; so does
  a body with escapes the prefilter cannot see through.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from trioproxy.rules.jsonedit import (
    Edit,
    Member,
    apply,
    array_items,
    object_members,
    value_end,
)
from trioproxy.scrub.detectors import DETECTORS, Detector, Hit, find, without_allowed
from trioproxy.scrub.prefilter import CoreHit, Scanner, default_scanner

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
    def __init__(
        self,
        hmac_key: bytes,
        *,
        max_body_bytes: int,
        scanner: Scanner | None = None,
        allow: tuple[str, ...] = (),
    ) -> None:
        """``allow``: e-mail addresses and domains never replaced (lower case)."""
        self._key = hmac_key
        self.max_body_bytes = max_body_bytes
        self._scanner = scanner or default_scanner()
        self._allow = allow

    def scrub(self, raw: bytes) -> ScrubResult:
        if len(raw) > self.max_body_bytes:
            return ScrubResult(raw, skipped="too_large")
        scan = self._scanner.scan(raw)
        if scan.unusual:
            return self._scrub_every_string(raw)
        if not scan.hits:
            return ScrubResult(raw)  # nothing can match: not even parsed
        doc = _parse(raw)
        if doc is None:
            return ScrubResult(raw, skipped="not_json")
        found = _hit_strings(raw, scan.hits)
        namer = _Namer(self._key)
        lengths = {len(t) for t in found}
        done: dict[str, tuple[str, list[Hit]]] = {}  # text -> (scrubbed, its hits)
        seen: Counter[str] = Counter()  # scrubbable occurrences of each found text
        for text in _scrubbable(doc):
            if len(text) not in lengths or text not in found:
                continue
            seen[text] += 1
            if text in done:  # the same text again: same result, counted again
                for h in done[text][1]:
                    namer.hits[h.detector.name] += 1
                continue
            hits = without_allowed(text, find(text, found[text].detectors), self._allow)
            done[text] = (_replace(text, hits, namer), hits)
        edits: list[Edit] = []
        for text, (new, _) in done.items():
            if new == text:
                continue
            spans = found[text].spans
            if seen[text] != len(spans):
                # The same text also sits where it must not be touched (a
                # thinking block, an object key): find the right tokens by
                # structure, numbering afresh in the same order.
                walk = _Walk(raw, DETECTORS, _Namer(self._key), self._allow, _focus(found))
                walk.body(object_members(raw))
                return ScrubResult(
                    apply(raw, walk.edits), walk.namer.mapping, walk.namer.hits, doc=doc
                )
            encoded = orjson.dumps(new)
            edits.extend(Edit(start, end, encoded) for start, end in spans)
        if not edits:
            return ScrubResult(raw, doc=doc)
        return ScrubResult(apply(raw, edits), namer.mapping, namer.hits, doc=doc)

    def _scrub_every_string(self, raw: bytes) -> ScrubResult:
        """The slow way, for bodies with escapes the prefilter cannot see
        through: every scrubbable string is decoded and checked, with every
        detector (their anchors cannot be trusted in the raw bytes either)."""
        doc = _parse(raw)
        if doc is None:
            return ScrubResult(raw, skipped="not_json")
        walk = _Walk(raw, DETECTORS, _Namer(self._key), self._allow)
        walk.body(object_members(raw))
        if not walk.edits:
            return ScrubResult(raw, doc=doc)
        return ScrubResult(apply(raw, walk.edits), walk.namer.mapping, walk.namer.hits, doc=doc)


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


@dataclass
class _Found:
    """A JSON string some core matched in: where it is in the raw body (each
    occurrence), and which detectors can possibly match it."""

    spans: list[tuple[int, int]] = field(default_factory=list)
    detectors: tuple[Detector, ...] = ()


def _hit_strings(raw: bytes, hits: list[CoreHit]) -> dict[str, _Found]:
    """The decoded strings the core hits fall in. A core hit starts inside a
    string (its first character cannot occur outside one in JSON); a keyword
    hit may run on into the next strings, which are all taken."""
    by_span: dict[tuple[int, int], set[Detector]] = {}
    span = (-1, -1)
    for hit in hits:  # sorted by start
        at = hit.start
        while True:
            if not span[0] < at < span[1]:
                span = _string_around(raw, at)
            by_span.setdefault(span, set()).add(hit.detector)
            if hit.end <= span[1]:
                break
            at = raw.find(b'"', span[1]) + 1  # the next string's first byte
            if at == 0:
                break
    found: dict[str, _Found] = {}
    for (start, end), detectors in by_span.items():
        text = orjson.loads(raw[start:end])
        entry = found.setdefault(text, _Found())
        entry.spans.append((start, end))
        entry.detectors = tuple(d for d in DETECTORS if d in detectors or d in entry.detectors)
    return found


def _string_around(raw: bytes, at: int) -> tuple[int, int]:
    """[opening quote, after the closing quote) of the string holding ``at``:
    the nearest unescaped quotes on either side (the body is valid JSON)."""
    start = raw.rfind(b'"', 0, at)
    while _escaped(raw, start):
        start = raw.rfind(b'"', 0, start)
    end = raw.find(b'"', at)
    while _escaped(raw, end):
        end = raw.find(b'"', end + 1)
    return start, end + 1


def _escaped(raw: bytes, quote: int) -> bool:
    i = quote
    while i > 0 and raw[i - 1] == 0x5C:  # backslash
        i -= 1
    return (quote - i) % 2 == 1


def _focus(found: dict[str, _Found]) -> dict[int, tuple[Detector, ...]]:
    return {start: f.detectors for f in found.values() for start, _ in f.spans}


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


def _scrubbable(doc: dict[str, Any]) -> list[str]:
    """The strings to scrub, in the order the API reads the prompt (the same
    rules as _Walk, on the parsed document). A list filled by plain loops:
    nested generators cost a third of a scrub on a long conversation."""
    out: list[str] = []
    _content(doc.get("system"), out)
    messages = doc.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                _content(message.get("content"), out)
    return out


def _content(value: object, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, list):
        for block in value:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "text":
                text = block.get("text")
                if isinstance(text, str):
                    out.append(text)
            elif kind == "tool_use":
                _values(block.get("input"), out)
            elif kind == "tool_result":
                _content(block.get("content"), out)


def _values(value: object, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            _values(v, out)
    elif isinstance(value, list):
        for v in value:
            _values(v, out)


def _last(members: list[Member], key: str) -> Member | None:
    found = None
    for m in members:
        if m.key == key:
            found = m
    return found


class _Walk:
    """Finds the strings to scrub, in the API's reading order."""

    def __init__(
        self,
        raw: bytes,
        detectors: tuple[Detector, ...],
        namer: _Namer,
        allow: tuple[str, ...] = (),
        focus: dict[int, tuple[Detector, ...]] | None = None,
    ) -> None:
        self.raw = raw
        self.detectors = detectors
        self.namer = namer
        self.allow = allow
        self.edits: list[Edit] = []
        # Only these strings (by opening quote), with these detectors.
        self.focus = focus

    def _kind(self, at: int) -> str:
        return {b'"': "string", b"{": "object", b"[": "array"}.get(self.raw[at : at + 1], "scalar")

    def string(self, m: Member | tuple[int, int]) -> None:
        start, end = (m.value_start, m.end) if isinstance(m, Member) else m
        if self.raw[start : start + 1] != b'"':
            return
        detectors = self.detectors
        if self.focus is not None:
            if start not in self.focus:
                return
            detectors = self.focus[start]
        text = orjson.loads(self.raw[start:end])
        new = _replace(text, without_allowed(text, find(text, detectors), self.allow), self.namer)
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
