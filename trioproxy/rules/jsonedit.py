"""Surgical edits of a JSON request body: change or remove a few values and
keep every other byte as the client sent it.

Re-serialising a body (even with orjson) changes number formatting (a 64-bit+
integer, ``1.0``), unicode escapes and key order, and drops nothing of value
but breaks byte-level promises: prompt-cache prefixes, signatures, and fields
a provider reads that we do not know. So decisions are made on the parsed
document (orjson, once) and the edits are made on byte spans found by a small
structural scanner that only skips over values it does not need.

The scanner trusts that the body is valid JSON (the caller parsed it first).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

_WS = b" \t\r\n"
# One regex match skips a whole string (escapes included) at C speed.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
# Inside a container: the next string or bracket; everything else is skipped.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.S)
_SCALAR = re.compile(rb"[^,\]}\s]+")


@dataclass(frozen=True, slots=True)
class Member:
    """One ``"key": value`` of an object: spans are [start, end) in the body."""

    key: str
    start: int  # the key's opening quote
    value_start: int
    end: int  # just after the value


def _skip_ws(buf: bytes, i: int) -> int:
    n = len(buf)
    while i < n and buf[i] in _WS:
        i += 1
    return i


def value_end(buf: bytes, i: int) -> int:
    """The end of the JSON value starting at ``i`` (after whitespace)."""
    i = _skip_ws(buf, i)
    c = buf[i : i + 1]
    if c == b'"':
        m = _STRING.match(buf, i)
        if m is None:
            raise ValueError("unterminated string")
        return m.end()
    if c in (b"{", b"["):
        depth = 0
        for m in _TOKEN.finditer(buf, i):
            tok = m.group()
            if tok in (b"{", b"["):
                depth += 1
            elif tok in (b"}", b"]"):
                depth -= 1
                if depth == 0:
                    return m.end()
        raise ValueError("unterminated container")
    m = _SCALAR.match(buf, i)
    if m is None:
        raise ValueError(f"no JSON value at offset {i}")
    return m.end()


def object_members(buf: bytes, start: int = 0) -> list[Member]:
    """The members of the object starting at ``start`` (after whitespace)."""
    i = _skip_ws(buf, start)
    if buf[i : i + 1] != b"{":
        raise ValueError("not an object")
    i = _skip_ws(buf, i + 1)
    members: list[Member] = []
    if buf[i : i + 1] == b"}":
        return members
    while True:
        m = _STRING.match(buf, i)
        if m is None:
            raise ValueError(f"expected a key at offset {i}")
        key = orjson.loads(m.group())
        colon = _skip_ws(buf, m.end())
        if buf[colon : colon + 1] != b":":
            raise ValueError(f"expected ':' at offset {colon}")
        vstart = _skip_ws(buf, colon + 1)
        vend = value_end(buf, vstart)
        members.append(Member(key, i, vstart, vend))
        i = _skip_ws(buf, vend)
        if buf[i : i + 1] == b",":
            i = _skip_ws(buf, i + 1)
            continue
        if buf[i : i + 1] == b"}":
            return members
        raise ValueError(f"expected ',' or '}}' at offset {i}")


def array_items(buf: bytes, start: int) -> list[tuple[int, int]]:
    """(start, end) of each element of the array starting at ``start``."""
    i = _skip_ws(buf, start)
    if buf[i : i + 1] != b"[":
        raise ValueError("not an array")
    i = _skip_ws(buf, i + 1)
    items: list[tuple[int, int]] = []
    if buf[i : i + 1] == b"]":
        return items
    while True:
        end = value_end(buf, i)
        items.append((i, end))
        i = _skip_ws(buf, end)
        if buf[i : i + 1] == b",":
            i = _skip_ws(buf, i + 1)
            continue
        if buf[i : i + 1] == b"]":
            return items
        raise ValueError(f"expected ',' or ']' at offset {i}")


@dataclass(frozen=True, slots=True)
class Edit:
    """Replace buf[start:end] with ``data`` (empty data deletes)."""

    start: int
    end: int
    data: bytes


def apply(buf: bytes, edits: Iterable[Edit]) -> bytes:
    """Apply non-overlapping edits; the bytes between them are untouched."""
    out: list[bytes] = []
    at = 0
    for e in sorted(edits, key=lambda e: e.start):
        if e.start < at:
            raise ValueError("overlapping edits")
        out.append(buf[at : e.start])
        out.append(e.data)
        at = e.end
    out.append(buf[at:])
    return b"".join(out)


def remove_elements(spans: list[tuple[int, int]], drop: set[int]) -> list[Edit]:
    """Edits deleting elements ``drop`` (indexes into ``spans``, the elements
    of one array or the members of one object) with their separators, so the
    rest keeps its bytes and stays valid JSON."""
    edits: list[Edit] = []
    kept = [i for i in range(len(spans)) if i not in drop]
    if not kept:
        if spans:
            edits.append(Edit(spans[0][0], spans[-1][1], b""))
        return edits
    for i in sorted(drop):
        if i < kept[0]:
            # Before the first survivor: delete up to the next element's start.
            edits.append(Edit(spans[i][0], spans[i + 1][0], b""))
        else:
            # After some survivor: delete from the previous element's end.
            edits.append(Edit(spans[i - 1][1], spans[i][1], b""))
    return _merge(edits)


def _merge(edits: list[Edit]) -> list[Edit]:
    """Adjacent deletions touch at their ends; fold them into one."""
    edits.sort(key=lambda e: e.start)
    out: list[Edit] = []
    for e in edits:
        if out and e.start <= out[-1].end:
            last = out[-1]
            out[-1] = Edit(last.start, max(last.end, e.end), b"")
        else:
            out.append(e)
    return out
