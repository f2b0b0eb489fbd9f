"""Bedrock's event stream as the Messages API's SSE, frame by frame (pure).

Each ``chunk`` event's payload is ``{"bytes": "<base64>"}`` (Bedrock may add
a padding member); the bytes are one of Anthropic's events, exactly the
JSON the Anthropic API would put on its ``data:`` line. So each becomes
``event: {type}\\ndata: {those bytes}\\n\\n``, its JSON untouched. An
exception event becomes Anthropic's ``event: error`` with the mapped type
and Bedrock's words, and ends the stream. Nothing is held beyond the frame
being read, but for a client of Bedrock's format: then each frame is
remembered by the event it became (relay.py), to be passed on as it came.
"""

from __future__ import annotations

import base64
import binascii
import re

import orjson

from trioproxy.bedrock.errors import mapped_error
from trioproxy.bedrock.relay import FrameMemo
from trioproxy.proto.eventstream import EventMessage, EventStreamDecoder, EventStreamError

# The event's type where the API puts it, first: no parse for the common case.
_TYPE = re.compile(rb'\{\s*"type"\s*:\s*"([a-z_]+)"')


class StreamError(ValueError):
    """The provider's stream cannot be translated (the relay cuts it)."""


class EventStreamToSSE:
    __slots__ = ("_decoder", "_ended", "_memo")

    def __init__(self, memo: FrameMemo | None = None) -> None:
        self._decoder = EventStreamDecoder(keep_raw=memo is not None)
        self._ended = False
        self._memo = memo

    @property
    def ended(self) -> bool:
        """An error event was written: nothing may follow it."""
        return self._ended

    def feed(self, data: bytes) -> bytes:
        try:
            messages = self._decoder.feed(data)
        except EventStreamError as exc:
            raise StreamError(str(exc)) from None
        out = [self._event(m) for m in messages if not self._ended]
        return b"".join(out)

    def end(self) -> bytes:
        """The upstream's body ended: half a frame is a cut stream."""
        if not self._decoder.at_boundary:
            raise StreamError("the event stream ended inside a frame")
        return b""

    def _event(self, msg: EventMessage) -> bytes:
        if msg.message_type != "event":
            self._ended = True
            data = error_data(msg)
            if self._memo is not None:
                self._memo.remember(data, msg.raw)
            return b"event: error\ndata: " + data + b"\n\n"
        if msg.event_type != "chunk":
            return b""  # an event type this translation does not know: not Anthropic's
        try:
            wrapper = orjson.loads(msg.payload)
            inner = base64.b64decode(wrapper["bytes"], validate=True)
        except (orjson.JSONDecodeError, KeyError, TypeError, binascii.Error):
            raise StreamError("a chunk event does not carry base64 bytes") from None
        m = _TYPE.match(inner)
        if m is not None:
            name = m.group(1)
        else:
            try:
                doc = orjson.loads(inner)
            except orjson.JSONDecodeError:
                raise StreamError("a chunk's bytes are not JSON") from None
            kind = doc.get("type") if isinstance(doc, dict) else None
            if not isinstance(kind, str):
                raise StreamError("a chunk's event has no type")
            name = kind.encode()
        if self._memo is not None:
            self._memo.remember(inner, msg.raw)
        return b"event: " + name + b"\ndata: " + inner + b"\n\n"


def error_data(msg: EventMessage) -> bytes:
    """An exception (or error) frame as the data of Anthropic's ``event: error``."""
    message = str(msg.headers.get(":error-message", ""))
    if msg.payload:
        try:
            doc = orjson.loads(msg.payload)
            if isinstance(doc, dict):
                message = str(doc.get("message") or doc.get("Message") or message)
        except orjson.JSONDecodeError:
            message = msg.payload.decode("utf-8", "replace")
    _, body = mapped_error(msg.event_type, 500, message or msg.event_type)
    return body
