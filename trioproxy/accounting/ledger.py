"""The usage ledger's row: one summary per finished request (never a body
or a credential; callers by their secret's configured name), for
``trioproxy usage`` and the dashboard's tables.

Stored in the database (db/: SQLite in the state directory, its own file
so the routing store's writes never wait on a ledger batch, or Postgres),
in batches from a worker thread (journal.py); the event loop never touches
the database.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, fields

from trioproxy.accounting.record import RequestRecord


@dataclass(frozen=True, slots=True)
class Row:
    ts: float
    request_id: str
    caller: str
    provider: str
    model: str  # as served (the response's model), else as requested
    model_requested: str
    status: int
    stream: bool
    input_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    output_tokens: int
    duration_s: float
    complete: bool  # usage seen to the end (an abandoned stream: False)
    error: bool  # a status >= 400 or an error event inside a 200 stream
    origin: str  # upstream, or proxy (its own errors and refusals)
    request_class: str = ""  # Claude Code's hint headers
    agent_type: str = ""
    agent_id: str = ""
    prompt_id: str = ""
    cost_usd: float | None = None  # accounting/pricing.py; None: could not be priced

    def values(self) -> tuple[object, ...]:
        """The columns in table order (``dataclasses.astuple`` deep-copies)."""
        return _VALUES(self)

    @classmethod
    def of(cls, r: RequestRecord) -> Row:
        u = r.usage
        return cls(
            ts=r.started,
            request_id=r.request_id,
            caller=r.caller or "-",
            provider=r.provider or "-",
            model=u.model or r.model_requested or "-",
            model_requested=r.model_requested or "-",
            status=r.status,
            stream=r.stream,
            input_tokens=u.input_tokens,
            cache_creation_input_tokens=u.cache_creation_input_tokens,
            cache_read_input_tokens=u.cache_read_input_tokens,
            output_tokens=u.output_tokens,
            duration_s=round(r.duration_s, 4),
            complete=u.complete,
            error=r.status >= 400 or u.stream_errors > 0,
            origin=r.origin,
            request_class=r.request_class,
            agent_type=r.agent_type,
            agent_id=r.agent_id,
            prompt_id=r.prompt_id,
            cost_usd=r.cost_usd,
        )


_VALUES = operator.attrgetter(*(f.name for f in fields(Row)))
