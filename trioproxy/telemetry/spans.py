"""A finished request as OpenTelemetry spans (pure but for the SDK's data
classes): a server span for the client's request; children for
authentication, the routing decision, and each upstream attempt, a client
span with OpenTelemetry's GenAI attributes. Retries, failovers, scrub
hits, demotion and pings are events. Built from the record and its trace
note after the fact, so the request path only took notes.

What never goes in a span: a prompt, an answer, a credential, a scrubbed
value or a placeholder. Only names (models, providers, the caller's
configured name), counts, statuses and times.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from trioproxy import __version__
from trioproxy.accounting.record import RequestRecord
from trioproxy.accounting.trace_note import AttemptNote, TraceNote
from trioproxy.proto.tracecontext import new_span_id

SCOPE = InstrumentationScope("trioproxy", __version__)
_FLAGS = TraceFlags(TraceFlags.SAMPLED)
MESSAGES_PATHS = ("/v1/messages", "/v1/chat/completions")


def build(record: RequestRecord, note: TraceNote, resource: Resource) -> list[ReadableSpan]:
    def ns(mono: float) -> int:
        return int((record.started + (mono - record.started_monotonic)) * 1e9)

    start = int(record.started * 1e9)
    end = start + int(record.duration_s * 1e9)
    server = _ctx(note, note.span_id)
    parent = (
        SpanContext(note.trace_id, note.parent_id, is_remote=True, trace_flags=_FLAGS)
        if note.parent_id
        else None
    )
    failed = record.status >= 500 or record.usage.stream_errors > 0 or record.forward_failed
    events = [Event(name, attrs, ns(at)) for name, at, attrs in note.events]
    if record.scrub_hits:
        events.append(Event("scrub", {"trioproxy.scrub.hits": record.scrub_hits}, start))
    if record.demoted:
        events.append(Event("demoted", {}, start))
    if record.pings:
        events.append(Event("pings", {"trioproxy.pings": record.pings}, end))
    attributes: dict[str, Any] = {
        "http.request.method": record.method,
        "url.path": record.path,
        "http.response.status_code": record.status,
        "trioproxy.request_id": record.request_id,
        "trioproxy.caller": record.caller,
    }
    # What is zero or said elsewhere stays out: each attribute is a few µs
    # of the SDK's encoder per span, in a thread that shares the proxy's core.
    if record.retries:
        attributes["trioproxy.retries"] = record.retries
    if record.failovers:
        attributes["trioproxy.failovers"] = record.failovers
    requested = record.model_requested
    if requested and all(a.model != requested for a in note.attempts):  # else the attempts say it
        attributes["gen_ai.request.model"] = requested
    if record.request_class:
        attributes["trioproxy.request_class"] = record.request_class
    spans = [
        ReadableSpan(
            f"{record.method} {record.path}",
            context=server,
            parent=parent,
            resource=resource,
            attributes=attributes,
            events=events,
            kind=SpanKind.SERVER,
            status=Status(StatusCode.ERROR, record.error[:200] or f"HTTP {record.status}")
            if failed
            else Status(StatusCode.UNSET),
            start_time=start,
            end_time=end,
            instrumentation_scope=SCOPE,
        )
    ]
    if note.auth is not None:
        spans.append(_child(note, "authenticate", note.auth, ns, resource, server, {}))
    if note.plan is not None:
        chosen = {"trioproxy.route": record.route} if record.route else {}
        spans.append(_child(note, "route", note.plan, ns, resource, server, chosen))
    last = note.attempts[-1] if note.attempts else None
    for a in note.attempts:
        spans.append(_attempt(record, note, a, a is last, ns, end, resource, server))
    return spans


def _ctx(note: TraceNote, span_id: int) -> SpanContext:
    return SpanContext(note.trace_id, span_id, is_remote=False, trace_flags=_FLAGS)


def _child(
    note: TraceNote,
    name: str,
    span: tuple[float, float],
    ns: Any,
    resource: Resource,
    parent: SpanContext,
    attributes: dict[str, Any],
) -> ReadableSpan:
    return ReadableSpan(
        name,
        context=_ctx(note, new_span_id()),
        parent=parent,
        resource=resource,
        attributes=attributes,
        kind=SpanKind.INTERNAL,
        start_time=ns(span[0]),
        end_time=ns(span[1]),
        instrumentation_scope=SCOPE,
    )


def _attempt(
    record: RequestRecord,
    note: TraceNote,
    a: AttemptNote,
    last: bool,
    ns: Any,
    request_end: int,
    resource: Resource,
    parent: SpanContext,
) -> ReadableSpan:
    operation = "chat" if record.path in MESSAGES_PATHS else "request"
    attributes: dict[str, Any] = {
        "gen_ai.system": a.system,
        "gen_ai.operation.name": operation,
        "gen_ai.request.model": a.model,
        "server.address": a.address,
        "trioproxy.provider": a.provider,
    }
    if a.retry:
        attributes["trioproxy.retry"] = a.retry
    if a.status:
        attributes["http.response.status_code"] = a.status
    u = record.usage
    served = last and 200 <= a.status < 300
    if served:
        if u.model:
            attributes["gen_ai.response.model"] = u.model
        attributes["gen_ai.usage.input_tokens"] = u.input_tokens
        attributes["gen_ai.usage.output_tokens"] = u.output_tokens
        attributes["gen_ai.usage.cache_read.input_tokens"] = u.cache_read_input_tokens
        attributes["gen_ai.usage.cache_creation.input_tokens"] = u.cache_creation_input_tokens
        if u.stop_reason:
            attributes["gen_ai.response.finish_reasons"] = (u.stop_reason,)
    error = a.error or (f"HTTP {a.status}" if a.status >= 400 else "")
    if error:
        attributes["error.type"] = str(a.status) if a.status else "connection"
    # The serving attempt lasts until its answer was relayed: the request's end.
    end = request_end if served or a.end is None else ns(a.end)
    return ReadableSpan(
        f"{operation} {a.model}".strip(),
        context=_ctx(note, a.span_id),
        parent=parent,
        resource=resource,
        attributes=attributes,
        kind=SpanKind.CLIENT,
        status=Status(StatusCode.ERROR, error[:200]) if error else Status(StatusCode.UNSET),
        start_time=ns(a.start),
        end_time=max(end, ns(a.start)),
        instrumentation_scope=SCOPE,
    )
