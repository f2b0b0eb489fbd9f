"""A Messages request as Claude on Vertex AI takes it (pure), edited at the
byte level like Bedrock's (bedrock/request.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import orjson

from trioproxy.bedrock.request import Bridge, tool_field_edits
from trioproxy.rules.jsonedit import Edit, apply, object_members, remove_elements

ANTHROPIC_VERSION = "vertex-2023-10-16"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


def model_path(project: str, region: str, model: str, verb: str) -> bytes:
    """``/v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:{verb}``."""
    return (
        f"/v1/projects/{quote(project, safe='')}/locations/{quote(region, safe='')}"
        f"/publishers/anthropic/models/{quote(model, safe='@')}:{verb}"
    ).encode()


def predict_path(project: str, region: str, model: str, *, stream: bool) -> bytes:
    return model_path(project, region, model, "streamRawPredict" if stream else "rawPredict")


def count_tokens_path(project: str, region: str) -> bytes:
    return model_path(project, region, "count-tokens", "rawPredict")


def predict_body(
    raw: bytes,
    doc: dict[str, Any],
    betas: Iterable[str],
    bridge: tuple[Bridge, ...],
    *,
    keep_model: bool = False,
) -> tuple[bytes, list[str], list[str]]:
    """(the body for rawPredict, the betas to send as the header, what the
    bridge removed). ``keep_model``: token counting names the model in the
    body."""
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
    fixed = {"anthropic_version"} | (set() if keep_model else {"model"})
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
    head = b'"anthropic_version":' + orjson.dumps(ANTHROPIC_VERSION)
    survivors = [i for i in range(len(members)) if i not in drop]
    head += b"," if survivors else b""
    opening = raw.index(b"{") + 1
    edits.insert(0, Edit(opening, opening, head))
    return apply(raw, edits), kept_betas, dropped
