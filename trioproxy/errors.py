"""One error tree, and one table mapping it to (HTTP status, Anthropic error type).

Every error the proxy itself produces reaches the client in Anthropic's shape,
``{"type":"error","error":{"type":...,"message":...},"request_id":...}``, so SDKs
and Claude Code handle it like any API error. Messages are plain words about what
happened; they never carry a credential or a body.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, TypeVar

import orjson

from trioproxy.proto.errors import ProtocolError
from trioproxy.proto.events import Headers, ResponseHead


class ProxyError(Exception):
    """An error the proxy answers itself (before any response byte was sent)."""

    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "api_error"

    def __init__(
        self, message: str, *, retry_after: float | None = None, detail: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message  # what the client sees
        self.retry_after = retry_after  # seconds, sent as `retry-after`
        # What the logs see: may name upstream addresses, which a client's
        # error text never does (they are the operator's business).
        self.detail = detail or message


class InvalidRequest(ProxyError):
    status, error_type = 400, "invalid_request_error"


class AuthenticationFailed(ProxyError):
    status, error_type = 401, "authentication_error"


class PermissionDenied(ProxyError):
    status, error_type = 403, "permission_error"


class NotFound(ProxyError):
    status, error_type = 404, "not_found_error"


class MethodNotAllowed(ProxyError):
    status, error_type = 405, "invalid_request_error"


class Conflict(ProxyError):
    status, error_type = 409, "invalid_request_error"


class ClientTimeout(ProxyError):
    status, error_type = 408, "timeout_error"


class RequestTooLarge(ProxyError):
    status, error_type = 413, "request_too_large"


class HeadersTooLarge(ProxyError):
    status, error_type = 431, "invalid_request_error"


class VersionNotSupported(ProxyError):
    status, error_type = 505, "invalid_request_error"


class UpstreamError(ProxyError):
    """The upstream could not be reached or broke the protocol."""

    status, error_type = 502, "api_error"


class Unavailable(ProxyError):
    status, error_type = 503, "api_error"


class UpstreamTimeout(ProxyError):
    status, error_type = 504, "timeout_error"


class RateLimited(ProxyError):
    """A limit the operator set: every provider that could serve is over its
    token quota. Upstream 429s are never this: they pass through verbatim."""

    status, error_type = 429, "rate_limit_error"


class Overloaded(ProxyError):
    """The proxy itself cannot take the request now (every upstream connection
    it may open is busy). 503 with `retry-after`: clients back off and retry."""

    status, error_type = 503, "overloaded_error"


class ClientGone(Exception):
    """The client closed its connection or reset its stream: stop the exchange."""


_BY_STATUS: dict[int, type[ProxyError]] = {
    400: InvalidRequest,
    408: ClientTimeout,
    413: RequestTooLarge,
    431: HeadersTooLarge,
    502: UpstreamError,
    505: VersionNotSupported,
}


E = TypeVar("E", bound=ProxyError)


def about_upstream(cls: type[E], label: object, what: str, **kwargs: Any) -> E:
    """An upstream failure told twice: the client reads "the upstream
    {what}", the logs read "upstream {label} {what}" (an upstream's address is
    the operator's business, not the client's)."""
    return cls(f"the upstream {what}", detail=f"upstream {label} {what}", **kwargs)


def from_protocol_error(exc: ProtocolError) -> ProxyError:
    cls = _BY_STATUS.get(exc.status, InvalidRequest)
    return cls(exc.message)


def error_body(error_type: str, message: str, request_id: str | None = None) -> bytes:
    doc: dict[str, object] = {"type": "error", "error": {"type": error_type, "message": message}}
    if request_id:
        doc["request_id"] = request_id
    return orjson.dumps(doc)


def error_response(exc: ProxyError, request_id: str | None = None) -> tuple[ResponseHead, bytes]:
    body = error_body(exc.error_type, exc.message, request_id)
    headers: Headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-trioproxy-error", b"1"),  # tells proxy-made errors from upstream ones
    ]
    if request_id:
        headers.append((b"request-id", request_id.encode()))
    if exc.retry_after is not None:
        headers.append((b"retry-after", str(max(1, math.ceil(exc.retry_after))).encode()))
    return ResponseHead(exc.status, headers), body


def sse_error_event(message: str) -> bytes:
    """The final `event: error` written into a stream the upstream broke
    (``stream_failure = "error_event"``; by default the stream is cut instead)."""
    data = orjson.dumps({"type": "error", "error": {"type": "api_error", "message": message}})
    return b"event: error\ndata: " + data + b"\n\n"
