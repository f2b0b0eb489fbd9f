"""Stages: the one way to change or watch traffic as it streams.

A stage is a filter on one message, with a look at its head::

    head(head)   -> head    the head the next stage (and then the peer) sees
    feed(chunk)  -> bytes   what to pass on now (b"": held back, or nothing)
    end()        -> bytes   what it still holds, once the body has ended
    idle()       -> bytes   what to write while the upstream is silent
    whole                   True: it must see the whole body before the head
                            may go on (its length changes: a restored JSON
                            answer, a demoted stream rebuilt as one JSON);
                            a whole chain's heads are asked after ``end``,
                            so such a stage may set the status too

A stage that only watches returns what it was given, unchanged and uncopied.
Stages are composed per message, only those that apply: each stage class
says in ``make`` whether it does (None: it does not), and ``RESPONSE`` below
lists them in the order a chunk passes them. The plain pass-through request
(no provider edits, no scrubbing, not a Messages answer) has no stage at all:
its bytes are neither copied nor looked at.

Response side (upstream -> client), in ``RESPONSE`` order:

0. ``LogResponseStage``: the answer as it arrived, for the conversation
   log (``log_bodies``; watches, keeps references within
   ``log.max_body_bytes``); first, so it keeps the upstream's own bytes,
   placeholders and all (a Bedrock provider's once translated to SSE:
   ``LogResponseStage.translated``, after the translations).
1. ``ChatStreamStage`` / ``ChatAnswerStage`` (``translate_answer``): a
   Chat Completions provider's answer in Anthropic's shapes, stream chunk
   by chunk, JSON or error whole; ``EventStreamStage`` / ``BedrockWhole``
   (``bedrock_answer``) the same for a Bedrock provider's event stream,
   errors and token counts, ``GoogleError`` (``vertex_answer``) for
   Google's errors from Vertex; first, so the stages below read
   Anthropic's shapes.
2. ``UsageStage``: token usage, the served model and `event: error`s are
   observed for accounting and quotas (watches).
3. ``RestoreStage``: the request's placeholders are put back, in SSE deltas
   as they stream, or in a JSON answer (whole up to 1 MiB, so its
   content-length stays exact; larger, as it streams).
4. ``DemoteStage``: a demoted request's stream rebuilt into one JSON
   Message (whole: the head follows the body, with the stream's status).
5. ``PingStage``: during the upstream's silence an SSE answer gets
   ``event: ping`` at event boundaries (``stream_keepalive_s``); the relay
   asks ``idle()`` after that many seconds without upstream bytes.

Request side. As the client's body is read (``READING``, streaming):

1. ``TraitsStage``: whether the body asks for a stream or uses thinking,
   for the diagnostic line of a failed forward (watches; keeps references
   to the first and last 16 KiB, copies nothing).
2. ``LogRequestStage``: the body as read, for the conversation log
   (watches; references within ``log.max_body_bytes``). When a stage
   below rewrites the body, the log keeps the rewritten one instead (the
   one the upstream got: scrubbed, edited, translated).

Then, when a stage must see the JSON, in ``REQUEST`` (once per request)
then ``PER_PROVIDER`` order:

1. ``ScrubStage``: credentials and identifiers become placeholders.
2. ``EditStage``: the model mapped, top-level fields dropped, thinking
   blocks stripped on a family change, as each provider wants them.
3. ``DemoteEdit``: a non-streaming Messages request asks for a stream
   (``demote_nonstreaming``), by a byte-level edit.
4. ``TranslateRequest``: for a provider of kind "openai", the request as
   Chat Completions (openai/request.py).
5. ``BedrockRequest`` / ``VertexRequest``: for a provider of kind
   "bedrock" or "vertex", the request as the cloud takes it, and the path
   and headers it goes with (cloud_stages.py, bedrock/ and vertex/); the
   attempt adds the cloud's credential.
   Dropped ``anthropic-beta`` values are a head edit (rules/upstream_head.py).
Each needs the JSON: when one applies, the exchange reads the body whole
(within ``limits.max_body_bytes``) and keeps it for retries and failover.

A new response transform is one class with ``make`` (see ``Stage`` in
stage.py) in answer_stages.py, added to ``RESPONSE`` here; a request
transform goes to request_stages.py and ``REQUEST`` / ``PER_PROVIDER``. The
exchange never learns a stage's details, and a stage never learns the
transport.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from trioproxy.config.model import ProviderConfig
from trioproxy.exchange.answer_stages import (
    DemoteStage,
    LogResponseStage,
    PingStage,
    RestoreStage,
    UsageStage,
    translate_answer,
)
from trioproxy.exchange.cloud_stages import (
    BedrockRequest,
    CloudRequest,
    VertexRequest,
    bedrock_answer,
    vertex_answer,
)
from trioproxy.exchange.request_stages import (
    DemoteEdit,
    EditStage,
    LogRequestStage,
    ScrubStage,
    TraitsStage,
    TranslateRequest,
)
from trioproxy.exchange.stage import Chain, Leg, Stage
from trioproxy.proto.events import ResponseHead

if TYPE_CHECKING:
    from trioproxy.exchange.trip import Trip

__all__ = ["Chain", "Leg", "Stage", "prepare", "reading_chain", "response_chain", "run_whole"]


StageMaker = Callable[["Trip", Leg, ResponseHead], Stage | None]
# The response stages, in the order a chunk passes them (upstream -> client).
RESPONSE: tuple[StageMaker, ...] = (
    LogResponseStage.make,
    translate_answer,
    bedrock_answer,
    vertex_answer,
    LogResponseStage.translated,
    UsageStage.make,
    RestoreStage.make,
    DemoteStage.make,
    PingStage.make,
)


def response_chain(trip: Trip, leg: Leg, head: ResponseHead) -> Chain | None:
    """The stages that apply to this answer (None: none, pass it through).
    Each one after a translation is made for the head the translation
    gives (an event stream that became SSE is SSE to them)."""
    stages: list[Stage] = []
    for make in RESPONSE:
        stage = make(trip, leg, head)
        if stage is not None:
            stages.append(stage)
            if not stage.whole:
                head = stage.head(head)
    return Chain(stages) if stages else None


READING: tuple[Callable[[Trip], Stage | None], ...] = (TraitsStage.make, LogRequestStage.make)


def reading_chain(trip: Trip) -> Chain | None:
    """The stages the client's body passes as it is read (None: none)."""
    stages = [s for make in READING if (s := make(trip)) is not None]
    return Chain(stages) if stages else None


# The request stages that need the JSON, in order: once per request, then per provider.
REQUEST: tuple[Callable[[Trip], Stage | None], ...] = (ScrubStage.make,)
PER_PROVIDER: tuple[Callable[[Trip, ProviderConfig], Stage | None], ...] = (
    EditStage.make,
    DemoteEdit.make,
    TranslateRequest.make,
    BedrockRequest.make,
    VertexRequest.make,
)


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


def prepare(trip: Trip, provider: ProviderConfig, whole: bytes | None) -> Leg:
    """The request as ``provider`` gets it: the body through the
    ``PER_PROVIDER`` stages (None: it streams from the client as it came),
    and what they decided, which the answer's stages then follow."""
    translated = provider.kind == "openai" and trip.messages
    if whole is None:
        return Leg(provider, None, translated=translated)
    edits = [s for make in PER_PROVIDER if (s := make(trip, provider)) is not None]
    payload = run_whole(edits, whole) if edits else whole
    demoted = any(isinstance(s, DemoteEdit) and s.demoted for s in edits)
    cloud = next((s for s in edits if isinstance(s, CloudRequest)), None)
    return Leg(
        provider,
        payload,
        demoted=demoted,
        translated=translated,
        target=None if cloud is None else cloud.target,
        headers=() if cloud is None else cloud.headers,
    )
