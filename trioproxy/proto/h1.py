"""HTTP/1.1 server and client adapters over h11.

h11 already implements the framing rules of RFC 9112 (Content-Length vs chunked,
keep-alive, pipelining via PAUSED, 100-continue bookkeeping); these adapters only
translate its events into the proxy's neutral ones and map its errors to a
status, so the Trio shell never imports h11.
"""

from __future__ import annotations

from http import HTTPStatus
from itertools import chain

import h11

from trioproxy.proto.errors import ProtocolError
from trioproxy.proto.events import (
    NEED_DATA,
    PAUSED,
    PEER_CLOSED,
    BodyChunk,
    EndOfMessage,
    Headers,
    InformationalResponse,
    NeedData,
    Paused,
    PeerClosed,
    Received,
    RequestHead,
    ResponseHead,
)
from trioproxy.proto.request import request_problem

ServerEvent = RequestHead | BodyChunk | EndOfMessage | PeerClosed | NeedData | Paused
ClientEvent = (
    ResponseHead | InformationalResponse | BodyChunk | EndOfMessage | PeerClosed | NeedData
)


def _raw_buffer(conn: h11.Connection) -> bytes | bytearray:
    """h11's unparsed bytes, without a copy when possible.

    ``Connection.trailing_data`` copies the whole buffer on every call, which
    can hold a head plus 256 KiB of the next body; read in place through h11's
    ReceiveBuffer when it has the expected shape (unit-tested), else copy."""
    buf = getattr(getattr(conn, "_receive_buffer", None), "_data", None)
    if isinstance(buf, bytearray):
        return buf
    return conn.trailing_data[0]


# _PARSED: heads the proxy sends are built with h11's ``_parsed=True``, which
# skips re-running its name and value regexes (two per header: about 30 us a
# head, a tenth of a small request's CPU). Every name and value here has been
# checked already: h11 or h2 parsed what a peer sent, proto/request.py refuses
# control characters in request values, and the configuration refuses CR, LF
# and NUL in the headers and credentials it adds. h11 still checks
# Content-Length, Transfer-Encoding, Host, the method and the target.

_REASONS: dict[int, bytes] = {s.value: s.phrase.encode() for s in HTTPStatus}


def _headers(h: h11._headers.Headers) -> Headers:
    """(lower-cased name, value) pairs. h11's Headers is a Sequence whose
    iteration goes through ``__getitem__`` pair by pair; its backing list of
    (raw name, name, value) triples is read directly when it has that shape
    (unit-tested), at a third of the cost."""
    items = getattr(h, "_full_items", None)
    if isinstance(items, list):
        return [(name, value) for _, name, value in items]
    return list(h)


def _body_event(ev: object, role: str) -> BodyChunk | EndOfMessage | PeerClosed:
    """The events both roles share: body data, end of message, peer closed."""
    if isinstance(ev, h11.Data):
        return BodyChunk(bytes(ev.data), len(ev.data))
    if isinstance(ev, h11.EndOfMessage):
        return EndOfMessage(_headers(ev.headers))
    if isinstance(ev, h11.ConnectionClosed):
        return PEER_CLOSED
    raise AssertionError(f"unexpected h11 {role} event {ev!r}")  # pragma: no cover


class H1Server:
    """One server-side HTTP/1.1 connection: bytes in, request events out."""

    __slots__ = ("_conn", "_max_head_bytes", "_max_headers")

    def __init__(self, *, max_head_bytes: int, max_headers: int) -> None:
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head_bytes)
        self._max_head_bytes = max_head_bytes
        self._max_headers = max_headers

    def __repr__(self) -> str:
        c = self._conn
        return f"<H1Server client={c.their_state} us={c.our_state} buffered={self.buffered_bytes}>"

    def receive_data(self, data: Received) -> None:
        """Feed bytes from the socket; ``b""`` means the client closed (EOF).
        h11 appends them to its own buffer (a memoryview is copied there)."""
        self._conn.receive_data(data)  # type: ignore[arg-type]

    def next_event(self) -> ServerEvent:
        if self._conn.their_state is h11.IDLE:
            self._reject_obs_fold()
        try:
            ev = self._conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise ProtocolError(
                f"malformed HTTP/1.1 request: {exc}", exc.error_status_hint
            ) from None
        if ev is h11.NEED_DATA:
            return NEED_DATA
        if ev is h11.PAUSED:
            return PAUSED
        if isinstance(ev, h11.Request):
            headers = _headers(ev.headers)
            # h11 bounds only a head still incomplete; one that arrived whole
            # in a single read is measured here against the same limit.
            size = (
                len(ev.method)
                + len(ev.target)
                + sum(map(len, chain.from_iterable(headers)))  # in C: no Python frame per field
                + 4 * len(headers)
            )
            if size > self._max_head_bytes:
                raise ProtocolError(
                    f"request head of {size} bytes exceeds {self._max_head_bytes} bytes", 431
                )
            if len(headers) > self._max_headers:
                raise ProtocolError(
                    f"too many header fields ({len(headers)} > {self._max_headers})", 431
                )
            host = b""
            framing = 0
            for k, v in headers:
                if k == b"host":
                    host = v
                elif k == b"content-length" or k == b"transfer-encoding":
                    framing |= 1 if k == b"content-length" else 2
            if framing == 3:
                # h11 would frame by Transfer-Encoding and keep the stale
                # Content-Length in the headers we forward: a request-smuggling
                # desync (RFC 9112 6.3 lets a server reject it; we do).
                raise ProtocolError("both Content-Length and Transfer-Encoding in one request", 400)
            version = ev.http_version
            if version[:2] == b"1." and version > b"1.1":
                # RFC 9110 2.5: a recipient handles a higher minor version
                # of its own major version as the highest it speaks.
                version = b"1.1"
            head = RequestHead(
                method=ev.method,
                target=ev.target,
                headers=headers,
                http_version=version,
                authority=host,
            )
            problem = request_problem(head)
            if problem is not None:
                raise ProtocolError(problem[1], problem[0])
            return head
        return _body_event(ev, "server")

    def _reject_obs_fold(self) -> None:
        """h11 unfolds obsolete line folding (RFC 9112 5.2 allows that); a proxy
        should not: a folded line is how header-smuggling payloads hide, so the
        request is rejected with 400 instead."""
        buf = _raw_buffer(self._conn)
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            end = len(buf)
        if buf.find(b"\n ", 0, end) >= 0 or buf.find(b"\n\t", 0, end) >= 0:
            raise ProtocolError("obsolete line folding in request header", 400)

    @property
    def waiting_for_100_continue(self) -> bool:
        return bool(self._conn.they_are_waiting_for_100_continue)

    @property
    def request_has_body(self) -> bool:
        """True while the client may still send body bytes."""
        return self._conn.their_state is h11.SEND_BODY

    @property
    def buffered_bytes(self) -> int:
        """Bytes received but not yet parsed (pipelined requests wait here)."""
        return len(_raw_buffer(self._conn))

    @property
    def response_failed(self) -> bool:
        """Our side errored (a write failed or we truncated on purpose)."""
        return self._conn.our_state is h11.ERROR

    @property
    def can_respond(self) -> bool:
        return self._conn.our_state in (h11.IDLE, h11.SEND_RESPONSE)

    @property
    def response_started(self) -> bool:
        return self._conn.our_state in (h11.SEND_BODY, h11.DONE, h11.MUST_CLOSE)

    def send_informational(self, status: int) -> bytes:
        return self._conn.send(h11.InformationalResponse(status_code=status, headers=[])) or b""

    def send_response_head(self, head: ResponseHead) -> bytes:
        reason = head.reason or _REASONS.get(head.status, b"")
        ev = h11.Response(
            status_code=int(head.status),
            headers=head.headers,
            reason=reason,
            http_version=b"1.1",
            _parsed=True,  # see _PARSED
        )
        return self._conn.send(ev) or b""

    def send_body(self, data: bytes) -> bytes:
        return self._conn.send(h11.Data(data=data)) or b""

    def send_end(self) -> bytes:
        return self._conn.send(h11.EndOfMessage()) or b""

    def whole_response(self, head: ResponseHead, body: bytes) -> bytes | None:
        """A complete small response as bytes, or None if h11 will not frame
        one in the connection's state (for errors found while parsing)."""
        try:
            return self.send_response_head(head) + self.send_body(body) + self.send_end()
        except h11.LocalProtocolError:
            return None

    def send_failed(self) -> None:
        """A write failed (or was cancelled): the connection is unusable."""
        self._conn.send_failed()

    def start_next_cycle(self) -> bool:
        """Reset for the next request on a keep-alive connection. False when the
        connection must close instead (either side asked, or framing forbids)."""
        c = self._conn
        if c.our_state is h11.DONE and c.their_state is h11.DONE:
            c.start_next_cycle()
            return True
        return False


class H1Client:
    """One client-side HTTP/1.1 connection to an upstream."""

    __slots__ = ("_conn",)

    def __init__(self, *, max_head_bytes: int) -> None:
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_head_bytes)

    def __repr__(self) -> str:
        c = self._conn
        return f"<H1Client us={c.our_state} server={c.their_state}>"

    def send_request_head(self, head: RequestHead, *, chunked: bool) -> bytes:
        """``head.headers`` must already carry `host`; ``chunked`` adds
        `transfer-encoding: chunked` for a body of unknown length."""
        headers = head.headers
        if chunked:
            headers = [*headers, (b"transfer-encoding", b"chunked")]
        ev = h11.Request(
            method=head.method,
            target=head.target,
            headers=headers,
            http_version=b"1.1",
            _parsed=True,  # see _PARSED
        )
        return self._conn.send(ev) or b""

    def send_body(self, data: bytes) -> bytes:
        return self._conn.send(h11.Data(data=data)) or b""

    def send_end(self) -> bytes:
        return self._conn.send(h11.EndOfMessage()) or b""

    def send_failed(self) -> None:
        self._conn.send_failed()

    def receive_data(self, data: Received) -> None:
        self._conn.receive_data(data)  # type: ignore[arg-type]

    def next_event(self) -> ClientEvent:
        try:
            ev = self._conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise ProtocolError(f"malformed upstream response: {exc}", 502) from None
        if ev is h11.NEED_DATA:
            return NEED_DATA
        if isinstance(ev, h11.Response):
            return ResponseHead(ev.status_code, _headers(ev.headers), bytes(ev.reason))
        if isinstance(ev, h11.InformationalResponse):
            return InformationalResponse(ev.status_code, _headers(ev.headers))
        return _body_event(ev, "client")

    @property
    def request_done(self) -> bool:
        return self._conn.our_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED)

    def reusable(self) -> bool:
        """After a complete exchange: may this connection carry another request?"""
        c = self._conn
        if c.our_state is h11.DONE and c.their_state is h11.DONE:
            c.start_next_cycle()
            return True
        return False
