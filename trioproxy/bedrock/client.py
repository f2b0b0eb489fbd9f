"""Clients that speak Bedrock's format to the proxy (Claude Code with
``CLAUDE_CODE_USE_BEDROCK=1`` and ``ANTHROPIC_BEDROCK_BASE_URL``), sans-IO.

Their request becomes a Messages request: the model from the path, the
``anthropic_beta`` body list as the ``anthropic-beta`` header, no
``anthropic_version`` (the head carries the API's), ``stream`` from the
endpoint. From then on it is any other request: routes, callers, scrubbing,
any provider. The answer goes back in Bedrock's format: a stream as AWS
event-stream frames (one ``chunk`` per SSE event, never SSE), errors in
AWS's shape with ``x-amzn-errortype``, a token count as ``inputTokens``.

Bedrock model IDs name the same models as the API's names
(``us.anthropic.claude-opus-5-5-v1:0`` is ``claude-opus-5-5``): routing
sees the API's name, so aliases, ``[[routes]]`` and callers' allowlists
written with it hold for these clients too.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson

from trioproxy.bedrock.relay import FrameMemo
from trioproxy.proto.eventstream import encode_message
from trioproxy.proto.sse import SSEParser
from trioproxy.rules.jsonedit import Edit, apply, object_members, remove_elements

ACTIONS = ("invoke", "invoke-with-response-stream", "count-tokens")
EVENT_STREAM = b"application/vnd.amazon.eventstream"
# A Bedrock ID or profile: an optional geography, the provider, the model, a version.
_BEDROCK_ID = re.compile(
    r"^(?:arn:aws[a-z-]*:bedrock:[^:]*:\d*:(?:inference-profile|foundation-model)/)?"
    r"(?:(?:us|eu|apac|au|jp|ca|global|us-gov)\.)?anthropic\.(?P<name>claude-[a-z0-9.-]+?)"
    r"(?:-\d{8})?(?:-v\d+(?::\d+)?)?$"
)
_CHUNK = {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}
# Anthropic's error types -> (status, AWS exception name) as Bedrock answers them.
_AWS_ERRORS: dict[str, tuple[int, str]] = {
    "rate_limit_error": (429, "ThrottlingException"),
    "overloaded_error": (503, "ServiceUnavailableException"),
    "invalid_request_error": (400, "ValidationException"),
    "request_too_large": (413, "ValidationException"),
    "authentication_error": (403, "UnrecognizedClientException"),
    "permission_error": (403, "AccessDeniedException"),
    "not_found_error": (404, "ResourceNotFoundException"),
    "timeout_error": (408, "ModelTimeoutException"),
    "api_error": (500, "InternalServerException"),
}
_STREAM_EXCEPTIONS = {
    "rate_limit_error": "throttlingException",
    "overloaded_error": "serviceUnavailableException",
    "invalid_request_error": "validationException",
    "timeout_error": "modelTimeoutException",
}


@dataclass(frozen=True, slots=True)
class BedrockTarget:
    model: str  # as the client named it
    action: str  # invoke, invoke-with-response-stream or count-tokens


def parse_target(method: bytes, path: bytes) -> BedrockTarget | None:
    """``POST /model/{id}/{action}``; None for any other request."""
    if method != b"POST" or not path.startswith(b"/model/"):
        return None
    parts = path.decode("latin-1").split("/")
    if len(parts) != 4 or parts[3] not in ACTIONS or not parts[2]:
        return None
    return BedrockTarget(unquote(parts[2]), parts[3])


def unserved(method: bytes, path: bytes) -> str:
    """What a 404 says for a request in Bedrock's format (a ``/model/`` path,
    anything but a lookup under ``/inference-profiles``) that names no
    operation the proxy serves; "" for any other request."""
    served = parse_target(method, path) is not None
    profiles = path == b"/inference-profiles" or path.startswith(b"/inference-profiles/")
    if served or not (path.startswith(b"/model/") or profiles):
        return ""
    if profiles and method in (b"GET", b"HEAD"):
        return ""  # answered from the catalogue
    verb = method.decode("latin-1")
    return f"Unknown operation: {verb} {path.decode('latin-1')[:200]}"


def api_model(bedrock_id: str) -> str:
    """The API's name of a Bedrock model ID or inference profile (as it is
    when it is not one: an alias, a name the proxy's tables know)."""
    m = _BEDROCK_ID.match(bedrock_id)
    return m.group("name") if m else bedrock_id


def to_messages(raw: bytes, target: BedrockTarget) -> tuple[bytes, list[str]]:
    """(the Messages body, the betas for the ``anthropic-beta`` header).
    Byte-level edits: every other byte as the client sent it. Raises
    ValueError (a 400) for a body that is not a JSON object."""
    if target.action == "count-tokens":
        raw = _counted_body(raw)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValueError("Malformed input request: the body is not JSON") from None
    if not isinstance(doc, dict):
        raise ValueError("Malformed input request: expected a JSON object")
    betas = doc.get("anthropic_beta")
    betas = [str(b) for b in betas] if isinstance(betas, list) else []
    members = object_members(raw)
    gone = {"anthropic_version", "anthropic_beta", "model", "stream"}
    drop = {i for i, m in enumerate(members) if m.key in gone}
    edits = remove_elements([(m.start, m.end) for m in members], drop)
    head = b'"model":' + orjson.dumps(api_model(target.model))
    if target.action == "invoke-with-response-stream":
        head += b',"stream":true'
    head += b"," if len(drop) < len(members) else b""
    opening = raw.index(b"{") + 1
    edits.insert(0, Edit(opening, opening, head))
    return apply(raw, edits), betas


def _counted_body(raw: bytes) -> bytes:
    """CountTokens' ``input.invokeModel.body`` (base64), unwrapped."""
    try:
        doc = orjson.loads(raw)
        return base64.b64decode(doc["input"]["invokeModel"]["body"], validate=True)
    except (orjson.JSONDecodeError, KeyError, TypeError, binascii.Error):
        raise ValueError("Malformed input request: expected input.invokeModel.body") from None


class SSEToEventStream:
    """Anthropic's SSE events as Bedrock's frames, as they arrive: each
    event's JSON, base64, in a ``chunk``; an ``error`` event an exception
    frame (the stream ends there); pings dropped (Bedrock sends none). An
    event a Bedrock provider sent, that no stage changed, goes as the frame
    it came in (``memo``, relay.py)."""

    __slots__ = ("_memo", "_sse")

    def __init__(self, memo: FrameMemo | None = None) -> None:
        self._sse = SSEParser()
        self._memo = memo

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        for ev in self._sse.feed(data):
            if ev.event == b"ping":
                continue
            if self._memo and (frame := self._memo.take(ev.data)) is not None:
                out.append(frame)
                continue
            if ev.event == b"error":
                out.append(exception_frame(ev.data))
                continue
            payload = orjson.dumps({"bytes": base64.b64encode(ev.data).decode()})
            out.append(encode_message(_CHUNK, payload))
        return b"".join(out)


def exception_frame(data: bytes) -> bytes:
    """An SSE ``event: error``'s data as Bedrock's exception frame."""
    kind, message = error_of(data)
    name = _STREAM_EXCEPTIONS.get(kind, "internalServerException")
    headers = {
        ":message-type": "exception",
        ":exception-type": name,
        ":content-type": "application/json",
    }
    return encode_message(headers, orjson.dumps({"message": message}))


def aws_error(status: int, body: bytes) -> tuple[int, str, bytes]:
    """(status, x-amzn-errortype, body) for an Anthropic-shaped error; the
    message's words kept."""
    kind, message = error_of(body)
    status, name = _AWS_ERRORS.get(
        kind, (status, "InternalServerException" if status >= 500 else "ValidationException")
    )
    return status, name, orjson.dumps({"message": message})


def count_answer(body: bytes) -> bytes | None:
    """``{"input_tokens": n}`` as CountTokens' ``{"inputTokens": n}``."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    n = doc.get("input_tokens") if isinstance(doc, dict) else None
    return orjson.dumps({"inputTokens": n}) if isinstance(n, int) else None


def error_of(data: bytes) -> tuple[str, str]:
    try:
        doc: Any = orjson.loads(data)
    except orjson.JSONDecodeError:
        return "api_error", data.decode("utf-8", "replace")
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict):
        return str(err.get("type", "api_error")), str(err.get("message", ""))
    return "api_error", data.decode("utf-8", "replace")
