"""Stages for Claude on a cloud (``kind = "bedrock"`` or ``"vertex"``):
the request in the cloud's dialect, and its answer back in the Messages
API's (``bedrock/``, ``vertex/``); ``stages.py`` says where they run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trioproxy.bedrock.errors import from_json_answer, retry_after
from trioproxy.bedrock.relay import FrameMemo
from trioproxy.bedrock.request import (
    Bridge,
    bridge_of,
    count_tokens_answer,
    count_tokens_body,
    count_tokens_path,
    invoke_body,
    invoke_path,
    split_betas,
)
from trioproxy.bedrock.stream import EventStreamToSSE, StreamError
from trioproxy.config.model import ProviderConfig
from trioproxy.errors import InvalidRequest, UpstreamError
from trioproxy.exchange.request_stages import WholeBody
from trioproxy.exchange.stage import Leg, Stage, WholeJSON
from trioproxy.proto.events import ResponseHead
from trioproxy.vertex.errors import from_answer as google_error
from trioproxy.vertex.errors import retry_after as vertex_retry_after
from trioproxy.vertex.request import count_tokens_path as vertex_count_path
from trioproxy.vertex.request import predict_body, predict_path

if TYPE_CHECKING:
    from trioproxy.exchange.trip import Trip

EVENT_STREAM = b"application/vnd.amazon.eventstream"
COUNT_TOKENS = b"/v1/messages/count_tokens"


class CloudRequest(WholeBody):
    """The Messages request (or its token count) as a cloud takes it. What
    it decides, the path and the headers the request goes with, the leg
    carries to the attempt (stages.prepare)."""

    __slots__ = ("_count", "_provider", "headers", "target")
    KIND = ""

    def __init__(self, trip: Trip, provider: ProviderConfig) -> None:
        super().__init__(trip)
        self._provider = provider
        self._count = trip.ex.head.path == COUNT_TOKENS
        self.target = b""  # the provider's path
        self.headers: tuple[tuple[bytes, bytes], ...] = ()

    @classmethod
    def make(cls, trip: Trip, provider: ProviderConfig) -> CloudRequest | None:
        if provider.kind != cls.KIND:
            return None
        return cls(trip, provider) if trip.messages or trip.ex.head.path == COUNT_TOKENS else None

    def end(self) -> bytes:
        body = self._body()
        trip, provider = self._trip, self._provider
        parsed = trip.parsed_body(body)
        if parsed is None:
            raise InvalidRequest("the request body is not a JSON object")
        model = parsed.model
        if not model:
            raise InvalidRequest(f"model: a {self.KIND} provider needs the model to find its path")
        betas = split_betas(v for n, v in trip.ex.head.headers if n == b"anthropic-beta")
        bridge = bridge_of(provider.drop_fields, (b.decode() for b in provider.drop_betas))
        out, dropped = self._edit(body, parsed.doc, model, betas, bridge)
        trip.record.dropped = ",".join(dropped)
        return out

    def _edit(
        self,
        body: bytes,
        doc: dict[str, Any],
        model: str,
        betas: list[str],
        bridge: tuple[Bridge, ...],
    ) -> tuple[bytes, list[str]]:
        raise NotImplementedError


class BedrockRequest(CloudRequest):
    """As Bedrock's InvokeModel (or CountTokens) takes it."""

    __slots__ = ()
    KIND = "bedrock"

    def _edit(
        self,
        body: bytes,
        doc: dict[str, Any],
        model: str,
        betas: list[str],
        bridge: tuple[Bridge, ...],
    ) -> tuple[bytes, list[str]]:
        invoke, dropped = invoke_body(body, doc, betas, bridge)
        if self._count:
            self.target = count_tokens_path(model)
            return count_tokens_body(invoke), dropped
        stream = doc.get("stream") is True
        self.target = invoke_path(model, stream=stream)
        self.headers = ((b"accept", EVENT_STREAM if stream else b"application/json"),)
        return invoke, dropped


class VertexRequest(CloudRequest):
    """As Claude on Vertex AI takes it: rawPredict, streamRawPredict or
    count-tokens; the betas it keeps go as the header."""

    __slots__ = ()
    KIND = "vertex"

    def _edit(
        self,
        body: bytes,
        doc: dict[str, Any],
        model: str,
        betas: list[str],
        bridge: tuple[Bridge, ...],
    ) -> tuple[bytes, list[str]]:
        p = self._provider
        out, kept, dropped = predict_body(body, doc, betas, bridge, keep_model=self._count)
        if self._count:
            self.target = vertex_count_path(p.project, p.region)
        else:
            self.target = predict_path(p.project, p.region, model, stream=doc.get("stream") is True)
        if kept:
            self.headers = ((b"anthropic-beta", ",".join(kept).encode()),)
        return out, dropped


class EventStreamStage(Stage):
    """Bedrock's event stream as Anthropic's SSE, frame by frame; first of
    the response stages (after the log's), so every later one reads SSE."""

    __slots__ = ("_translator",)

    def __init__(self, memo: FrameMemo | None = None) -> None:
        """``memo``: the client's (one of Bedrock's format), which gets the
        frames no stage changed as they came."""
        self._translator = EventStreamToSSE(memo)

    def head(self, head: ResponseHead) -> ResponseHead:
        headers = [(n, v) for n, v in head.headers if n not in (b"content-type", b"content-length")]
        headers.append((b"content-type", b"text/event-stream; charset=utf-8"))
        return ResponseHead(head.status, headers, head.reason)

    def feed(self, chunk: bytes) -> bytes:
        if self._translator.ended:
            return b""  # an error event closed the stream: the rest is not Anthropic's
        try:
            return self._translator.feed(chunk)
        except StreamError as exc:
            raise UpstreamError(f"the provider's event stream broke: {exc}") from None

    def end(self) -> bytes:
        try:
            return self._translator.end()
        except StreamError as exc:
            raise UpstreamError(f"the provider's event stream broke: {exc}") from None


class BedrockWhole(WholeJSON):
    """A JSON answer that changes shape: an error in Anthropic's shape and
    status (Bedrock's words kept), or a token count in Anthropic's terms."""

    __slots__ = ("_count", "_errortype", "_request_id")

    def __init__(self, head: ResponseHead, *, count: bool) -> None:
        super().__init__(head.status)
        self._count = count
        self._errortype = (head.header(b"x-amzn-errortype") or b"").decode("latin-1")
        self._request_id = (head.header(b"x-amzn-requestid") or b"").decode("latin-1")

    def wait(self) -> int | None:
        return retry_after(self._status)

    def end(self) -> bytes:
        data = self._data()
        if self._status == 200:
            counted = count_tokens_answer(data)
            if counted is None:
                raise UpstreamError("the provider's token count could not be read")
            return counted
        self._status, body = from_json_answer(self._status, self._errortype, data, self._request_id)
        return body


def bedrock_answer(trip: Trip, leg: Leg, head: ResponseHead) -> Stage | None:
    """A Bedrock provider's answer in the Messages API's terms (None: a
    Message as JSON, which is already Anthropic's)."""
    if leg.provider.kind != "bedrock":
        return None
    count = trip.ex.head.path == COUNT_TOKENS
    if head.status == 200 and not count:
        kind = head.header(b"content-type") or b""
        if not kind.startswith(EVENT_STREAM):
            return None
        memo = getattr(trip.ex, "frames", None)  # a client of Bedrock's format
        return EventStreamStage(memo if isinstance(memo, FrameMemo) else None)
    return BedrockWhole(head, count=count)


class GoogleError(WholeJSON):
    """An error from Google's front of Vertex AI in Anthropic's shape and
    status (Claude's own errors pass as they came)."""

    __slots__ = ("_request_id",)

    def __init__(self, head: ResponseHead) -> None:
        super().__init__(head.status)
        self._request_id = (head.header(b"x-request-id") or b"").decode("latin-1")

    def wait(self) -> int | None:
        return vertex_retry_after(self._status)

    def end(self) -> bytes:
        data = self._data()
        mapped = google_error(self._status, data, self._request_id)
        if mapped is None:
            return data  # Claude's own error: as it came
        self._status, body = mapped
        return body


def vertex_answer(trip: Trip, leg: Leg, head: ResponseHead) -> Stage | None:
    """A Vertex provider's answer: a stream or a Message is Anthropic's
    already; an error may be Google's."""
    if leg.provider.kind != "vertex" or head.status < 400:
        return None
    return GoogleError(head)
