"""The response stages (upstream -> client); ``stages.py`` lists them in
order and says what each is for."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trioproxy.accounting.usage import UsageObserver
from trioproxy.convlog.capture import Capture
from trioproxy.errors import UpstreamError
from trioproxy.exchange.stage import Leg, Stage, WholeJSON, without_length
from trioproxy.openai.answer import BadAnswer, to_error, to_message
from trioproxy.openai.stream import ChatStreamTranslator, StreamError
from trioproxy.proto.events import ResponseHead
from trioproxy.proto.headers import content_length, is_event_stream
from trioproxy.proto.sse import EventBoundary
from trioproxy.rules.demote import DemoteFailed, MessageAssembler
from trioproxy.scrub.restore import JSONRestorer, SSERestorer, restore_json

if TYPE_CHECKING:
    from trioproxy.accounting.record import RequestRecord
    from trioproxy.exchange.trip import Trip

WHOLE_JSON_MAX = 1024 * 1024  # bytes of a JSON answer restored whole (exact content-length)


class LogResponseStage(Stage):
    """Watches the answer as it arrives from the upstream, for the
    conversation log: its head, and references to its chunks (up to
    ``log.max_body_bytes``); before every other stage, so what is kept is
    what the upstream sent."""

    __slots__ = ("_capture",)

    def __init__(self, capture: Capture) -> None:
        self._capture = capture

    @classmethod
    def make(cls, trip: Trip, leg: Leg, head: ResponseHead) -> LogResponseStage | None:
        capture = trip.capture
        if capture is None or leg.provider.kind == "bedrock":
            return None
        capture.answering(head.headers)
        return cls(capture)

    @classmethod
    def translated(cls, trip: Trip, leg: Leg, head: ResponseHead) -> LogResponseStage | None:
        """For a Bedrock provider, the log keeps the answer once translated
        (Anthropic's SSE, placeholders still in): its binary event stream
        would be unreadable in the viewer, and the events are the same."""
        capture = trip.capture
        if capture is None or leg.provider.kind != "bedrock":
            return None
        capture.answering(head.headers)
        return cls(capture)

    def feed(self, chunk: bytes) -> bytes:
        self._capture.keep_response(chunk)
        return chunk


class UsageStage(Stage):
    """Watches a Messages answer for usage (accounting, quotas): keeps
    references to the first and last few KiB, decodes them at the end."""

    __slots__ = ("observer",)

    def __init__(self, stream: bool) -> None:
        self.observer = UsageObserver(event_stream=stream)

    @classmethod
    def make(cls, trip: Trip, leg: Leg, head: ResponseHead) -> UsageStage | None:
        if not trip.messages or not 200 <= head.status < 300:
            return None
        return cls(is_event_stream(head.headers))

    def feed(self, chunk: bytes) -> bytes:
        self.observer.feed(chunk)
        return chunk

    def settle(self, record: RequestRecord, *, complete: bool) -> None:
        record.usage = self.observer.finish(complete=complete)


class RestoreStage(Stage):
    """Puts the request's placeholders back into its answer."""

    __slots__ = ("_restorer",)

    def __init__(self, restorer: SSERestorer | JSONRestorer) -> None:
        self._restorer = restorer

    @classmethod
    def make(cls, trip: Trip, leg: Leg, head: ResponseHead) -> Stage | None:
        if not trip.restore:
            return None
        if is_event_stream(head.headers):
            return cls(SSERestorer(trip.restore))
        declared = content_length(head.headers)
        if declared is not None and declared <= WHOLE_JSON_MAX:
            return RestoreWhole(trip.restore)
        return cls(JSONRestorer(trip.restore))

    def head(self, head: ResponseHead) -> ResponseHead:
        return without_length(head)  # restored values change the length: chunked

    def feed(self, chunk: bytes) -> bytes:
        return self._restorer.feed(chunk)

    def end(self) -> bytes:
        return self._restorer.finish()


class RestoreWhole(Stage):
    """A JSON answer up to WHOLE_JSON_MAX, restored whole so that its
    content-length stays exact (the exchange sends the head after the body)."""

    __slots__ = ("_chunks", "_mapping")
    whole = True

    def __init__(self, mapping: dict[str, str]) -> None:
        self._mapping = mapping
        self._chunks: list[bytes] = []

    def feed(self, chunk: bytes) -> bytes:
        self._chunks.append(chunk)
        return b""

    def end(self) -> bytes:
        return restore_json(b"".join(self._chunks), self._mapping)


class DemoteStage(Stage):
    """A demoted request's stream, rebuilt into the one JSON Message the
    client asked for (rules/demote.py). Whole: the head goes after the
    body, with the status the stream ended with (an ``event: error`` gives
    the error's own) and an exact content-length."""

    __slots__ = ("_assembler", "_status")
    whole = True

    def __init__(self, request_id: str, max_bytes: int) -> None:
        self._assembler = MessageAssembler(request_id=request_id, max_bytes=max_bytes)
        self._status = 200

    @classmethod
    def make(cls, trip: Trip, leg: Leg, head: ResponseHead) -> DemoteStage | None:
        if not leg.demoted or head.status != 200 or not is_event_stream(head.headers):
            return None  # an error answer comes as JSON already: verbatim
        rid = (head.header(b"request-id") or b"").decode("latin-1")
        return cls(rid, trip.cfg.limits.max_body_bytes)

    def head(self, head: ResponseHead) -> ResponseHead:
        drop = (b"content-type", b"content-length", b"cache-control")  # an event stream's
        headers = [(n, v) for n, v in head.headers if n not in drop]
        headers.append((b"content-type", b"application/json"))
        if (self._status >= 500 or self._status == 429) and head.header(b"x-should-retry") is None:
            # What the API says with a retryable error: SDKs read it.
            headers.append((b"x-should-retry", b"true"))
        return ResponseHead(self._status, headers, b"")

    def feed(self, chunk: bytes) -> bytes:
        try:
            self._assembler.feed(chunk)
        except DemoteFailed as exc:
            raise UpstreamError(f"the upstream's stream could not be rebuilt: {exc}") from None
        return b""

    def end(self) -> bytes:
        try:
            self._status, body = self._assembler.result()
        except DemoteFailed as exc:
            raise UpstreamError(f"the upstream's stream could not be rebuilt: {exc}") from None
        return body


PING = b'event: ping\ndata: {"type": "ping"}\n\n'  # the API's own keep-alive event


class PingStage(Stage):
    """Keep-alive for a silent SSE stream: asked during the upstream's
    silence (``stream_keepalive_s``), it offers a ``ping`` event, but only
    at an event boundary, never inside a partly received event."""

    __slots__ = ("_boundary", "_trip")

    def __init__(self, trip: Trip) -> None:
        self._trip = trip
        self._boundary = EventBoundary()

    @classmethod
    def make(cls, trip: Trip, leg: Leg, head: ResponseHead) -> PingStage | None:
        if not trip.cfg.stream_keepalive_s or leg.demoted or not is_event_stream(head.headers):
            return None
        return cls(trip)

    def feed(self, chunk: bytes) -> bytes:
        self._boundary.feed(chunk)
        return chunk

    def idle(self) -> bytes:
        if not self._boundary.at_boundary:
            return b""
        self._trip.record.pings += 1
        return PING


class ChatStreamStage(Stage):
    """A Chat Completions stream as Anthropic's events, chunk by chunk
    (openai/stream.py): first of the response stages, so every later one
    (usage, restore, demotion, pings) reads Anthropic's shapes."""

    __slots__ = ("_translator",)

    def __init__(self) -> None:
        self._translator = ChatStreamTranslator()

    def head(self, head: ResponseHead) -> ResponseHead:
        return without_length(head)

    def feed(self, chunk: bytes) -> bytes:
        try:
            return self._translator.feed(chunk)
        except StreamError as exc:
            raise UpstreamError(f"the provider's stream could not be translated: {exc}") from None

    def end(self) -> bytes:
        try:
            return self._translator.end()
        except StreamError as exc:
            raise UpstreamError(f"the provider's stream could not be translated: {exc}") from None


class ChatAnswerStage(WholeJSON):
    """A Chat Completions JSON answer as one Message, or its error in
    Anthropic's shape and status (whole: the status may change, and the
    length does)."""

    __slots__ = ("_request_id",)

    def __init__(self, status: int, request_id: str) -> None:
        super().__init__(status)
        self._request_id = request_id

    def end(self) -> bytes:
        data = self._data()
        if self._status != 200:
            self._status, body = to_error(self._status, data, self._request_id)
            return body
        try:
            return to_message(data)
        except BadAnswer as exc:
            raise UpstreamError(f"the provider's answer could not be translated: {exc}") from None


def translate_answer(trip: Trip, leg: Leg, head: ResponseHead) -> Stage | None:
    """The answer of a Chat Completions provider, in the Messages API's terms."""
    if not leg.translated:
        return None
    if head.status == 200 and is_event_stream(head.headers):
        return ChatStreamStage()
    rid = (head.header(b"x-request-id") or head.header(b"request-id") or b"").decode("latin-1")
    return ChatAnswerStage(head.status, rid)
