from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from trioproxy.fake.messages import plan_for, stream_events
from trioproxy.proto.sse import EventBoundary, SSEEvent, SSEParser

STREAM = b"".join(
    stream_events(
        plan_for({"model": "m", "tools": [{"name": "t"}], "thinking": {"type": "enabled"}}, b"{}")
    )
)


def parse_all(chunks: list[bytes]) -> list[SSEEvent]:
    p = SSEParser()
    out: list[SSEEvent] = []
    for c in chunks:
        out.extend(p.feed(c))
    return out


def test_parses_the_anthropic_sequence() -> None:
    events = parse_all([STREAM])
    names = [e.event for e in events]
    assert names[0] == b"message_start" and names[-1] == b"message_stop"
    assert b"ping" in names and names.count(b"content_block_start") == 3
    assert all(not e.truncated for e in events)


def test_line_endings_comments_and_multiline_data() -> None:
    raw = b": comment\r\nevent: a\r\ndata: x\r\ndata:y\r\n\r\nevent: b\rdata: z\r\rdata: w\n\n"
    assert parse_all([raw]) == [
        SSEEvent(b"a", b"x\ny"),
        SSEEvent(b"b", b"z"),
        SSEEvent(b"message", b"w"),
    ]


def test_cr_lf_split_across_chunks_is_one_terminator() -> None:
    assert parse_all([b"data: 1\r", b"\n\r", b"\n"]) == [SSEEvent(b"message", b"1")]
    # an empty read between CR and LF changes nothing
    assert parse_all([b"data: 1\r", b"", b"\ndata: 2\r", b"", b"\n\r\n"]) == [
        SSEEvent(b"message", b"1\n2")
    ]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=30))
def test_any_chunking_gives_the_same_events(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    assert parse_all(chunks) == parse_all([STREAM])


def test_long_lines_are_capped_in_the_observer_only() -> None:
    p = SSEParser(max_event_bytes=100)
    events = p.feed(b"data: " + b"x" * 10_000 + b"\n\n")
    assert len(events) == 1 and events[0].truncated and len(events[0].data) < 200


def test_boundary_tracking() -> None:
    p, b = SSEParser(), EventBoundary()
    assert p.at_event_boundary and b.at_boundary
    for piece in (b"event: a\n", b"data: {", b"}\n", b"\n"):
        p.feed(piece)
        b.feed(piece)
        assert p.at_event_boundary == b.at_boundary
    assert b.at_boundary
    b.feed(b"data: x\r\n")
    assert not b.at_boundary
    b.feed(b"\r\n")
    assert b.at_boundary


_PIECES = st.sampled_from(
    [b"event: ", b"event:", b"data: ", b"data:", b": c", b"id: 1", b"x", b"a:b", b"\n", b"\r", b" "]
)


@settings(max_examples=400, deadline=None)
@example([b"event: ", b"\n", b"data: ", b"x", b"\n", b"\n"], [])
@example([b"event:", b"a:b", b"\n", b"data:", b"\n", b"\n", b"\n", b"\n"], [3])
@given(st.lists(_PIECES, max_size=40), st.lists(st.integers(min_value=0, max_value=200)))
def test_whole_event_shortcut_agrees_with_the_line_machine(
    pieces: list[bytes], cuts: list[int]
) -> None:
    """Fed in one piece a stream takes the per-event shortcut where it can;
    fed a byte at a time it never can: both give the same events, for any
    mix of fields, line endings and chunking."""
    raw = b"".join(pieces)
    points = sorted({c for c in cuts if c <= len(raw)})
    chunks = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    one_by_one = [raw[i : i + 1] for i in range(len(raw))]
    assert parse_all([raw]) == parse_all(one_by_one) == parse_all(chunks)


def test_whole_event_shortcut_caps_data_as_the_line_machine_does() -> None:
    for size in (98, 99, 100, 101):
        raw = b"event: e\ndata: " + b"x" * size + b"\n\n"
        fast = SSEParser(max_event_bytes=100).feed(raw)
        assert fast == SSEParser(max_event_bytes=100)._feed_lines(raw), size
        assert fast[0].truncated == (size >= 100)
