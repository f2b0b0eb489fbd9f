"""Neutral HTTP events shared by the HTTP/1.1 and HTTP/2 adapters.

Headers are ``list[tuple[bytes, bytes]]`` with lower-case names, in wire order;
they are decoded to ``str`` only at the edges (logs, config).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Http(StrEnum):
    """An HTTP version as the proxy names it: in the access line (protocol),
    the connection and in-flight counters, and the metrics' labels."""

    H1 = "h1"
    H2 = "h2"


Headers = list[tuple[bytes, bytes]]
# What a parser is fed: bytes as read (a memoryview into a shared read buffer
# is valid only until the next read: parsers copy what they keep).
Received = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: bytes
    target: bytes  # origin-form path + query, byte-exact as the client sent it
    headers: Headers
    http_version: bytes = b"1.1"  # b"1.0", b"1.1" or b"2"
    authority: bytes = b""  # Host or :authority
    scheme: bytes = b"http"

    def header(self, name: bytes) -> bytes | None:
        """First value of a header (names are already lower case)."""
        for k, v in self.headers:
            if k == name:
                return v
        return None

    @property
    def path(self) -> bytes:
        """The target without its query string."""
        return self.target.split(b"?", 1)[0]


@dataclass(frozen=True, slots=True)
class ResponseHead:
    status: int
    headers: Headers = field(default_factory=list)
    reason: bytes = b""

    def header(self, name: bytes) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


@dataclass(frozen=True, slots=True)
class BadRequest:
    """A request head refused before anything else (``proto.request``): the
    transport answers ``status`` itself; no application ever sees it."""

    head: RequestHead
    status: int
    message: str


@dataclass(frozen=True, slots=True)
class BodyChunk:
    data: bytes
    # Bytes of flow-control credit this chunk used (HTTP/2 counts padding too);
    # the consumer hands it back only once the chunk has been forwarded.
    flow_controlled_length: int = 0


@dataclass(frozen=True, slots=True)
class EndOfMessage:
    trailers: Headers = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class InformationalResponse:
    status: int
    headers: Headers = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PeerClosed:
    """The peer closed the connection (clean EOF)."""


@dataclass(frozen=True, slots=True)
class StreamReset:
    """An HTTP/2 stream was reset by the peer (RST_STREAM) or refused."""

    error_code: int = 0
    refused: bool = False  # REFUSED_STREAM or above GOAWAY's last id: safe to retry


@dataclass(frozen=True, slots=True)
class NeedData:
    """The adapter cannot produce another event until it is fed more bytes."""


@dataclass(frozen=True, slots=True)
class Paused:
    """HTTP/1.1: a complete request was read; more (pipelined) bytes wait until
    the response is done and the next cycle starts."""


NEED_DATA = NeedData()
PAUSED = Paused()
PEER_CLOSED = PeerClosed()
