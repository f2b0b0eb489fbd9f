"""The request stages (client -> upstream); ``stages.py`` lists them in
order and says what each is for."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from trioproxy.config.model import ProviderConfig
from trioproxy.convlog.capture import Capture
from trioproxy.errors import InvalidRequest
from trioproxy.exchange.stage import Stage
from trioproxy.openai.request import Untranslatable, to_chat
from trioproxy.routing.routes import model_for
from trioproxy.rules.demote import streaming_body
from trioproxy.rules.traits import BodyTraits
from trioproxy.rules.transform import rewrite
from trioproxy.rules.wording import TOKEN

if TYPE_CHECKING:
    from trioproxy.accounting.record import RequestRecord
    from trioproxy.exchange.trip import Trip


class TraitsStage(Stage):
    """Watches the request body as it is read, for the diagnostic line."""

    __slots__ = ("traits",)

    def __init__(self) -> None:
        self.traits = BodyTraits()

    @classmethod
    def make(cls, trip: Trip) -> TraitsStage | None:
        if not trip.ex.has_body:
            return None
        return cls()

    def feed(self, chunk: bytes) -> bytes:
        self.traits.feed(chunk)
        return chunk

    def settle(self, record: RequestRecord, *, complete: bool) -> None:
        if not complete:
            return  # the traits of a body not read to its end are unknown
        record.traits = self.traits
        # Only a request not answered with success can have asked for a
        # stream and got JSON (an error, the proxy's own: status still 0
        # here, or the upstream's); the body is searched only then, never
        # on a successful request's path.
        failed = record.status == 0 or record.status >= 400
        if failed and not record.stream and self.traits.stream:
            record.stream = True  # the access line says what the client asked for


class LogRequestStage(Stage):
    """Watches the request body as it is read, for the conversation log:
    keeps references to the chunks (up to ``log.max_body_bytes``)."""

    __slots__ = ("_capture",)

    def __init__(self, capture: Capture) -> None:
        self._capture = capture

    @classmethod
    def make(cls, trip: Trip) -> LogRequestStage | None:
        if trip.capture is None or not trip.ex.has_body:
            return None
        return cls(trip.capture)

    def feed(self, chunk: bytes) -> bytes:
        self._capture.keep_request(chunk)
        return chunk


class WholeBody(Stage):
    """A request stage that needs the whole body (the JSON) to do its work."""

    __slots__ = ("_chunks", "_trip")
    whole = True

    def __init__(self, trip: Trip) -> None:
        self._trip = trip
        self._chunks: list[bytes] = []

    def feed(self, chunk: bytes) -> bytes:
        self._chunks.append(chunk)
        return b""

    def _body(self) -> bytes:
        return self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)


class ScrubStage(WholeBody):
    """Credentials and identifiers become placeholders; the mapping to put
    them back is kept on the trip for RestoreStage (never logged). Runs
    once per request, whatever the provider."""

    __slots__ = ()

    @classmethod
    def make(cls, trip: Trip) -> ScrubStage | None:
        return cls(trip) if trip.cfg.scrub is not None and trip.ex.head.method == b"POST" else None

    def end(self) -> bytes:
        return self._trip.scrub(self._body())


class EditStage(WholeBody):
    """The body as one provider wants it (rules/transform.py): the model
    mapped, fields dropped, thinking blocks stripped on a family change. The
    same bytes when nothing changes; parsed once per request."""

    __slots__ = ("_provider",)

    def __init__(self, trip: Trip, provider: ProviderConfig) -> None:
        super().__init__(trip)
        self._provider = provider

    @classmethod
    def make(cls, trip: Trip, provider: ProviderConfig) -> EditStage | None:
        return cls(trip, provider) if trip.cfg.routing.needs_body else None

    def end(self) -> bytes:
        body = self._body()
        trip, provider = self._trip, self._provider
        parsed = trip.parsed_body(body)
        if parsed is None:
            return body  # not a JSON object: forwarded as it is, the provider judges it
        model = parsed.model
        route = trip.route
        routed = route is not None and route.model and provider.name == route.provider
        if model is not None or routed:
            model = model_for(provider, route, model or "", trip.cfg.routing)
        return rewrite(
            parsed,
            model=model,
            drop_fields=provider.drop_fields,
            strip_thinking=provider.family != trip.home,
        )


class DemoteEdit(WholeBody):
    """A non-streaming Messages request asks this provider for a stream
    (a byte-level edit: every other byte as sent); ``demoted`` says whether
    it did, which goes into the leg (stages.prepare), so DemoteStage
    rebuilds the answer. Per provider: each may say otherwise."""

    __slots__ = ("demoted",)

    def __init__(self, trip: Trip) -> None:
        super().__init__(trip)
        self.demoted = False  # what it decided: the body now asks for a stream

    @classmethod
    def make(cls, trip: Trip, provider: ProviderConfig) -> DemoteEdit | None:
        return cls(trip) if provider.demote_nonstreaming and trip.messages else None

    def end(self) -> bytes:
        body = self._body()
        parsed = self._trip.parsed_body(body)
        edited = None if parsed is None else streaming_body(body, parsed.doc)
        if edited is None:
            return body
        self.demoted = True
        return edited


# The request body as it is read from the client (streaming, before anything else).


class TranslateRequest(WholeBody):
    """The Messages request as a Chat Completions one for a provider of
    kind "openai" (openai/request.py); what it drops is noted in the access
    line, what it cannot drop is a 400 naming it."""

    __slots__ = ("_provider",)

    def __init__(self, trip: Trip, provider: ProviderConfig) -> None:
        super().__init__(trip)
        self._provider = provider

    @classmethod
    def make(cls, trip: Trip, provider: ProviderConfig) -> TranslateRequest | None:
        return cls(trip, provider) if provider.kind == "openai" and trip.messages else None

    def end(self) -> bytes:
        body = self._body()
        parsed = self._trip.parsed_body(body)
        if parsed is None:
            raise InvalidRequest("the request body is not a JSON object")
        try:
            out = to_chat(parsed.doc, parsed.model or "", reasoning=self._provider.reasoning)
        except Untranslatable as exc:
            message = f"provider {self._provider.name}: {exc}"
            if exc.capability:  # Claude Code drops the feature and retries
                message += f" ({TOKEN}{exc.capability})"
            raise InvalidRequest(message) from None
        self._trip.record.dropped = ",".join(out.notes)
        return orjson.dumps(out.body)
