"""A request's spans as telemetry/spans.py builds them from its record and
trace note: what the server span says, and what it leaves to its children."""

from __future__ import annotations

from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import SpanKind

from trioproxy.accounting.record import RequestRecord
from trioproxy.accounting.trace_note import TraceNote
from trioproxy.telemetry.spans import build

RESOURCE = Resource({"service.name": "trioproxy"})


def traced(requested: str, *upstream_models: str, route: str = "") -> RequestRecord:
    record = RequestRecord(
        "req_1", "POST", "/v1/messages", "h1", status=200, model_requested=requested, route=route
    )
    note = TraceNote(trace_id=0x1234, parent_id=None, sampled=True)
    note.plan = (record.started_monotonic, record.started_monotonic + 1e-4)
    for retry, model in enumerate(upstream_models):
        attempt = note.attempt("p", "anthropic", "127.0.0.1", model, retry)
        attempt.status, attempt.end = 200, attempt.start + 0.01
    record.trace = note
    return record


def server_and_route(record: RequestRecord) -> tuple[dict[str, object], dict[str, object]]:
    assert record.trace is not None
    spans = build(record, record.trace, RESOURCE)
    (server,) = [s for s in spans if s.kind is SpanKind.SERVER]
    (route,) = [s for s in spans if s.name == "route"]
    return dict(server.attributes or {}), dict(route.attributes or {})


def test_the_requested_model_is_on_the_server_span_only_when_no_attempt_sent_it() -> None:
    same, _ = server_and_route(traced("claude-opus-5-5", "claude-opus-5-5"))
    assert "gen_ai.request.model" not in same
    # A provider's model map renamed it: the client's name is kept on the server span.
    mapped, _ = server_and_route(traced("opus", "us.anthropic.claude-opus-5-5"))
    assert mapped["gen_ai.request.model"] == "opus"
    refused, _ = server_and_route(traced("claude-opus-5-5"))  # no attempt at all
    assert refused["gen_ai.request.model"] == "claude-opus-5-5"


def test_counts_that_are_zero_stay_out_and_the_rule_is_on_the_route_span() -> None:
    record = traced("m", "m", "m", route="cheap")
    record.retries = 1
    server, route = server_and_route(record)
    assert server["trioproxy.retries"] == 1 and "trioproxy.failovers" not in server
    assert route == {"trioproxy.route": "cheap"} and "trioproxy.route" not in server
    assert record.trace is not None
    first, second = (
        dict(s.attributes or {})
        for s in build(record, record.trace, RESOURCE)
        if s.kind is SpanKind.CLIENT
    )
    assert "trioproxy.retry" not in first and second["trioproxy.retry"] == 1
