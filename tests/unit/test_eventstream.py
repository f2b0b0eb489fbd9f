"""AWS event stream codec: what botocore's own parser reads, in any
chunking; corrupt or oversized input is refused, never over-read."""

from __future__ import annotations

import struct
import zlib

import pytest
from botocore.eventstream import EventStreamBuffer
from hypothesis import given, settings
from hypothesis import strategies as st

from trioproxy.proto.eventstream import (
    EventMessage,
    EventStreamDecoder,
    EventStreamError,
    encode_message,
)

CHUNK = {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}
# A message as Bedrock sends it, built by hand from the format's definition
# (not by our encoder): the decoder must read the wire, not our own output.
_HEAD = b"".join(
    struct.pack(">B", len(n)) + n + b"\x07" + struct.pack(">H", len(v)) + v
    for n, v in ((b":event-type", b"chunk"), (b":message-type", b"event"))
)
_PAYLOAD = b'{"bytes":"eyJ0eXBlIjoicGluZyJ9"}'
_PRELUDE = struct.pack(">II", 12 + len(_HEAD) + len(_PAYLOAD) + 4, len(_HEAD))
_PRELUDE += struct.pack(">I", zlib.crc32(_PRELUDE))
WIRE = _PRELUDE + _HEAD + _PAYLOAD
WIRE += struct.pack(">I", zlib.crc32(WIRE))


def test_a_message_from_the_wire() -> None:
    (msg,) = EventStreamDecoder().feed(WIRE)
    assert msg == EventMessage({":event-type": "chunk", ":message-type": "event"}, _PAYLOAD)
    assert msg.message_type == "event" and msg.event_type == "chunk"
    assert encode_message(msg.headers, msg.payload) == WIRE


def test_botocore_reads_what_we_encode() -> None:
    raw = encode_message(CHUNK, b'{"bytes":"e30="}') + encode_message(
        {
            ":message-type": "exception",
            ":exception-type": "throttlingException",
            "n": 7,
            "f": False,
        },
        b'{"message":"Too many requests"}',
    )
    buffer = EventStreamBuffer()
    buffer.add_data(raw)
    got = [(m.headers, m.payload) for m in buffer]
    assert got == [
        (CHUNK, b'{"bytes":"e30="}'),
        (
            {
                ":message-type": "exception",
                ":exception-type": "throttlingException",
                "n": 7,
                "f": False,
            },
            b'{"message":"Too many requests"}',
        ),
    ]


MESSAGES = [(CHUNK, b'{"bytes":"' + b"QUJD" * n + b'"}') for n in range(0, 40, 7)] + [
    ({":message-type": "error", ":error-code": "Boom", ":error-message": "x"}, b"")
]
STREAM = b"".join(encode_message(h, p) for h, p in MESSAGES)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_any_chunking_gives_the_same_messages(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    decoder = EventStreamDecoder()
    got = [m for c in chunks for m in decoder.feed(c)]
    assert [(m.headers, m.payload) for m in got] == MESSAGES
    assert decoder.at_boundary


def test_half_a_message_waits_for_the_rest() -> None:
    decoder = EventStreamDecoder()
    assert decoder.feed(WIRE[:-1]) == [] and not decoder.at_boundary
    assert len(decoder.feed(WIRE[-1:])) == 1 and decoder.at_boundary


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (WIRE[:8] + b"\0\0\0\0" + WIRE[12:], "prelude CRC"),
        (WIRE[:-1] + bytes([WIRE[-1] ^ 1]), "message CRC"),
        (WIRE[:20] + bytes([WIRE[20] ^ 1]) + WIRE[21:], "message CRC"),
    ],
)
def test_corruption_is_refused(raw: bytes, words: str) -> None:
    with pytest.raises(EventStreamError, match=words):
        EventStreamDecoder().feed(raw)


def test_a_declared_length_past_the_cap_is_refused_before_it_is_read() -> None:
    prelude = struct.pack(">II", 1 << 30, 0)
    prelude += struct.pack(">I", zlib.crc32(prelude))
    with pytest.raises(EventStreamError, match="length"):
        EventStreamDecoder().feed(prelude)


def test_headers_that_lie_about_their_length_are_refused() -> None:
    head = b"\x03abc\x07\x00\x50xyz"  # a string header claiming 80 bytes, with 3
    prelude = struct.pack(">II", 12 + len(head) + 4, len(head))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + head
    with pytest.raises(EventStreamError, match="header"):
        EventStreamDecoder().feed(body + struct.pack(">I", zlib.crc32(body)))
