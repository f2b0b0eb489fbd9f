"""Stages: the one way to change or watch traffic as it streams.

A stage is a filter on one message, with a look at its head::

    head(head)   -> head    the head the next stage (and then the peer) sees
    feed(chunk)  -> bytes   what to pass on now (b"": held back, or nothing)
    end()        -> bytes   what it still holds, once the body has ended
    whole                   True: it must see the whole body before the head
                            may go on (its length changes: a restored JSON
                            answer, a demoted stream rebuilt as one JSON)

A stage that only watches returns what it was given, unchanged and uncopied.
Stages are composed per message, only those that apply: each stage class
says in ``make`` whether it does (None: it does not), and ``RESPONSE`` below
lists them in the order a chunk passes them. The plain pass-through request
(no provider edits, no scrubbing, not a Messages answer) has no stage at all:
its bytes are neither copied nor looked at.

Response side (upstream -> client), in ``RESPONSE`` order:

   (Translation from another API goes first: the stages below read
   Anthropic's shapes.)
1. ``UsageStage``: token usage, the served model and `event: error`s are
   observed for accounting and quotas (watches).
2. ``RestoreStage``: the request's placeholders are put back, in SSE deltas
   as they stream, or in a JSON answer (whole up to 1 MiB, so its
   content-length stays exact; larger, as it streams).
   (Demotion, the conversation log and ping injection come after these.)

Request side. As the client's body is read (``READING``, streaming):

1. ``TraitsStage``: whether the body asks for a stream or uses thinking,
   for the diagnostic line of a failed forward (watches; keeps references
   to the first and last 16 KiB, copies nothing).

Then, when a stage must see the JSON, in ``REQUEST`` (once per request)
then ``PER_PROVIDER`` order:

1. ``ScrubStage``: credentials and identifiers become placeholders.
2. ``EditStage``: the model mapped, top-level fields dropped, thinking
   blocks stripped on a family change, as each provider wants them.
   Dropped ``anthropic-beta`` values are a head edit (pipeline/forward.py).
   (Translation to another API's request will go here.)
Both need the JSON: when one applies, the exchange reads the body whole
(within ``limits.max_body_bytes``) and keeps it for retries and failover.

A new response transform is one class with ``make`` (see ``Stage``) added to
``RESPONSE``; the exchange never learns its details, and it never learns
the transport.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from trioproxy.accounting.usage import Usage, UsageObserver
from trioproxy.config.model import ProviderConfig
from trioproxy.pipeline.traits import BodyTraits
from trioproxy.pipeline.transform import rewrite
from trioproxy.proto.events import ResponseHead
from trioproxy.proto.headers import content_length, is_event_stream
from trioproxy.scrub.restore import JSONRestorer, SSERestorer, restore_json

if TYPE_CHECKING:
    from trioproxy.exchange.trip import Trip

WHOLE_JSON_MAX = 1024 * 1024  # bytes of a JSON answer restored whole (exact content-length)


class Stage:
    """The interface, with the identity as every default."""

    __slots__ = ()
    whole = False

    def head(self, head: ResponseHead) -> ResponseHead:
        return head

    def feed(self, chunk: bytes) -> bytes:
        return chunk

    def end(self) -> bytes:
        return b""


class Chain:
    """Stages run in order: each one's output is the next one's input."""

    __slots__ = ("stages", "whole")

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = tuple(stages)
        self.whole = any(s.whole for s in self.stages)

    def head(self, head: ResponseHead) -> ResponseHead:
        for s in self.stages:
            head = s.head(head)
        return head

    def feed(self, chunk: bytes) -> bytes:
        for s in self.stages:
            if not chunk:
                return b""
            chunk = s.feed(chunk)
        return chunk

    def end(self) -> bytes:
        """Whatever each stage still holds, passed through the ones after it."""
        pending = b""
        for s in self.stages:
            if pending:
                pending = s.feed(pending)
            pending += s.end()
        return pending


def _without_length(head: ResponseHead) -> ResponseHead:
    return ResponseHead(
        head.status, [(n, v) for n, v in head.headers if n != b"content-length"], head.reason
    )


# -- response stages ------------------------------------------------------------
class UsageStage(Stage):
    """Watches a Messages answer for usage (accounting, quotas): keeps
    references to the first and last few KiB, decodes them at the end."""

    __slots__ = ("observer",)

    def __init__(self, stream: bool) -> None:
        self.observer = UsageObserver(event_stream=stream)

    @classmethod
    def make(cls, trip: Trip, head: ResponseHead) -> UsageStage | None:
        if not trip.messages or not 200 <= head.status < 300:
            return None
        stage = cls(is_event_stream(head.headers))
        trip.usage_stage = stage
        return stage

    def feed(self, chunk: bytes) -> bytes:
        self.observer.feed(chunk)
        return chunk

    def finish(self, *, complete: bool) -> Usage:
        return self.observer.finish(complete=complete)


class RestoreStage(Stage):
    """Puts the request's placeholders back into its answer."""

    __slots__ = ("_restorer",)

    def __init__(self, restorer: SSERestorer | JSONRestorer) -> None:
        self._restorer = restorer

    @classmethod
    def make(cls, trip: Trip, head: ResponseHead) -> Stage | None:
        if not trip.restore:
            return None
        if is_event_stream(head.headers):
            return cls(SSERestorer(trip.restore))
        declared = content_length(head.headers)
        if declared is not None and declared <= WHOLE_JSON_MAX:
            return RestoreWhole(trip.restore)
        return cls(JSONRestorer(trip.restore))

    def head(self, head: ResponseHead) -> ResponseHead:
        return _without_length(head)  # restored values change the length: chunked

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


StageMaker = Callable[["Trip", ResponseHead], Stage | None]
# The response stages, in the order a chunk passes them (upstream -> client).
RESPONSE: tuple[StageMaker, ...] = (UsageStage.make, RestoreStage.make)


def response_chain(trip: Trip, head: ResponseHead) -> Chain | None:
    """The stages that apply to this answer (None: none, pass it through)."""
    stages = [s for make in RESPONSE if (s := make(trip, head)) is not None]
    return Chain(stages) if stages else None


# -- request stages ----------------------------------------------------------------
class TraitsStage(Stage):
    """Watches the request body as it is read, for the diagnostic line."""

    __slots__ = ("traits",)

    def __init__(self) -> None:
        self.traits = BodyTraits()

    @classmethod
    def make(cls, trip: Trip) -> TraitsStage | None:
        if not trip.ex.has_body:
            return None
        stage = cls()
        trip.traits_stage = stage
        return stage

    def feed(self, chunk: bytes) -> bytes:
        self.traits.feed(chunk)
        return chunk


class _Whole(Stage):
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


class ScrubStage(_Whole):
    """Credentials and identifiers become placeholders; the mapping to put
    them back is kept on the trip for RestoreStage (never logged). Runs
    once per request, whatever the provider."""

    __slots__ = ()

    @classmethod
    def make(cls, trip: Trip) -> ScrubStage | None:
        return cls(trip) if trip.cfg.scrub is not None and trip.ex.head.method == b"POST" else None

    def end(self) -> bytes:
        return self._trip.scrub(self._body())


class EditStage(_Whole):
    """The body as one provider wants it (pipeline/transform.py): the model
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
        if model is not None:
            model = provider.map_model(trip.cfg.routing.resolve_alias(model))
        return rewrite(
            parsed,
            model=model,
            drop_fields=provider.drop_fields,
            strip_thinking=provider.family != trip.home,
        )


# The request body as it is read from the client (streaming, before anything else).
READING: tuple[Callable[[Trip], Stage | None], ...] = (TraitsStage.make,)


def reading_chain(trip: Trip) -> Chain | None:
    """The stages the client's body passes as it is read (None: none)."""
    stages = [s for make in READING if (s := make(trip)) is not None]
    return Chain(stages) if stages else None


# The request stages that need the JSON, in order: once per request, then per provider.
REQUEST: tuple[Callable[[Trip], Stage | None], ...] = (ScrubStage.make,)
PER_PROVIDER: tuple[Callable[[Trip, ProviderConfig], Stage | None], ...] = (EditStage.make,)


def run_whole(stages: Sequence[Stage], body: bytes) -> bytes:
    """A body known whole, through stages (request side); the very same
    bytes object when no stage changes it."""
    if not stages:
        return body
    chain = Chain(stages)
    out, rest = chain.feed(body), chain.end()
    if not rest:
        return out
    return out + rest if out else rest
