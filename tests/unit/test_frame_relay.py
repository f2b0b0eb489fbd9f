"""Bedrock's frames passed on as they came to a client of Bedrock's format
(bedrock/relay.py): byte transcripts through both translations, with an
event a stage changed between them."""

from __future__ import annotations

import base64

import orjson

from trioproxy.bedrock.client import SSEToEventStream
from trioproxy.bedrock.relay import MAX_ENTRIES, FrameMemo
from trioproxy.bedrock.stream import EventStreamToSSE
from trioproxy.proto.eventstream import EventStreamDecoder, encode_message

CHUNK = {":message-type": "event", ":event-type": "chunk", ":content-type": "application/json"}


def chunk(event: dict[str, object], pad: str) -> bytes:
    inner = orjson.dumps(event)
    return encode_message(
        CHUNK, orjson.dumps({"bytes": base64.b64encode(inner).decode(), "p": pad})
    )


EVENTS = [
    {"type": "message_start", "message": {"id": "msg_1", "content": []}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "TOKEN_1"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 3}},
]
FRAMES = [chunk(e, "abcdefgh"[: i + 1]) for i, e in enumerate(EVENTS)]
THROTTLED = encode_message(
    {":message-type": "exception", ":exception-type": "modelStreamErrorException"},
    b'{"message":"The model stream broke (as Bedrock words it)."}',
)


def relay(frames: list[bytes], edit: bytes = b"", to: bytes = b"") -> bytes:
    """Both translations, fed a byte at a time, a stage's edit between."""
    memo = FrameMemo()
    inbound, outbound = EventStreamToSSE(memo), SSEToEventStream(memo)
    out = []
    for b in b"".join(frames):
        sse = inbound.feed(bytes([b]))
        out.append(outbound.feed(sse.replace(edit, to) if edit else sse))
    return b"".join(out)


def test_unchanged_events_go_as_the_frames_they_came_in() -> None:
    assert relay([*FRAMES, THROTTLED]) == b"".join([*FRAMES, THROTTLED])


def test_a_changed_event_is_encoded_afresh_and_the_rest_kept() -> None:
    out = relay(FRAMES, b"TOKEN_1", b"ghp_restored")
    messages = EventStreamDecoder().feed(out)
    assert len(messages) == len(FRAMES)
    delta = orjson.loads(base64.b64decode(orjson.loads(messages[2].payload)["bytes"]))
    assert delta["delta"]["text"] == "ghp_restored"
    head, tail = b"".join(FRAMES[:2]), b"".join(FRAMES[3:])
    assert out.startswith(head) and out.endswith(tail) and FRAMES[2] not in out


def test_the_memo_forgets_what_was_skipped_and_stays_bounded() -> None:
    memo = FrameMemo()
    for n in range(3):
        memo.remember(b"data%d" % n, b"frame%d" % n)
    assert memo.take(b"new") is None and len(memo) == 3  # an event the proxy added
    assert memo.take(b"data1") == b"frame1" and len(memo) == 1  # data0 was changed
    assert memo.take(b"data0") is None and memo.take(b"data2") == b"frame2"
    for n in range(MAX_ENTRIES + 10):
        memo.remember(b"d%d" % n, b"f")
    assert len(memo) == MAX_ENTRIES and memo.take(b"d0") is None
    memo.remember(b"big", b"x" * (5 << 20))  # over the byte bound: not kept
    assert memo.take(b"big") is None
