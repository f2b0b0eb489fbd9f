import pytest

from trioproxy.proto.errors import ProtocolError
from trioproxy.proto.events import (
    NEED_DATA,
    PAUSED,
    BodyChunk,
    EndOfMessage,
    RequestHead,
    ResponseHead,
)
from trioproxy.proto.h1 import H1Client, H1Server


def server() -> H1Server:
    return H1Server(max_head_bytes=64 * 1024, max_headers=100)


def drain(s: H1Server) -> list[object]:
    out = []
    while True:
        ev = s.next_event()
        out.append(ev)
        if ev is NEED_DATA or ev is PAUSED:
            return out


def test_pipelined_requests_pause_until_next_cycle() -> None:
    s = server()
    s.receive_data(
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b?q=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    )
    first = drain(s)
    assert isinstance(first[0], RequestHead) and first[0].target == b"/a"
    assert isinstance(first[1], EndOfMessage) and first[2] is PAUSED
    s.send_response_head(ResponseHead(200, [(b"content-length", b"0")]))
    s.send_end()
    assert s.start_next_cycle()
    second = drain(s)
    assert second[0] == RequestHead(
        b"POST", b"/b?q=1", [(b"host", b"x"), (b"content-length", b"3")], b"1.1", b"x"
    )
    assert second[1] == BodyChunk(b"abc", 3)


def test_chunked_body_and_100_continue() -> None:
    s = server()
    s.receive_data(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
    )
    assert isinstance(s.next_event(), RequestHead)
    assert s.waiting_for_100_continue
    assert s.send_informational(100).startswith(b"HTTP/1.1 100")
    s.receive_data(b"3\r\nabc\r\n0\r\n\r\n")
    assert drain(s)[:2] == [BodyChunk(b"abc", 3), EndOfMessage()]


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\ncontent-length: 5\r\n\r\n",
            400,
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad\x00: v\r\n\r\n", 400),
        (
            b"GET / HTTP/1.1\r\n"
            + b"".join(b"X-%d: v\r\n" % i for i in range(101))
            + b"Host: x\r\n\r\n",
            431,
        ),
    ],
)
def test_malformed_requests_map_to_a_status(raw: bytes, status: int) -> None:
    s = server()
    s.receive_data(raw)
    with pytest.raises(ProtocolError) as info:
        drain(s)
    assert info.value.status == status


@pytest.mark.parametrize("complete", [False, True], ids=["incomplete", "arrived-whole"])
def test_oversized_head_is_431(complete: bool) -> None:
    s = H1Server(max_head_bytes=1024, max_headers=100)
    s.receive_data(
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4096 + (b"\r\n\r\n" if complete else b"")
    )
    with pytest.raises(ProtocolError) as info:
        drain(s)
    assert info.value.status == 431


def test_client_adds_chunked_framing_for_unknown_length() -> None:
    c = H1Client(max_head_bytes=65536)
    head = RequestHead(b"POST", b"/v1/messages?beta=true", [(b"host", b"api"), (b"x-a", b"1")])
    wire = c.send_request_head(head, chunked=True) + c.send_body(b"hi") + c.send_end()
    assert wire == (
        b"POST /v1/messages?beta=true HTTP/1.1\r\nhost: api\r\nx-a: 1\r\ntransfer-encoding: chunked\r\n\r\n"
        b"2\r\nhi\r\n0\r\n\r\n"
    )
    c.receive_data(b"HTTP/1.1 200 OK\r\nrequest-id: r\r\ncontent-length: 2\r\n\r\nok")
    assert c.next_event() == ResponseHead(
        200, [(b"request-id", b"r"), (b"content-length", b"2")], b"OK"
    )
    assert c.next_event() == BodyChunk(b"ok", 2)
    assert isinstance(c.next_event(), EndOfMessage)
    assert c.reusable()


def test_h11_buffer_is_read_in_place() -> None:
    """The fast path into h11's buffer still exists (an h11 upgrade that moves
    it would silently bring back a full copy per call)."""
    import h11

    from trioproxy.proto.h1 import _raw_buffer

    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nleftover")
    raw = _raw_buffer(conn)
    assert isinstance(raw, bytearray)
    assert bytes(raw) == conn.trailing_data[0]


def test_h11_headers_are_read_in_place_with_names_lowered() -> None:
    """The fast path into h11's header list still exists and gives what
    iterating h11's Headers gives (lower-cased names, values as sent)."""
    import h11

    from trioproxy.proto.h1 import _headers

    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nX-Claude-Code: Yes Sir\r\n\r\n")
    ev = conn.next_event()
    assert isinstance(ev, h11.Request)
    assert isinstance(ev.headers._full_items, list)
    assert (
        _headers(ev.headers)
        == list(ev.headers)
        == [
            (b"host", b"x"),
            (b"x-claude-code", b"Yes Sir"),
        ]
    )


def test_heads_the_proxy_sends_are_still_checked_by_h11() -> None:
    """Heads go to h11 unvalidated (_parsed=True), but its framing checks stay:
    a conflicting Content-Length is still refused, not sent."""
    import h11

    c = H1Client(max_head_bytes=65536)
    head = RequestHead(
        b"POST",
        b"/v1/messages",
        [(b"host", b"x"), (b"content-length", b"1"), (b"content-length", b"2")],
    )
    with pytest.raises(h11.LocalProtocolError):
        c.send_request_head(head, chunked=False)
    ok = H1Client(max_head_bytes=65536).send_request_head(
        RequestHead(b"GET", b"/v1/models", [(b"host", b"x"), (b"X-Up", b"v")]), chunked=False
    )
    assert ok == b"GET /v1/models HTTP/1.1\r\nhost: x\r\nX-Up: v\r\n\r\n"


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET http://evil.example/v1/models HTTP/1.1\r\nhost: x\r\n\r\n", 400),
        (b"OPTIONS * HTTP/1.1\r\nhost: x\r\n\r\n", 400),
        (b"GET v1/models HTTP/1.1\r\nhost: x\r\n\r\n", 400),
        (b"GET /v1/models#top HTTP/1.1\r\nhost: x\r\n\r\n", 400),
        (b"GET /v1/models HTTP/2.0\r\nhost: x\r\n\r\n", 505),
        (b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-a: a\x01b\r\n\r\n", 400),
        (b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-a: \x7f\r\n\r\n", 400),
    ],
)
def test_request_rules_before_anything_else(raw: bytes, status: int) -> None:
    s = server()
    s.receive_data(raw)
    with pytest.raises(ProtocolError) as exc:
        s.next_event()
    assert exc.value.status == status and b"evil" not in exc.value.message.encode()


def test_origin_form_with_tab_and_query_is_fine() -> None:
    s = server()
    s.receive_data(b"GET /v1/models?beta=true HTTP/1.0\r\nhost: x\r\nx-a: a\tb\r\n\r\n")
    head = s.next_event()
    assert isinstance(head, RequestHead) and head.target == b"/v1/models?beta=true"


@pytest.mark.parametrize("version", [b"1.2", b"1.9"])
def test_higher_minor_version_is_served_as_http_1_1(version: bytes) -> None:
    """RFC 9110 2.5: HTTP/1.x with x > 1 is handled as HTTP/1.1, not 505."""
    s = server()
    s.receive_data(b"GET / HTTP/" + version + b"\r\nhost: x\r\n\r\n")
    head = s.next_event()
    assert isinstance(head, RequestHead) and head.http_version == b"1.1"
    answer = s.send_response_head(ResponseHead(200, [(b"content-length", b"0")]))
    assert answer.startswith(b"HTTP/1.1 200")
