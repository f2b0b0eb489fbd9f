"""AWS's binary event stream (``application/vnd.amazon.eventstream``), sans-IO.

Bedrock's ``invoke-with-response-stream`` answers in it. A message is::

    total length (4) | headers length (4) | prelude CRC32 (4)
    headers | payload | message CRC32 (4)

all integers big-endian, the CRCs over every byte before them. A header
is a name (1-byte length, UTF-8), a type byte and a typed value. The
decoder takes bytes as they arrive and gives whole messages; nothing is
held beyond one message, and a message's declared length is capped, so a
hostile or broken peer cannot grow the proxy's memory. The encoder is
for the fakes and for answering clients that speak Bedrock's format.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

PRELUDE = 12  # bytes: two lengths and the prelude's CRC
MAX_MESSAGE = 24 * 1024 * 1024 + 128 * 1024  # bytes; botocore's caps (payload + headers)

HeaderValue = bool | int | bytes | str

# Header value types (the wire's type byte).
_TRUE, _FALSE, _BYTE, _SHORT, _INT, _LONG, _BYTES, _STRING, _TIMESTAMP, _UUID = range(10)
_FIXED = {_BYTE: ">b", _SHORT: ">h", _INT: ">i", _LONG: ">q", _TIMESTAMP: ">q"}


class EventStreamError(ValueError):
    """The bytes are not a valid event stream (a CRC, a length or a header)."""


@dataclass(frozen=True, slots=True)
class EventMessage:
    headers: dict[str, HeaderValue]
    payload: bytes
    raw: bytes = field(default=b"", compare=False, repr=False)  # the frame, if kept

    @property
    def message_type(self) -> str:
        """``event``, ``exception`` or ``error``."""
        return str(self.headers.get(":message-type", "event"))

    @property
    def event_type(self) -> str:
        """The event's or exception's type (``chunk``, ``throttlingException``)."""
        kind = self.headers.get(":event-type") or self.headers.get(":exception-type")
        return str(kind or self.headers.get(":error-code", ""))


class EventStreamDecoder:
    """Feed bytes; get the whole messages they complete."""

    __slots__ = ("_buffer", "_keep_raw", "_max")

    def __init__(self, max_message: int = MAX_MESSAGE, *, keep_raw: bool = False) -> None:
        """``keep_raw``: each message carries its whole frame too (a relay
        that may pass it on as it came)."""
        self._buffer = bytearray()
        self._max = max_message
        self._keep_raw = keep_raw

    @property
    def at_boundary(self) -> bool:
        """Nothing of a message is held: the stream may end here."""
        return not self._buffer

    def feed(self, data: bytes) -> list[EventMessage]:
        out: list[EventMessage] = []
        buf = self._buffer
        buf += data
        start = 0
        while len(buf) - start >= PRELUDE:
            total, headers_len, crc = struct.unpack_from(">III", buf, start)
            if zlib.crc32(buf[start : start + 8]) != crc:
                raise EventStreamError("prelude CRC mismatch")
            if total > self._max or total < PRELUDE + 4 or headers_len > total - PRELUDE - 4:
                raise EventStreamError(f"message length {total} (headers {headers_len}) is invalid")
            if len(buf) - start < total:
                break
            end = start + total
            (message_crc,) = struct.unpack_from(">I", buf, end - 4)
            if zlib.crc32(memoryview(buf)[start : end - 4]) != message_crc:
                raise EventStreamError("message CRC mismatch")
            headers_at = start + PRELUDE
            headers = _headers(bytes(buf[headers_at : headers_at + headers_len]))
            payload = bytes(buf[headers_at + headers_len : end - 4])
            raw = bytes(buf[start:end]) if self._keep_raw else b""
            out.append(EventMessage(headers, payload, raw))
            start = end
        if start:
            del buf[:start]
        return out


def encode_message(headers: Mapping[str, HeaderValue], payload: bytes) -> bytes:
    """One message; strings and bytes as their own types, ints as int32,
    booleans as the two boolean types."""
    head = b"".join(_header(name, value) for name, value in headers.items())
    total = PRELUDE + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + head + payload
    return body + struct.pack(">I", zlib.crc32(body))


def _header(name: str, value: HeaderValue) -> bytes:
    raw = name.encode()
    out = struct.pack(">B", len(raw)) + raw
    if isinstance(value, bool):
        return out + struct.pack(">B", _TRUE if value else _FALSE)
    if isinstance(value, int):
        return out + struct.pack(">Bi", _INT, value)
    data = value.encode() if isinstance(value, str) else value
    kind = _STRING if isinstance(value, str) else _BYTES
    return out + struct.pack(">BH", kind, len(data)) + data


def _headers(raw: bytes) -> dict[str, HeaderValue]:
    out: dict[str, HeaderValue] = {}
    at = 0
    try:
        while at < len(raw):
            size = raw[at]
            name = raw[at + 1 : at + 1 + size].decode()
            at += 1 + size
            kind = raw[at]
            at += 1
            value: HeaderValue
            if kind in (_TRUE, _FALSE):
                value = kind == _TRUE
            elif kind in _FIXED:
                fmt = _FIXED[kind]
                (value,) = struct.unpack_from(fmt, raw, at)
                at += struct.calcsize(fmt)
            elif kind in (_BYTES, _STRING):
                (length,) = struct.unpack_from(">H", raw, at)
                data = raw[at + 2 : at + 2 + length]
                if len(data) != length:
                    raise EventStreamError("a header value runs past the headers")
                value = data.decode() if kind == _STRING else data
                at += 2 + length
            elif kind == _UUID:
                value = raw[at : at + 16]
                at += 16
            else:
                raise EventStreamError(f"unknown header value type {kind}")
            out[name] = value
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise EventStreamError(f"malformed headers: {exc}") from None
    if at != len(raw):
        raise EventStreamError("a header value runs past the headers")
    return out
