"""What a request's trace will say, noted on the way (plain data, cheap):
its trace context, when authentication and the routing decision ran, each
upstream attempt, and events (retries, failovers). The spans are built
from it only when the request is over (telemetry/spans.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from trioproxy.proto.tracecontext import new_span_id, traceparent

# A provider's kind as OpenTelemetry's gen_ai.system names it (else "anthropic").
GEN_AI_SYSTEMS = {"bedrock": "aws.bedrock", "vertex": "gcp.vertex_ai", "openai": "openai"}


def gen_ai_system(kind: str) -> str:
    """A provider kind's gen_ai.system."""
    return GEN_AI_SYSTEMS.get(kind, "anthropic")


@dataclass(slots=True)
class AttemptNote:
    span_id: int
    provider: str
    system: str  # gen_ai.system: anthropic, aws.bedrock, gcp.vertex_ai, openai
    address: str  # server.address
    model: str  # gen_ai.request.model
    start: float  # monotonic
    end: float | None = None
    status: int = 0
    error: str = ""
    retry: int = 0


@dataclass(slots=True)
class TraceNote:
    trace_id: int
    parent_id: int | None  # the client's span, from its traceparent
    sampled: bool
    span_id: int = field(default_factory=new_span_id)  # the server span
    auth: tuple[float, float] | None = None  # monotonic (start, end)
    plan: tuple[float, float] | None = None
    attempts: list[AttemptNote] = field(default_factory=list)
    events: list[tuple[str, float, dict[str, Any]]] = field(default_factory=list)

    def attempt(
        self, provider: str, system: str, address: str, model: str, retry: int
    ) -> AttemptNote:
        note = AttemptNote(
            new_span_id(), provider, system, address, model, time.monotonic(), retry=retry
        )
        self.attempts.append(note)
        return note

    def header(self, attempt: AttemptNote) -> bytes:
        """The ``traceparent`` the upstream gets: this attempt is its parent."""
        return traceparent(self.trace_id, attempt.span_id, self.sampled)

    def event(self, name: str, **attributes: Any) -> None:
        self.events.append((name, time.monotonic(), attributes))
