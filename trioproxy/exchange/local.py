"""What the proxy answers itself instead of an upstream, when the plan
says so (plan.py): a token count estimated for a Chat Completions
provider, which has no count of its own; and the models list, from the
proxy's own catalogue (routing/catalogue.py), in the shape of the format
the client speaks (Anthropic's, or OpenAI's for a client that sends no
``anthropic-version``)."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote

import orjson
import trio

from trioproxy.callers.policy import check_model
from trioproxy.errors import (
    InvalidRequest,
    NotFound,
    RateLimited,
    RequestTooLarge,
    Unavailable,
)
from trioproxy.exchange.respond import deliver
from trioproxy.exchange.trip import Trip
from trioproxy.proto.events import ResponseHead
from trioproxy.routing.catalogue import (
    Model,
    anthropic_model,
    anthropic_page,
    bedrock_profiles,
    catalogue,
    openai_list,
    openai_model,
    visible,
)
from trioproxy.telemetry.stamp import SIGNALS, stamp
from trioproxy.telemetry.stamp import answer as otlp_answer

ESTIMATE_HEADER = b"x-trioproxy-estimate"
MODELS = b"/v1/models"
ESTIMATE = "estimate"  # Plan.local: count_tokens estimated here
LIST_MODELS = "models"  # Plan.local: GET /v1/models[/{id}] from the catalogue
PROFILES = "profiles"  # Plan.local: Bedrock's GET /inference-profiles[/{id}], from it too
RELAY = "relay"  # Plan.local: a caller's own OTLP telemetry, to telemetry.relay_to
INFERENCE_PROFILES = b"/inference-profiles"


def is_models(method: bytes, path: bytes) -> bool:
    return method in (b"GET", b"HEAD") and (path == MODELS or path.startswith(MODELS + b"/"))


def is_profiles(method: bytes, path: bytes) -> bool:
    """Bedrock's inference profile lookups (a Bedrock-format client's first call)."""
    return method in (b"GET", b"HEAD") and (
        path == INFERENCE_PROFILES or path.startswith(INFERENCE_PROFILES + b"/")
    )


async def answer_locally(what: str, trip: Trip, body: bytes) -> None:
    if what == ESTIMATE:
        await _estimate_tokens(trip, body)
    elif what == PROFILES:
        await _profiles(trip)
    elif what == RELAY:
        await _relay(trip, body)
    else:
        await _models(trip)


async def _estimate_tokens(trip: Trip, body: bytes) -> None:
    """count_tokens for a Chat Completions provider, which has none: about
    four bytes a token, and a header that says it is an estimate."""
    doc = orjson.dumps({"input_tokens": max(1, len(body) // 4)})
    head = ResponseHead(
        200, [(b"content-type", b"application/json"), (ESTIMATE_HEADER, b"bytes/4")]
    )
    trip.record.status, trip.record.origin = 200, "proxy"
    await deliver(trip, head, doc)


async def _profiles(trip: Trip) -> None:
    """The catalogue as Bedrock's system-defined inference profiles (one per
    geography and model), so a Bedrock-format client finds the models it
    can ask for; an unknown profile is Bedrock's 404."""
    head = trip.ex.head
    profiles = bedrock_profiles(_visible(trip))
    wanted = head.path[len(INFERENCE_PROFILES) + 1 :].decode("latin-1")
    if wanted:
        found = next((p for p in profiles if unquote(wanted) == p["inferenceProfileId"]), None)
        if found is None:
            body = orjson.dumps({"message": f"Inference profile {unquote(wanted)} not found"})
            head_out = ResponseHead(
                404,
                [
                    (b"content-type", b"application/json"),
                    (b"x-amzn-errortype", b"ResourceNotFoundException:"),
                ],
            )
            trip.record.status, trip.record.origin = 404, "proxy"
            await deliver(trip, head_out, body)
            return
        doc = orjson.dumps(found)
    else:
        doc = orjson.dumps({"inferenceProfileSummaries": profiles})
    trip.record.status, trip.record.origin = 200, "proxy"
    await deliver(trip, ResponseHead(200, [(b"content-type", b"application/json")]), doc)


def _visible(trip: Trip) -> list[Model]:
    routing, caller = trip.cfg.routing, trip.caller
    models = catalogue(routing)
    if caller is not None and caller.models:
        models = visible(models, lambda m: check_model(caller, routing.resolve_alias(m)) is None)
    return models


async def _models(trip: Trip) -> None:
    """The catalogue, filtered by the caller's allowlist; one model by id;
    an unknown id is a 404 in the client's format."""
    head = trip.ex.head
    models = _visible(trip)
    anthropic = head.header(b"anthropic-version") is not None
    wanted = unquote(head.path[len(MODELS) + 1 :].decode("latin-1")) if head.path != MODELS else ""
    if wanted:
        found = next((m for m in models if m.id == wanted), None)
        if found is None:
            if anthropic:
                raise NotFound(f"model: {wanted}")
            await _openai_not_found(trip, wanted)
            return
        doc = orjson.dumps(anthropic_model(found)) if anthropic else openai_model(found)
    elif anthropic:
        query = dict(parse_qsl(trip.ex.head.target.partition(b"?")[2].decode("latin-1")))
        doc = anthropic_page(models, query)
    else:
        doc = openai_list(models)
    trip.record.status, trip.record.origin = 200, "proxy"
    await deliver(trip, ResponseHead(200, [(b"content-type", b"application/json")]), doc)


async def _openai_not_found(trip: Trip, wanted: str) -> None:
    body = orjson.dumps(
        {
            "error": {
                "message": f"The model '{wanted}' does not exist",
                "type": "invalid_request_error",
                "param": None,
                "code": "model_not_found",
            }
        }
    )
    trip.record.status, trip.record.origin = 404, "proxy"
    await deliver(trip, ResponseHead(404, [(b"content-type", b"application/json")]), body)


async def _relay(trip: Trip, body: bytes) -> None:
    """A caller's OTLP export: bounded, rate-limited, stamped with the
    caller (in a worker thread), queued for the collectors, and answered
    without waiting for them."""
    relay, head = trip.relay, trip.ex.head
    assert relay is not None
    # A caller's telemetry is not a conversation: it stays out of the
    # conversation log (Claude Code exports every few seconds, in protobuf).
    trip.capture = None
    signal = SIGNALS[head.path]
    caller = trip.record.caller
    if len(body) > relay.cfg.max_body_bytes:
        relay.counts[(signal.name, "refused")] += 1
        raise RequestTooLarge(
            f"the export is {len(body)} bytes; the relay takes at most "
            f"{relay.cfg.max_body_bytes} (telemetry.relay_max_body_bytes)"
        )
    wait = relay.admit(caller)
    if wait is not None:
        relay.counts[(signal.name, "refused")] += 1
        raise RateLimited(
            f"caller {caller} sent its {relay.cfg.rpm} exports for this minute "
            "(telemetry.relay_rpm)",
            retry_after=wait,
        )
    json = (head.header(b"content-type") or b"").startswith(b"application/json")
    try:
        # Parsing up to telemetry.relay_max_body_bytes (JSON in pure Python):
        # in a worker thread, never on the event loop.
        payload = await trio.to_thread.run_sync(stamp, signal, body, json, caller)
    except ValueError as exc:
        relay.counts[(signal.name, "refused")] += 1
        raise InvalidRequest(str(exc)) from None
    if not relay.offer(signal.name, head.path.decode("latin-1"), payload):
        raise Unavailable("the telemetry relay's queue is full; send again shortly")
    kind, answer_body = otlp_answer(signal, json)
    trip.record.status, trip.record.origin = 200, "proxy"
    await deliver(trip, ResponseHead(200, [(b"content-type", kind)]), answer_body)
