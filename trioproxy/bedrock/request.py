"""A Messages request as Bedrock's InvokeModel takes it (pure).

The body is edited at the byte level (rules/jsonedit.py), so every byte
Bedrock does not need changed reaches it as the client sent it (prompt
cache prefixes, thinking signatures, numbers):

* ``model`` and ``stream`` go: the model is in the path, and streaming is
  the choice of endpoint;
* ``anthropic_version: "bedrock-2023-05-31"`` and the request's
  ``anthropic-beta`` values as the ``anthropic_beta`` list come first;
* the fields Bedrock rejects go, each with the beta values it pairs with,
  never one without the other (``BEDROCK_BRIDGE``).
"""

from __future__ import annotations

import base64
import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

from trioproxy.rules.jsonedit import Edit, apply, array_items, object_members, remove_elements

ANTHROPIC_VERSION = "bedrock-2023-05-31"
SIGNING_NAME = "bedrock"  # SigV4's service name for bedrock-runtime


@dataclass(frozen=True, slots=True)
class Bridge:
    """A field a provider rejects and the beta values that turn it on:
    ``field`` is top-level, or ``tools[].name`` for a member of each tool;
    ``betas`` are globs on ``anthropic-beta`` values."""

    field: str
    betas: tuple[str, ...]

    def matches_beta(self, beta: str) -> bool:
        return any(fnmatch.fnmatchcase(beta, g) for g in self.betas)


# What Bedrock rejects of what Claude Code sends to a Messages endpoint
# (Anthropic's gateway guide): context editing, the effort and structured
# output settings, strict tool schemas and deferred (searched) tools.
BEDROCK_BRIDGE: tuple[Bridge, ...] = (
    Bridge("context_management", ("context-management-*",)),
    Bridge("output_config", ("effort-*", "structured-outputs-*")),
    Bridge("output_format", ("structured-outputs-*",)),
    Bridge("tools[].strict", ("structured-outputs-*",)),
    Bridge("tools[].defer_loading", ("advanced-tool-use-*", "tool-search-tool-*")),
)


def bridge_of(drop_fields: Iterable[str], drop_betas: Iterable[str]) -> tuple[Bridge, ...]:
    """A provider's bridge: the kind's own, plus its ``drop_fields`` (each
    alone) and ``drop_betas`` (each alone, a glob)."""
    extra = [Bridge(f, ()) for f in drop_fields] + [Bridge("", (b,)) for b in drop_betas]
    return BEDROCK_BRIDGE + tuple(extra)


def invoke_path(model_id: str, *, stream: bool) -> bytes:
    """The path of InvokeModel (or its streaming twin) for ``model_id``
    (an ID, an inference profile or an ARN: percent-encoded whole)."""
    verb = "invoke-with-response-stream" if stream else "invoke"
    return f"/model/{quote(model_id, safe='')}/{verb}".encode()


def count_tokens_path(model_id: str) -> bytes:
    return f"/model/{quote(model_id, safe='')}/count-tokens".encode()


def split_betas(values: Iterable[bytes]) -> list[str]:
    """The ``anthropic-beta`` header values as one list, in order, once each."""
    out: list[str] = []
    for value in values:
        for item in value.decode("latin-1").split(","):
            item = item.strip()
            if item and item not in out:
                out.append(item)
    return out


def bridged(
    raw: bytes,
    doc: dict[str, Any],
    betas: list[str],
    bridge: tuple[Bridge, ...],
    *,
    fixed: set[str],
    head: bytes,
) -> tuple[bytes, list[str], list[str]]:
    """The cloud's body: the members in ``fixed`` and what the bridge
    rejects removed (each field with its betas), ``head`` (members, JSON)
    put first; every other byte as sent. Returns (body, the betas kept,
    what was dropped: betas, then fields). ``head`` may hold ``{betas}``
    for the kept betas as a JSON list."""
    dropped: list[str] = []
    kept_betas: list[str] = []
    rejected = {b.field for b in bridge if b.field}
    for beta in betas:
        hit = [b for b in bridge if b.matches_beta(beta)]
        if hit:
            dropped.append(beta)
            rejected.update(b.field for b in hit if b.field)
        else:
            kept_betas.append(beta)
    members = object_members(raw)
    top = {f for f in rejected if "[" not in f} | fixed
    drop = {i for i, m in enumerate(members) if m.key in top}
    edits = remove_elements([(m.start, m.end) for m in members], drop)
    dropped += sorted({m.key for m in members if m.key in top} - fixed)
    tool_fields = {f.split("].", 1)[1] for f in rejected if f.startswith("tools[].")}
    tools = doc.get("tools")
    if tool_fields and isinstance(tools, list):
        more, seen = tool_field_edits(raw, members, tools, tool_fields)
        edits += more
        dropped += [f"tools[].{f}" for f in sorted(seen)]
    head = head.replace(b"{betas}", orjson.dumps(kept_betas))
    survivors = [i for i in range(len(members)) if i not in drop]
    head += b"," if survivors else b""
    opening = raw.index(b"{") + 1
    edits.insert(0, Edit(opening, opening, head))  # before a deletion starting there
    return apply(raw, edits), kept_betas, dropped


def invoke_body(
    raw: bytes, doc: dict[str, Any], betas: list[str], bridge: tuple[Bridge, ...] = BEDROCK_BRIDGE
) -> tuple[bytes, list[str]]:
    """(the body for InvokeModel, what the bridge removed: fields and betas).

    ``raw`` is the Messages body and ``doc`` its parse (a JSON object)."""
    own = doc.get("anthropic_beta")  # a client speaking Bedrock's format sends its own
    if isinstance(own, list):
        betas = betas + [b for b in own if isinstance(b, str) and b not in betas]
    kept = [b for b in betas if not any(x.matches_beta(b) for x in bridge)]
    head = b'"anthropic_version":' + orjson.dumps(ANTHROPIC_VERSION)
    if kept:
        head += b',"anthropic_beta":{betas}'
    fixed = {"model", "stream", "anthropic_version", "anthropic_beta"}
    body, _, dropped = bridged(raw, doc, betas, bridge, fixed=fixed, head=head)
    return body, dropped


def tool_field_edits(
    raw: bytes, members: list[Any], tools: list[Any], fields: set[str]
) -> tuple[list[Edit], set[str]]:
    """Edits removing ``fields`` from each tool object that has them."""
    spans = [m for m in members if m.key == "tools"]
    if not spans:
        return [], set()
    items = array_items(raw, spans[-1].value_start)
    edits: list[Edit] = []
    seen: set[str] = set()
    for (start, _), tool in zip(items, tools, strict=True):
        if not isinstance(tool, dict) or not fields & tool.keys():
            continue
        inner = object_members(raw, start)
        hit = {i for i, m in enumerate(inner) if m.key in fields}
        seen |= {inner[i].key for i in hit}
        edits += remove_elements([(m.start, m.end) for m in inner], hit)
    return edits, seen


def count_tokens_body(invoke: bytes) -> bytes:
    """CountTokens' body around an InvokeModel body."""
    encoded = base64.b64encode(invoke).decode()
    return orjson.dumps({"input": {"invokeModel": {"body": encoded}}})


def count_tokens_answer(raw: bytes) -> bytes | None:
    """Bedrock's ``{"inputTokens": n}`` as Anthropic's ``{"input_tokens": n}``
    (None when it is not that shape)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    n = doc.get("inputTokens") if isinstance(doc, dict) else None
    return orjson.dumps({"input_tokens": n}) if isinstance(n, int) else None
