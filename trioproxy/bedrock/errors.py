"""Bedrock's errors in Anthropic's shape and status (pure).

A client that speaks the Messages API retries on what Anthropic would send:
429 ``rate_limit_error`` with ``retry-after``, 529 ``overloaded_error``. So
Bedrock's throttling becomes the first and its "unavailable" and "not
ready" the second; a validation error stays a 400 with Bedrock's own words,
plus the ``capability_rejected:`` token Claude Code's recovery matches on
where the words say which capability was refused (a prompt too long).
"""

from __future__ import annotations

import orjson

from trioproxy.rules.wording import translated_error

# AWS exception name (header :exception-type in a stream, x-amzn-errortype
# or the body's __type in a JSON answer) -> (status, Anthropic error type).
_MAPPED: dict[str, tuple[int, str]] = {
    "ThrottlingException": (429, "rate_limit_error"),
    "TooManyRequestsException": (429, "rate_limit_error"),
    "ServiceQuotaExceededException": (429, "rate_limit_error"),
    "ServiceUnavailableException": (529, "overloaded_error"),
    "ModelNotReadyException": (529, "overloaded_error"),
    "ModelTimeoutException": (504, "timeout_error"),
    "ValidationException": (400, "invalid_request_error"),
    "AccessDeniedException": (403, "permission_error"),
    "UnrecognizedClientException": (403, "permission_error"),
    "InvalidSignatureException": (403, "permission_error"),
    "ExpiredTokenException": (403, "permission_error"),
    "ResourceNotFoundException": (404, "not_found_error"),
    "ModelErrorException": (500, "api_error"),
    "ModelStreamErrorException": (500, "api_error"),
    "InternalServerException": (500, "api_error"),
}
RETRY_AFTER_S = 1  # whole seconds Bedrock's throttling is worth waiting (it sends none)


def exception_name(raw: str) -> str:
    """``com.amazon.coral.service#ThrottlingException:...`` -> the name, with
    the event stream's lower-case first letter (``throttlingException``)
    raised to the JSON API's."""
    name = raw.split("#")[-1].split(":")[0].strip()
    return name[:1].upper() + name[1:]


def mapped_error(name: str, status: int, message: str, request_id: str = "") -> tuple[int, bytes]:
    """(status, Anthropic error body) for an AWS error ``name`` that came
    with ``status`` (unknown names keep it, as ``api_error`` when >= 500)."""
    known = _MAPPED.get(exception_name(name)) if name else None
    return translated_error(status, known, message, request_id)


def from_json_answer(
    status: int, errortype: str, raw: bytes, request_id: str = ""
) -> tuple[int, bytes]:
    """A Bedrock JSON error answer (``{"message": ...}``, the name in the
    ``x-amzn-errortype`` header or the body's ``__type``)."""
    try:
        doc = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    message = doc.get("message") or doc.get("Message") or raw.decode("utf-8", "replace")
    name = errortype or str(doc.get("__type", ""))
    return mapped_error(name, status, str(message).strip() or f"HTTP {status}", request_id)


def retry_after(status: int) -> int | None:
    return RETRY_AFTER_S if status == 429 else None
