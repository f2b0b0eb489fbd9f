"""HTTP/2 server and client adapters over h2 (RFC 9113).

They translate h2's events into neutral ones tagged with a stream id and expose
the few operations the Trio shells need. Flow control is explicit: received
data is acknowledged only when the shell says it was forwarded, and outbound
data is sent only as far as the peer's window allows (``sendable``).

Graceful GOAWAY (RFC 9113 6.8): h2's connection state machine goes CLOSED as
soon as it sends *or receives* a GOAWAY (python-hyper/h2#1181, open), after
which every frame of the streams that should still finish is a protocol error.
So GOAWAY never goes through h2 here: ``graceful_goaway`` builds our frame with
hyperframe and hands its bytes to the shell (later streams are refused with
REFUSED_STREAM, which clients retry safely), and ``GoAwaySplitter`` takes the
peer's GOAWAY frames out of the incoming byte stream before h2 sees them.
"""

from __future__ import annotations

import contextlib
import struct
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame

from trioproxy.proto.errors import ProtocolError
from trioproxy.proto.events import (
    BadRequest,
    BodyChunk,
    EndOfMessage,
    Headers,
    InformationalResponse,
    Received,
    RequestHead,
    ResponseHead,
    StreamReset,
)
from trioproxy.proto.h2fields import request_fields_malformed, response_fields_malformed
from trioproxy.proto.request import is_token, request_problem

DEFAULT_WINDOW = 65535  # RFC 9113 6.9.2
CONN_WINDOW = 16 * 1024 * 1024  # bytes; connection receive window shared by all streams
MAX_HEADER_LIST = 64 * 1024  # bytes; decoded header list cap (HPACK bombs)


@dataclass(frozen=True, slots=True)
class StreamEvent:
    stream_id: int
    event: (
        RequestHead
        | BadRequest
        | ResponseHead
        | InformationalResponse
        | BodyChunk
        | EndOfMessage
        | StreamReset
    )


@dataclass(frozen=True, slots=True)
class WindowOpened:
    """Send credit arrived (stream_id 0: for the whole connection)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class ConnectionEnded:
    """The peer sent GOAWAY. Streams above ``last_stream_id`` were not processed."""

    error_code: int
    last_stream_id: int


@dataclass(frozen=True, slots=True)
class PingAnswered:
    """The peer acknowledged a PING of ours: it has read everything we sent
    before it."""

    payload: bytes


H2Event = StreamEvent | WindowOpened | ConnectionEnded | PingAnswered

DRAIN_PING = b"draining"  # 8 bytes: the PING that follows a first, imminent GOAWAY
LAST_STREAM_MAX = 2**31 - 1  # RFC 9113 6.8: "shutdown imminent", no stream refused yet

FRAME_HEADER = 9  # bytes (RFC 9113 4.1)
GOAWAY_TYPE = 0x7


CLIENT_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # RFC 9113 3.4


class GoAwaySplitter:
    """Splits an incoming HTTP/2 byte stream around GOAWAY frames.

    It reads only frame headers: every other byte is passed through in the
    same order, as slices of what came in. At most one partial frame header,
    or one partial GOAWAY frame, is held back."""

    __slots__ = ("_held", "_passing")

    def __init__(self, *, preface: int = 0) -> None:
        """``preface``: bytes that come before the first frame and pass
        through unread: a server's input starts with the client's 24-byte
        connection preface (RFC 9113 3.4), which is no frame. Read as one,
        its "PRI" would be a 5 MB frame length, and every GOAWAY after it
        would go to h2 unseen (which then refuses every frame of the
        streams still finishing)."""
        self._passing = preface  # bytes of the current non-GOAWAY frame still to pass through
        self._held = b""

    def feed(self, data: Received) -> list[bytes | ConnectionEnded]:
        data = self._held + data if self._held else bytes(data)
        self._held = b""
        out: list[bytes | ConnectionEnded] = []
        start = pos = 0
        n = len(data)
        while pos < n:
            if self._passing:
                step = min(self._passing, n - pos)
                self._passing -= step
                pos += step
                continue
            if n - pos < FRAME_HEADER:
                break
            length = int.from_bytes(data[pos : pos + 3], "big")
            if data[pos + 3] != GOAWAY_TYPE:
                self._passing = FRAME_HEADER + length
                continue
            if n - pos < FRAME_HEADER + length or length < 8:
                if length < 8 and n - pos >= FRAME_HEADER + length:
                    self._passing = FRAME_HEADER + length  # malformed: let h2 reject it
                    continue
                break
            if pos > start:
                out.append(data[start:pos])
            last, code = struct.unpack_from(">II", data, pos + FRAME_HEADER)
            out.append(ConnectionEnded(code, last & 0x7FFFFFFF))
            pos += FRAME_HEADER + length
            start = pos
        if pos > start:
            out.append(data[start:pos])
        if pos < n:
            self._held = data[pos:]
        return out


class ResetBudget:
    """Rapid reset (CVE-2023-44487): a client may reset at most ``burst``
    streams at once, refilled at ``rate`` per second. A token bucket; the
    caller passes the clock in."""

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._last: float | None = None

    def spend(self, now: float) -> bool:
        """Count one reset; False once the budget is exhausted."""
        if self._last is not None:
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


ENHANCE_YOUR_CALM = 0xB  # RFC 9113 7


STREAM_LIMIT_MARGIN = 32  # streams over the advertised limit that we refuse one by one


class _RefuseBeyondLimit(h2.settings.Settings):
    """Advertises the configured MAX_CONCURRENT_STREAMS (h2 writes SETTINGS
    from the raw values) but lets h2 enforce it only with a margin: a client
    just over the limit gets its extra streams refused one by one
    (REFUSED_STREAM, safe to retry; RFC 9113 5.1.2) by H2Server, instead of
    h2 closing the whole connection. Far over the margin, h2 still does."""

    @property  # type: ignore[misc]
    def max_concurrent_streams(self) -> int:
        return int(super().max_concurrent_streams) + STREAM_LIMIT_MARGIN


class _H2Base:
    def __init__(
        self, *, client_side: bool, stream_window: int, max_concurrent_streams: int
    ) -> None:
        cfg = h2.config.H2Configuration(
            client_side=client_side,
            header_encoding=None,
            # Both roles validate header lists themselves, per stream and in
            # one pass (h2fields.py), so that a bad one is a stream error, not
            # the end of the connection and of every other stream on it.
            validate_inbound_headers=False,
            validate_outbound_headers=False,  # we filtered them; skip the cost
            normalize_outbound_headers=False,
        )
        self.conn = h2.connection.H2Connection(config=cfg)
        settings_cls = h2.settings.Settings if client_side else _RefuseBeyondLimit
        self.conn.local_settings = settings_cls(
            client=client_side,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_concurrent_streams,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: stream_window,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
            },
        )
        self._splitter = GoAwaySplitter(preface=0 if client_side else len(CLIENT_PREFACE))
        self.peer_goaway: ConnectionEnded | None = None
        self.peer_settings_received = False
        self.conn.initiate_connection()
        if CONN_WINDOW > DEFAULT_WINDOW:
            self.conn.increment_flow_control_window(CONN_WINDOW - DEFAULT_WINDOW)

    def __repr__(self) -> str:
        c = self.conn
        return (
            f"<{type(self).__name__} state={c.state_machine.state.name} "
            f"open_in={c.open_inbound_streams} open_out={c.open_outbound_streams}>"
        )

    def data_to_send(self) -> bytes:
        return self.conn.data_to_send()

    def receive_data(self, data: Received) -> list[H2Event]:
        """Feed bytes; raise ProtocolError on a connection error (h2 has then
        queued a GOAWAY: send ``data_to_send()`` and close)."""
        out: list[H2Event] = []
        for piece in self._splitter.feed(data):
            if isinstance(piece, ConnectionEnded):
                self.peer_goaway = piece
                out.append(piece)
                continue
            try:
                raw = self.conn.receive_data(piece)
            except h2.exceptions.ProtocolError as exc:
                raise ProtocolError(f"HTTP/2 protocol error: {exc}", 400) from None
            for ev in raw:
                self._translate(ev, out)
        return out

    def _translate(self, ev: h2.events.Event, out: list[H2Event]) -> None:
        if isinstance(ev, h2.events.DataReceived):
            assert ev.stream_id is not None and ev.data is not None
            out.append(
                StreamEvent(ev.stream_id, BodyChunk(ev.data, ev.flow_controlled_length or 0))
            )
        elif isinstance(ev, h2.events.StreamEnded):
            # h2 reports END_STREAM as its own event, right after the DATA,
            # HEADERS or trailers that carried the flag.
            out.append(StreamEvent(ev.stream_id or 0, EndOfMessage()))
        elif isinstance(ev, h2.events.StreamReset):
            refused = ev.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
            out.append(
                StreamEvent(ev.stream_id or 0, StreamReset(int(ev.error_code or 0), refused))
            )
        elif isinstance(ev, h2.events.WindowUpdated):
            out.append(WindowOpened(ev.stream_id or 0))
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            self.peer_settings_received = True
            if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in ev.changed_settings:
                out.append(WindowOpened(0))
        elif isinstance(ev, h2.events.PingAckReceived):
            out.append(PingAnswered(bytes(ev.ping_data or b"")))
        elif isinstance(ev, h2.events.ConnectionTerminated):  # only if one slipped through
            out.append(ConnectionEnded(int(ev.error_code or 0), ev.last_stream_id or 0))
        else:
            self._translate_headers(ev, out)

    def _translate_headers(self, ev: h2.events.Event, out: list[H2Event]) -> None:
        """Role-specific header events."""

    # -- flow control ---------------------------------------------------------
    def ack(self, stream_id: int, nbytes: int) -> None:
        if nbytes:
            self.conn.acknowledge_received_data(nbytes, stream_id)

    def sendable(self, stream_id: int) -> int:
        """Bytes of DATA we may send on this stream now (0: wait for credit)."""
        try:
            window = self.conn.local_flow_control_window(stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.NoSuchStreamError, KeyError):
            return 0
        return max(0, min(window, self.conn.max_outbound_frame_size))

    def stream_open(self, stream_id: int) -> bool:
        stream = self.conn.streams.get(stream_id)
        return stream is not None and not stream.closed

    # -- sending --------------------------------------------------------------
    def send_data(self, stream_id: int, data: bytes, *, end_stream: bool = False) -> None:
        """``data`` must fit ``sendable(stream_id)``."""
        self.conn.send_data(stream_id, data, end_stream=end_stream)

    def end_stream(self, stream_id: int) -> None:
        self.conn.end_stream(stream_id)

    def reset_stream(self, stream_id: int, error_code: int = h2.errors.ErrorCodes.CANCEL) -> None:
        # Already closed: nothing to reset.
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self.conn.reset_stream(stream_id, error_code)

    def ping(self, payload: bytes = b"trioprox") -> None:
        self.conn.ping(payload)

    def close(self, error_code: int = 0) -> None:
        """Final GOAWAY (nothing more will be sent)."""
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.conn.close_connection(error_code)

    @property
    def open_streams(self) -> int:
        return int(self.conn.open_inbound_streams + self.conn.open_outbound_streams)


def _status(headers: Headers) -> int | None:
    """The :status of a well-formed response head (three digits), else None."""
    for name, value in headers:
        if name == b":status":
            return int(value) if len(value) == 3 and value.isdigit() else None
    return None


def _split_pseudo(headers: Headers) -> tuple[dict[bytes, bytes], Headers]:
    pseudo: dict[bytes, bytes] = {}
    regular: Headers = []
    for name, value in headers:
        if name[:1] == b":":
            pseudo[name] = value
        else:
            regular.append((name, value))
    return pseudo, regular


class H2Server(_H2Base):
    def __init__(self, *, stream_window: int, max_concurrent_streams: int) -> None:
        super().__init__(
            client_side=False,
            stream_window=stream_window,
            max_concurrent_streams=max_concurrent_streams,
        )
        self.max_streams = max_concurrent_streams
        self._accepted: set[int] = set()  # streams dispatched and not yet closed
        self.goaway_last_id: int | None = None

    def receive_data(self, data: Received) -> list[H2Event]:
        events = super().receive_data(data)
        last = self.goaway_last_id
        if last is None:
            return events
        kept: list[H2Event] = []
        for ev in events:
            if isinstance(ev, StreamEvent) and ev.stream_id > last:
                if isinstance(
                    ev.event, BodyChunk
                ):  # refused stream: keep the connection window whole
                    self.ack(ev.stream_id, ev.event.flow_controlled_length)
                continue
            kept.append(ev)
        return kept

    def _translate_headers(self, ev: h2.events.Event, out: list[H2Event]) -> None:
        if isinstance(ev, h2.events.RequestReceived):
            sid = ev.stream_id or 0
            if self.goaway_last_id is not None and sid > self.goaway_last_id:
                self.reset_stream(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
                return
            raw_headers = list(ev.headers or [])
            pseudo, regular = _split_pseudo(raw_headers)
            method = pseudo.get(b":method", b"")
            if method == b"CONNECT" or not is_token(method):
                # A malformed request (RFC 9113 8.1.1), or a tunnel we never open.
                self.reset_stream(sid, h2.errors.ErrorCodes.PROTOCOL_ERROR)
                return
            head = RequestHead(
                method=method,
                target=pseudo.get(b":path", b"/"),
                headers=regular,
                http_version=b"2",
                authority=pseudo.get(b":authority", b""),
                scheme=pseudo.get(b":scheme", b"https"),
            )
            # The target and header rules both transports share come first, so
            # the client reads why (a 400 before the reset is allowed: RFC 9113
            # 8.1.1); the rest of h2's own checks (uppercase or empty names,
            # connection-specific headers, te other than trailers, pseudo-header
            # rules) reset the stream, per stream.
            problem = request_problem(head) if b":path" in pseudo else None
            if problem is None and request_fields_malformed(raw_headers):
                self.reset_stream(sid, h2.errors.ErrorCodes.PROTOCOL_ERROR)
                return
            # h2 has opened every stream of the batch before reporting any, so
            # count the ones accepted so far: the first N are served, in order.
            self._accepted = {a for a in self._accepted if self.stream_open(a)}
            if len(self._accepted) >= self.max_streams:
                self.reset_stream(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
                return
            self._accepted.add(sid)
            if problem is not None:  # answered by the transport, never served
                out.append(StreamEvent(sid, BadRequest(head, problem[0], problem[1])))
                return
            out.append(StreamEvent(sid, head))

    def send_response_head(
        self, stream_id: int, head: ResponseHead, *, end_stream: bool = False
    ) -> None:
        headers = [(b":status", str(head.status).encode()), *head.headers]
        self.conn.send_headers(stream_id, headers, end_stream=end_stream)

    def imminent_goaway(self) -> bytes:
        """The first of a graceful shutdown's two GOAWAYs (RFC 9113 6.8):
        last stream 2^31-1, so the client starts nothing new, while requests
        already on their way are still taken. The final one
        (``graceful_goaway``) follows once a PING sent after this one comes
        back: by then the client has seen it."""
        frame = GoAwayFrame(0)
        frame.last_stream_id = LAST_STREAM_MAX
        frame.error_code = 0
        return bytes(frame.serialize())

    def graceful_goaway(self) -> bytes:
        """GOAWAY(NO_ERROR, last = highest stream seen) as raw bytes; streams up to
        it finish, later ones are refused."""
        last = self.conn.highest_inbound_stream_id
        self.goaway_last_id = last
        frame = GoAwayFrame(0)
        frame.last_stream_id = last
        frame.error_code = 0
        return frame.serialize()


class H2Client(_H2Base):
    def __init__(self, *, stream_window: int, max_concurrent_streams: int = 100) -> None:
        super().__init__(
            client_side=True,
            stream_window=stream_window,
            max_concurrent_streams=max_concurrent_streams,
        )

    @property
    def peer_max_streams(self) -> int:
        return int(self.conn.remote_settings.max_concurrent_streams)

    def open_stream(self, head: RequestHead, *, end_stream: bool) -> int:
        sid = self.conn.get_next_available_stream_id()
        headers = [
            (b":method", head.method),
            (b":scheme", head.scheme),
            (b":authority", head.authority),
            (b":path", head.target),
            *head.headers,
        ]
        self.conn.send_headers(sid, headers, end_stream=end_stream)
        return sid

    def _translate_headers(self, ev: h2.events.Event, out: list[H2Event]) -> None:
        if isinstance(ev, h2.events.ResponseReceived | h2.events.InformationalResponseReceived):
            sid = ev.stream_id or 0
            raw = list(ev.headers or [])
            status = _status(raw) if not response_fields_malformed(raw) else None
            if status is None:
                # A malformed response ends its stream only (RFC 9113 8.1.1):
                # the attempt sees a reset, as if the upstream had sent one.
                self.reset_stream(sid, h2.errors.ErrorCodes.PROTOCOL_ERROR)
                code = int(h2.errors.ErrorCodes.PROTOCOL_ERROR)
                out.append(StreamEvent(sid, StreamReset(code, False)))
                return
            _, regular = _split_pseudo(raw)
            if isinstance(ev, h2.events.ResponseReceived):
                out.append(StreamEvent(sid, ResponseHead(status, regular)))
            else:
                out.append(StreamEvent(sid, InformationalResponse(status, regular)))
