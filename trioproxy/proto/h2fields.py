"""RFC 9113's rules for header fields (8.2, 8.3), checked in one pass.

h2 can check these itself (``h2.utilities.validate_headers``), but as a
chain of six generators that walk the list byte by byte in Python: about a
tenth of the CPU of a small request over HTTP/2, each way. The same verdict
comes from one loop and two regular expressions over the joined names and
values (a property test holds it equal to h2's on generated header lists).
Both roles check per stream, so that a malformed header list resets one
stream and not the connection (see proto/h2.py); a server refuses CONNECT
before this.
"""

from __future__ import annotations

import re

from trioproxy.proto.events import Headers

# A field name: visible ASCII but upper case letters and the colon (8.2.1).
_NAMES = re.compile(rb"[\x21-\x39\x3b-\x40\x5b-\x7e]+(?:\n[\x21-\x39\x3b-\x40\x5b-\x7e]+)*")
# A value: no NUL, CR or LF (8.2.1); values are joined by a space here.
_BAD_VALUE_BYTE = re.compile(rb"[\x00\r\n]")
_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding", b"upgrade"}
)
_REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path"})
_REQUIRED = frozenset({b":method", b":scheme", b":path"})
_STATUS = frozenset({b":status"})
_BLANK = (0x20, 0x09)  # SP, HTAB: not first or last in a value


def request_fields_malformed(headers: Headers) -> bool:
    """True when a non-CONNECT request's header list (pseudo-header fields
    first, as received) breaks RFC 9113: the stream is reset, never served."""
    return _malformed(headers, _REQUEST_PSEUDO, _REQUIRED, request=True)


def response_fields_malformed(headers: Headers) -> bool:
    """The same for a response's (or an informational response's) head."""
    return _malformed(headers, _STATUS, _STATUS, request=False)


def _malformed(
    headers: Headers, allowed: frozenset[bytes], required: frozenset[bytes], *, request: bool
) -> bool:
    pseudo: set[bytes] = set()
    names: list[bytes] = []
    values: list[bytes] = []
    regular = False
    host: bytes | None = None
    authority: bytes | None = None
    for name, value in headers:
        if name[:1] == b":":
            if regular or name in pseudo or name not in allowed:
                return True
            pseudo.add(name)
            if name == b":authority":
                authority = value
            elif name == b":path" and not value:
                return True
        else:
            regular = True
            names.append(name)
            if name in _CONNECTION_SPECIFIC:
                return True
            if name == b"te" and value.lower() != b"trailers":
                return True
            if name == b"host" and request:
                if host is not None:
                    return True
                host = value
        if value:
            if value[0] in _BLANK or value[-1] in _BLANK:
                return True
            values.append(value)
    if not pseudo >= required:
        return True
    if request and (
        (host is None and authority is None)
        or (host is not None and authority is not None and host != authority)
    ):
        return True
    if names and _NAMES.fullmatch(b"\n".join(names)) is None:
        return True
    return _BAD_VALUE_BYTE.search(b" ".join(values)) is not None
