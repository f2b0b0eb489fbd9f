"""Property tests of the sans-IO parsers: any bytes, any chunking, only the
adapters' own events or ProtocolError, never a crash or a loop."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trioproxy.proto.errors import ProtocolError
from trioproxy.proto.events import (
    NEED_DATA,
    PAUSED,
    BodyChunk,
    EndOfMessage,
    PeerClosed,
    RequestHead,
    ResponseHead,
)
from trioproxy.proto.h1 import H1Server
from trioproxy.proto.h2 import H2Server

VALID = b"POST /v1/messages?beta=true HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for pos, byte in edits:
        if out:
            out[pos % len(out)] = byte
    return bytes(out)


def answer(s: H1Server) -> None:
    """Answer a finished request so the next (pipelined) one gets parsed."""
    if s.can_respond:
        s.whole_response(ResponseHead(204, []), b"")
        s.start_next_cycle()


def run_h1(chunks: list[bytes]) -> None:
    s = H1Server(max_head_bytes=4096, max_headers=20)
    try:
        for chunk in [*chunks, b""]:
            s.receive_data(chunk)
            for _ in range(10_000):  # a parser that never settles would be a hang
                ev = s.next_event()
                if ev is NEED_DATA or ev is PAUSED or isinstance(ev, PeerClosed):
                    break
                assert isinstance(ev, RequestHead | BodyChunk | EndOfMessage)
                if isinstance(ev, EndOfMessage):
                    answer(s)
            else:
                raise AssertionError("parser did not settle")
            if isinstance(ev, PeerClosed):
                return
    except ProtocolError as exc:
        assert 400 <= exc.status < 600 and exc.message


@FUZZ
@given(
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    st.lists(st.integers(1, 64), max_size=8),
)
def test_h1_mutated_requests(edits: list[tuple[int, int]], cuts: list[int]) -> None:
    data = mutate(VALID * 2, edits)
    chunks, pos = [], 0
    for n in cuts:
        chunks.append(data[pos : pos + n])
        pos += n
    chunks.append(data[pos:])
    run_h1([c for c in chunks if c])


@FUZZ
@given(st.binary(max_size=2000))
def test_h1_arbitrary_bytes(data: bytes) -> None:
    run_h1([data] if data else [])


@FUZZ
@given(st.binary(max_size=3000), st.integers(1, 200))
def test_h2_arbitrary_frames_after_the_preface(data: bytes, step: int) -> None:
    s = H2Server(stream_window=65535, max_concurrent_streams=10)
    feed = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" + data
    try:
        for i in range(0, len(feed), step):
            s.receive_data(feed[i : i + step])
            s.data_to_send()
    except ProtocolError as exc:
        assert exc.message
