"""The server and client adapters talking to each other through bytes only."""

import hpack
from hyperframe.frame import Frame, HeadersFrame, RstStreamFrame

from trioproxy.proto.events import BodyChunk, EndOfMessage, RequestHead, ResponseHead, StreamReset
from trioproxy.proto.h2 import H2Client, H2Server, StreamEvent


def pair() -> tuple[H2Client, H2Server]:
    c = H2Client(stream_window=65535)
    s = H2Server(stream_window=65535, max_concurrent_streams=10)
    s.receive_data(c.data_to_send())
    c.receive_data(s.data_to_send())
    s.receive_data(c.data_to_send())
    return c, s


def stream_events(events: list[object]) -> list[tuple[int, object]]:
    return [(e.stream_id, e.event) for e in events if isinstance(e, StreamEvent)]


def test_request_and_response_round_trip() -> None:
    c, s = pair()
    head = RequestHead(
        b"POST",
        b"/v1/messages?beta=true",
        [(b"x-api-key", b"k"), (b"anthropic-beta", b"a,b")],
        b"2",
        b"api",
        b"https",
    )
    sid = c.open_stream(head, end_stream=False)
    c.send_data(sid, b"hello", end_stream=True)
    got = stream_events(s.receive_data(c.data_to_send()))
    assert got[0] == (sid, head)
    assert got[1] == (sid, BodyChunk(b"hello", 5))
    assert got[2] == (sid, EndOfMessage())
    s.send_response_head(sid, ResponseHead(200, [(b"request-id", b"r1")]))
    s.send_data(sid, b"world", end_stream=True)
    back = stream_events(c.receive_data(s.data_to_send()))
    assert back == [
        (sid, ResponseHead(200, [(b"request-id", b"r1")])),
        (sid, BodyChunk(b"world", 5)),
        (sid, EndOfMessage()),
    ]


def test_unacknowledged_data_closes_the_window() -> None:
    c, s = pair()
    sid = c.open_stream(RequestHead(b"POST", b"/", [], b"2", b"a", b"http"), end_stream=False)
    sent = 0
    while (n := c.sendable(sid)) > 0:
        c.send_data(sid, b"x" * n)
        sent += n
    assert sent == 65535
    s.receive_data(c.data_to_send())
    c.receive_data(s.data_to_send())
    assert c.sendable(sid) == 0  # nothing acknowledged: the client must wait
    s.ack(sid, 65535)
    c.receive_data(s.data_to_send())
    assert c.sendable(sid) > 0


def test_graceful_goaway_refuses_later_streams_but_serves_earlier() -> None:
    c, s = pair()
    first = c.open_stream(RequestHead(b"GET", b"/1", [], b"2", b"a", b"http"), end_stream=True)
    s.receive_data(c.data_to_send())
    goaway = s.graceful_goaway()
    later = c.open_stream(RequestHead(b"GET", b"/2", [], b"2", b"a", b"http"), end_stream=True)
    assert stream_events(s.receive_data(c.data_to_send())) == []  # refused, not dispatched
    s.send_response_head(first, ResponseHead(204, []), end_stream=True)
    events = c.receive_data(goaway + s.data_to_send())
    assert c.peer_goaway is not None
    se = stream_events(events)
    assert (first, ResponseHead(204, [])) in se
    assert any(sid == later and isinstance(ev, StreamReset) and ev.refused for sid, ev in se)


def test_goaway_splitter_any_chunking() -> None:
    from hyperframe.frame import DataFrame, GoAwayFrame, PingFrame

    from trioproxy.proto.h2 import ConnectionEnded, GoAwaySplitter

    g = GoAwayFrame(0)
    g.last_stream_id, g.error_code, g.additional_data = 5, 0, b"bye"
    d = DataFrame(1)
    d.data = b"x" * 100
    wire = PingFrame(0).serialize() + d.serialize() + g.serialize() + d.serialize()
    for size in (1, 2, 7, 9, 10, 50, len(wire)):
        sp = GoAwaySplitter()
        out: list[object] = []
        for i in range(0, len(wire), size):
            out.extend(sp.feed(wire[i : i + size]))
        passed = b"".join(p for p in out if isinstance(p, bytes))
        assert passed == PingFrame(0).serialize() + d.serialize() + d.serialize()
        assert [p for p in out if not isinstance(p, bytes)] == [ConnectionEnded(0, 5)]


def test_client_keeps_receiving_after_graceful_goaway() -> None:
    c, s = pair()
    sid = c.open_stream(RequestHead(b"GET", b"/1", [], b"2", b"a", b"http"), end_stream=True)
    s.receive_data(c.data_to_send())
    goaway = s.graceful_goaway()
    s.send_response_head(sid, ResponseHead(200, []))
    s.send_data(sid, b"after goaway", end_stream=True)
    events = c.receive_data(goaway + s.data_to_send())
    assert c.peer_goaway is not None and c.peer_goaway.last_stream_id == sid
    assert (sid, BodyChunk(b"after goaway", 12)) in stream_events(events)


def test_streams_over_the_limit_are_refused_one_by_one() -> None:
    c = H2Client(stream_window=65535)
    s = H2Server(stream_window=65535, max_concurrent_streams=3)
    s.receive_data(c.data_to_send())
    c.receive_data(s.data_to_send())
    s.receive_data(c.data_to_send())
    assert c.peer_max_streams == 3  # the advertised limit is the configured one
    s.data_to_send()
    # A client that ignores the limit: five HEADERS frames built by hand.
    enc = hpack.Encoder()
    sids = [1, 3, 5, 7, 9]
    raw = b""
    for sid in sids:
        f = HeadersFrame(sid)
        f.data = enc.encode(
            [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/")]
        )
        f.flags.add("END_HEADERS")
        raw += f.serialize()
    got = stream_events(s.receive_data(raw))
    assert [sid for sid, ev in got if isinstance(ev, RequestHead)] == sids[:3]
    out, refused = memoryview(s.data_to_send()), []
    while out:
        frame, length = Frame.parse_frame_header(out[:9])
        frame.parse_body(out[9 : 9 + length])
        out = out[9 + length :]
        if isinstance(frame, RstStreamFrame) and frame.error_code == 7:  # REFUSED_STREAM
            refused.append(frame.stream_id)
    assert refused == sids[3:]  # refused one by one: the connection stays open
    assert s.conn.state_machine.state.name == "SERVER_OPEN"


def test_bad_targets_become_bad_requests_and_bad_methods_resets() -> None:
    """The same target rules as HTTP/1.1, answered per stream by the
    transport (BadRequest); a :method that is not a token is malformed
    (RST_STREAM PROTOCOL_ERROR, RFC 9113 8.1.1). Other streams go on."""
    from trioproxy.proto.events import BadRequest

    _, s = pair()
    enc = hpack.Encoder()
    frames = b""
    cases = {1: b"*", 3: b"v1/models", 5: b"/ok"}
    for sid, path in cases.items():
        f = HeadersFrame(sid)
        method = b"GET /x" if sid == 5 else b"GET"
        f.data = enc.encode(
            [(b":method", method), (b":scheme", b"http"), (b":authority", b"x"), (b":path", path)]
        )
        f.flags.add("END_HEADERS")
        f.flags.add("END_STREAM")
        frames += f.serialize()
    got: dict[int, object] = {}
    for sid, ev in stream_events(s.receive_data(frames)):
        got.setdefault(sid, ev)  # each stream's first event
    assert isinstance(got[1], BadRequest) and got[1].status == 400
    assert isinstance(got[3], BadRequest) and got[3].status == 400
    assert not isinstance(got.get(5), RequestHead | BadRequest)  # never served
    resets = [
        f for f in _frames(s.data_to_send()) if isinstance(f, RstStreamFrame) and f.stream_id == 5
    ]
    assert resets and resets[0].error_code == 1  # PROTOCOL_ERROR


def _frames(data: bytes) -> list[Frame]:
    out = []
    while len(data) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9 : 9 + length]))
        out.append(frame)
        data = data[9 + length :]
    return out


def test_a_malformed_response_resets_its_stream_not_the_connection() -> None:
    """An upstream's response head with a connection-specific field (RFC 9113
    8.2.2) or no :status: that stream sees a reset (so the attempt fails as
    on an upstream reset, and may be retried); the next stream is answered."""
    c, s = pair()
    sids = [c.open_stream(RequestHead(b"GET", b"/", [], b"2", b"a", b"http"), end_stream=True)]
    sids += [c.open_stream(RequestHead(b"GET", b"/", [], b"2", b"a", b"http"), end_stream=True)]
    sids += [c.open_stream(RequestHead(b"GET", b"/", [], b"2", b"a", b"http"), end_stream=True)]
    s.receive_data(c.data_to_send())
    s.data_to_send()
    enc = hpack.Encoder()
    raw = b""
    heads = {
        sids[0]: [(b":status", b"200"), (b"connection", b"keep-alive")],
        sids[1]: [(b"content-type", b"text/plain")],
        sids[2]: [(b":status", b"200"), (b"request-id", b"r")],
    }
    for sid, headers in heads.items():
        f = HeadersFrame(sid)
        f.data = enc.encode(headers)
        f.flags.add("END_HEADERS")
        if sid == sids[2]:
            f.flags.add("END_STREAM")
        raw += f.serialize()
    got: dict[int, object] = {}
    for sid, ev in stream_events(c.receive_data(raw)):
        got.setdefault(sid, ev)
    assert isinstance(got[sids[0]], StreamReset) and got[sids[0]].error_code == 1
    assert isinstance(got[sids[1]], StreamReset)
    assert got[sids[2]] == ResponseHead(200, [(b"request-id", b"r")])
    resets = {f.stream_id for f in _frames(c.data_to_send()) if isinstance(f, RstStreamFrame)}
    assert resets == {sids[0], sids[1]}


def test_a_clients_goaway_leaves_its_open_streams_to_finish() -> None:
    """RFC 9113 6.8: streams up to the GOAWAY's last id still complete. The
    client's preface opens the server's input; the GOAWAY after it must be
    taken out before h2 sees it (h2 would go CLOSED and refuse the answer)."""
    from hyperframe.frame import GoAwayFrame

    from trioproxy.proto.h2 import ConnectionEnded

    c = H2Client(stream_window=65535)
    s = H2Server(stream_window=65535, max_concurrent_streams=10)
    sid = c.open_stream(
        RequestHead(b"GET", b"/v1/models", [], b"2", b"a", b"http"), end_stream=True
    )
    wire = c.data_to_send()  # preface, SETTINGS, HEADERS in one read
    assert wire.startswith(b"PRI * HTTP/2.0")
    goaway = GoAwayFrame(0, last_stream_id=sid, error_code=0).serialize()
    events = s.receive_data(wire + goaway)
    assert (sid, RequestHead(b"GET", b"/v1/models", [], b"2", b"a", b"http")) in [
        (e.stream_id, e.event) for e in events if isinstance(e, StreamEvent)
    ]
    assert [e for e in events if isinstance(e, ConnectionEnded)] == [ConnectionEnded(0, sid)]
    s.send_response_head(sid, ResponseHead(200, []))  # still allowed
    s.send_data(sid, b"{}", end_stream=True)
    c.receive_data(s.data_to_send())
    assert not c.stream_open(sid)
