"""What an attempt (exchange/attempt.py) sees of an upstream request, whatever the protocol."""

from __future__ import annotations

from typing import Protocol

from trioproxy.errors import UpstreamError
from trioproxy.proto.events import Http, RequestHead, ResponseHead


class UpstreamClosed(UpstreamError):
    """The upstream connection closed or reset before the response was complete.

    ``retryable`` is True when the request provably was not processed: a reused
    HTTP/1.1 connection that the server had closed before sending any byte
    back, or an HTTP/2 stream refused (REFUSED_STREAM, or above GOAWAY's
    last-stream-id). Such a request may be sent once more on a fresh connection.
    """

    def __init__(self, message: str, *, retryable: bool = False, detail: str | None = None) -> None:
        super().__init__(message, detail=detail)
        self.retryable = retryable


class UpstreamWriteFailed(UpstreamClosed):
    """Sending to the upstream failed. Typed once, where the socket said so
    (h1.py, h2.py), with the words the client may read and ``retryable``
    already decided: a failed head write is the request's failure as it
    is; a failed body write stops the body pump, and the response side
    decides what the client sees (an early answer may still be readable)."""


class Lease(Protocol):
    """One request's use of an upstream connection (h1) or stream (h2).

    Exactly one task sends (head, body, end) and one receives (head, body).
    """

    protocol: Http
    reused: bool

    async def send_head(self, head: RequestHead, *, has_body: bool) -> None: ...

    async def send_body(self, data: bytes) -> None: ...

    async def end_body(self) -> None: ...

    async def receive_head(self) -> ResponseHead: ...

    async def receive_body(self) -> bytes | None: ...
