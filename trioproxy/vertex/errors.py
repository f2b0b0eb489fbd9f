"""Vertex AI's errors in Anthropic's shape and status (pure).

Claude's own errors on Vertex already are Anthropic's (``{"type": "error",
...}``) and pass unchanged. Google's front answers in its own shape,
``{"error": {"code": 429, "message": "...", "status": "RESOURCE_EXHAUSTED"}}``
(a quota, a permission, an unknown model): those are mapped as Bedrock's
are, Google's words kept, so a client retries on what Anthropic would send.
"""

from __future__ import annotations

import orjson

from trioproxy.rules.wording import translated_error

# Google's canonical status -> (status, Anthropic error type).
_MAPPED: dict[str, tuple[int, str]] = {
    "RESOURCE_EXHAUSTED": (429, "rate_limit_error"),
    "UNAVAILABLE": (529, "overloaded_error"),
    "DEADLINE_EXCEEDED": (504, "timeout_error"),
    "INVALID_ARGUMENT": (400, "invalid_request_error"),
    "FAILED_PRECONDITION": (400, "invalid_request_error"),
    "OUT_OF_RANGE": (400, "invalid_request_error"),
    "PERMISSION_DENIED": (403, "permission_error"),
    "UNAUTHENTICATED": (401, "authentication_error"),
    "NOT_FOUND": (404, "not_found_error"),
    "INTERNAL": (500, "api_error"),
}
RETRY_AFTER_S = 1  # whole seconds a quota refusal is worth waiting (Google sends none)


def from_answer(status: int, raw: bytes, request_id: str = "") -> tuple[int, bytes] | None:
    """(status, Anthropic error body) for Google's error shape; None when
    the body is not that (Anthropic's own error: it passes unchanged)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        doc = None
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(doc, dict) and doc.get("type") == "error":
        return None
    if isinstance(err, dict):
        message = str(err.get("message") or f"HTTP {status}")
        known = _MAPPED.get(str(err.get("status", "")))
    else:
        message = raw.decode("utf-8", "replace").strip() or f"HTTP {status}"
        known = None
    return translated_error(status, known, message, request_id)


def retry_after(status: int) -> int | None:
    return RETRY_AFTER_S if status == 429 else None
