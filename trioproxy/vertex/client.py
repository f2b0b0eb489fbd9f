"""Clients that speak Vertex AI's format to the proxy (Claude Code with
``CLAUDE_CODE_USE_VERTEX=1`` and ``ANTHROPIC_VERTEX_BASE_URL`` at the proxy's
``/v1``), sans-IO.

``POST /v1/projects/{p}/locations/{l}/publishers/anthropic/models/{model}:rawPredict``
(``:streamRawPredict``, and ``count-tokens:rawPredict`` with the model in
the body) under any project and location becomes a Messages request: the
model from the path under the API's name (a pinned ``@version`` dropped),
no ``anthropic_version``. Claude on Vertex answers in the Messages API's
own shapes (SSE, JSON, Anthropic's errors), so the answer needs nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

import orjson

from trioproxy.rules.jsonedit import Edit, apply, object_members, remove_elements

_PATH = re.compile(
    r"^/v1/projects/[^/]+/locations/[^/]+/publishers/anthropic/models/(?P<model>[^/:]+)"
    r":(?P<verb>rawPredict|streamRawPredict)$"
)


@dataclass(frozen=True, slots=True)
class VertexTarget:
    model: str  # "count-tokens" for token counting
    verb: str  # rawPredict or streamRawPredict

    @property
    def counting(self) -> bool:
        return self.model == "count-tokens"


def parse_target(method: bytes, path: bytes) -> VertexTarget | None:
    if method != b"POST":
        return None
    m = _PATH.match(unquote(path.decode("latin-1")))
    return None if m is None else VertexTarget(m["model"], m["verb"])


def unserved(method: bytes, path: bytes) -> str:
    """What a 404 says for a request under Vertex AI's ``/v1/projects/``
    that names no method the proxy serves; "" for any other request."""
    if not path.startswith(b"/v1/projects/") or parse_target(method, path) is not None:
        return ""
    where = path.decode("latin-1")[:200]
    return f"The requested URL {where} was not found on this server ({method.decode('latin-1')})."


def google_error(status: int, message: str) -> bytes:
    """Google's error shape, as its front answers a path it does not serve."""
    names = {404: "NOT_FOUND", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED"}
    names |= {429: "RESOURCE_EXHAUSTED", 413: "INVALID_ARGUMENT", 400: "INVALID_ARGUMENT"}
    name = names.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
    return orjson.dumps({"error": {"code": status, "message": message, "status": name}})


def api_model(model: str) -> str:
    """``claude-opus-5-5@20261101`` -> ``claude-opus-5-5``."""
    return model.split("@", 1)[0]


def to_messages(raw: bytes, target: VertexTarget) -> bytes:
    """The Messages body: the model from the path (token counting keeps the
    body's), no ``anthropic_version``; byte-level edits. Raises ValueError
    for a body that is not a JSON object."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValueError("Invalid JSON payload received.") from None
    if not isinstance(doc, dict):
        raise ValueError("Invalid JSON payload received: expected an object.")
    members = object_members(raw)
    gone = {"anthropic_version"} | (set() if target.counting else {"model"})
    drop = {i for i, m in enumerate(members) if m.key in gone}
    edits = remove_elements([(m.start, m.end) for m in members], drop)
    if target.counting:
        if isinstance(doc.get("model"), str):
            doc_model = api_model(doc["model"])
            for m in members:
                if m.key == "model":
                    edits.append(Edit(m.value_start, m.end, orjson.dumps(doc_model)))
        return apply(raw, edits)
    head = b'"model":' + orjson.dumps(api_model(target.model))
    if target.verb == "streamRawPredict" and doc.get("stream") is not True:
        head += b',"stream":true'
        drop |= {i for i, m in enumerate(members) if m.key == "stream"}
        edits = remove_elements([(m.start, m.end) for m in members], drop)
    head += b"," if len(drop) < len(members) else b""
    opening = raw.index(b"{") + 1
    edits.insert(0, Edit(opening, opening, head))
    return apply(raw, edits)
