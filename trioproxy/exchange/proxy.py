"""The proxy application: one request, from its head to its access line.

In order: a CORS preflight from a listed origin is answered (before auth,
never forwarded, never counted); the proxy's own endpoints are served;
anything else is a caller's request: authenticated, held to its
caller's limits (callers/: expiry, rates, concurrency, budget here; the
model allowlist once the body is read, in forward.py), forwarded
(forward.py), and accounted for: metrics and quotas at once, the access
line and the ledger row through the journal (written off the loop), and a
diagnostic line when the forward failed. Errors the proxy makes are mapped
to Anthropic's shape here, once (errors.py).
"""

from __future__ import annotations

import logging
import time

from trioproxy.accounting.pricing import caller_tokens
from trioproxy.accounting.record import NO_CALLER, RequestRecord
from trioproxy.admin.endpoints import is_own, serve_own
from trioproxy.alerts.budget import budget_alerts
from trioproxy.bedrock.client import parse_target as bedrock_target
from trioproxy.bedrock.client import unserved as bedrock_unserved
from trioproxy.callers.policy import Refusal, check_expiry
from trioproxy.config.model import Caller, Config
from trioproxy.convlog.capture import Capture
from trioproxy.errors import (
    AuthenticationFailed,
    PermissionDenied,
    ProxyError,
    RateLimited,
    error_response,
)
from trioproxy.exchange.authn import authenticate
from trioproxy.exchange.bedrock_client import BedrockClient
from trioproxy.exchange.cors_headers import CorsExchange
from trioproxy.exchange.foreign_client import ForeignClient
from trioproxy.exchange.forward import Forwarding
from trioproxy.exchange.openai_client import OpenAIClient, is_chat
from trioproxy.exchange.openai_client import unserved as chat_unserved
from trioproxy.exchange.retention import Retention
from trioproxy.exchange.trip import Trip
from trioproxy.exchange.vertex_client import VertexClient
from trioproxy.inbound.exchange import ClientExchange, respond
from trioproxy.proto.events import RequestHead
from trioproxy.routing.router import Router, usage_tokens
from trioproxy.rules.cors import allowed_origin, is_preflight, preflight_answer
from trioproxy.state import ServerState
from trioproxy.upstream.pool import UpstreamPool
from trioproxy.vertex.client import parse_target as vertex_target
from trioproxy.vertex.client import unserved as vertex_unserved

diag = logging.getLogger("trioproxy.diag")  # one line per failed forward
log = logging.getLogger("trioproxy.callers")
MAX_UNPRICED = 64  # models warned about, at most (each once)


class Proxy:
    """The proxy application: own endpoints, else forward upstream."""

    def __init__(self, state: ServerState, pools: dict[str, UpstreamPool], router: Router) -> None:
        self.state = state
        self.pools = pools
        self.router = router
        # Request bodies kept for retries, bounded over the process.
        self.retention = Retention(state.config.limits.retained_body_bytes)
        # Models served to a caller with a USD budget that no price knows
        # cannot price (warned about once each; bounded: models come from
        # upstream answers).
        self._unpriced: set[str] = set()

    async def __call__(self, ex: ClientExchange) -> None:
        state = self.state
        cfg = state.config  # this request's snapshot
        if cfg.cors_allow_origins:
            origin = allowed_origin(ex.head, cfg.cors_allow_origins)
            if origin is not None:
                if is_preflight(ex.head):  # before auth; never forwarded, never counted
                    await respond(ex, preflight_answer(ex.head, origin), b"")
                    return
                ex = CorsExchange(ex, origin)
        head = ex.head
        if is_own(head):
            await serve_own(ex, state)
            return
        ex = foreign(ex)  # a client of Bedrock's or Vertex's format: answered in it
        record = RequestRecord(
            ex.request_id, head.method.decode("latin-1"), head.path.decode("latin-1"), ex.protocol
        )
        record.peer = ex.peer
        record.client_addr = client_addr(head, ex.peer, trusted=cfg.auth.trust_front_proxy)
        if (agent := head.header(b"user-agent")) is not None:
            record.user_agent = agent.decode("latin-1")[:200]
        if (session := head.header(b"x-claude-code-session-id")) is not None:
            record.session_id = session.decode("latin-1")[:100]
        hints(head, record)
        target = head.target
        if b"?" in target:
            record.query = target.partition(b"?")[2].decode("latin-1")
        beta = head.header(b"anthropic-beta")
        if beta:
            record.anthropic_beta = beta.decode("latin-1")[:1000]
        trip = Trip(cfg, ex, record, state.listening.watchdog)
        trip.prices = state.prices
        trip.relay = state.relay
        if state.telemetry is not None:
            record.trace = state.telemetry.begin(head)
        if cfg.log_bodies != "off":
            trip.capture = Capture(cfg.log_max_body_bytes, head.headers)
        admitted: Caller | None = None  # holds a place in its caller's concurrency
        try:
            if state.callers.enabled:
                checking = time.monotonic()
                caller = trip.caller = await authenticate(head, state.callers, state.signin)
                if record.trace is not None:
                    record.trace.auth = (checking, time.monotonic())
                record.caller = caller.name
                if caller.limited:
                    _refuse(record, check_expiry(caller, state.book.wall()))
                    _refuse(record, state.book.admit(caller))
                    admitted = caller
            if isinstance(ex, ForeignClient):  # its request, read now it is admitted
                await ex.read_request(cfg.limits.max_body_bytes)
                trip.rebind(ex)
            await Forwarding(trip, self.pools, self.router, self.retention).run()
        except ProxyError as exc:
            record.status, record.error = exc.status, exc.detail
            record.origin = "proxy"
            await _fail(ex, exc, trip.capture)
        except BaseException:
            record.client_disconnected = True  # cancelled: the client went away (or shutdown)
            raise
        finally:
            if admitted is not None:
                state.book.release(admitted.name)
            self._account(record, cfg, trip.capture, trip.caller)

    def _account(
        self, record: RequestRecord, cfg: Config, capture: Capture | None, caller: Caller | None
    ) -> None:
        record.duration_s = time.monotonic() - record.started_monotonic
        state = self.state
        if record.provider:
            # Abandoned streams count too: the provider served those tokens.
            usage = record.usage
            self.router.record_usage(record.provider, usage_tokens(usage))
            record.cost_usd = state.prices.cost(usage, record.model_requested, record.provider)
            if state.callers.enabled and record.caller != NO_CALLER:
                tokens = caller_tokens(usage)
                # The spend before, only where a budget alert could be due.
                before = None
                if caller is not None and caller.budget is not None and state.alerts.enabled:
                    before = state.book.spend(caller, state.book.wall())
                state.book.record(record.caller, tokens, record.cost_usd or 0.0)
                if before is not None and caller is not None:
                    for alert in budget_alerts(caller, before, state.book, cfg.alert_thresholds):
                        state.alerts.offer(alert)
                if tokens and caller is not None:
                    self._warn_unpriced(caller, usage.model or record.model_requested, record)
        state.metrics.observe(record)
        if state.telemetry is not None:
            state.telemetry.emit(record)  # spans to the exporter thread's queue
        if capture is not None and cfg.log_bodies == "errors" and not failed(record):
            capture = None
        failed_forward = record.forward_failed or record.status >= 500  # ours or the upstream's
        line = record.diagnostic() if failed_forward else None
        # The body traits reference up to 32 KiB of the request's chunks:
        # let them go now, not when the journal has written the record (a
        # backlog of 6,000 records held 200 MB of 50 KB bodies this way).
        record.traits = None
        # The access line, the ledger row and the log row, off the loop.
        state.journal.add(record, cfg, capture)
        if line is not None:
            diag.warning("%s", line)

    def _warn_unpriced(self, caller: Caller, model: str, record: RequestRecord) -> None:
        """A USD-budgeted caller was served a model that no price knows
        (``pricing.unknown_model`` let it through, or the answer named
        another model than the one asked): its budget counts it only as the
        setting says. Said once per model, where the operator looks."""
        budget, prices = caller.budget, self.state.prices
        if budget is None or budget.usd is None or model in self._unpriced:
            return
        if len(self._unpriced) >= MAX_UNPRICED or prices.known(model, record.provider):
            return
        self._unpriced.add(model)
        log.warning(
            "model %r has no price (neither the price database nor [pricing] knows it): "
            "caller %s's USD budget counts it as pricing.unknown_model says (%s); give it a "
            '[pricing."glob"] entry, or the caller a token budget',
            model[:100],
            caller.name,
            "not at all" if record.cost_usd is None else f"${record.cost_usd:.6f}",
        )


def foreign(ex: ClientExchange) -> ClientExchange:
    """The exchange as the client's format needs it (itself for Messages):
    Bedrock's, Vertex AI's or Chat Completions'. A path of one of those
    formats that the proxy does not serve is that format's 404."""
    method, path = ex.head.method, ex.head.path
    if (bedrock := bedrock_target(method, path)) is not None:
        return BedrockClient(ex, bedrock)
    if (vertex := vertex_target(method, path)) is not None:
        return VertexClient(ex, vertex)
    if is_chat(method, path):
        return OpenAIClient(ex)
    if message := bedrock_unserved(method, path):
        return BedrockClient(ex, unserved=message)
    if message := vertex_unserved(method, path):
        return VertexClient(ex, unserved=message)
    if message := chat_unserved(method, path):
        return OpenAIClient(ex, unserved=message)
    return ex


# Claude Code's hint headers (CLAUDE_CODE_GATEWAY_HINT_HEADERS=1) -> record fields.
HINTS = (
    (b"x-claude-code-request-class", "request_class"),
    (b"x-claude-code-agent-type", "agent_type"),
    (b"x-claude-code-agent-id", "agent_id"),
    (b"x-claude-code-prompt-id", "prompt_id"),
)


def hints(head: RequestHead, record: RequestRecord) -> None:
    """What the client says the request is, kept for attribution (bounded)."""
    for name, attr in HINTS:
        value = head.header(name)
        if value is not None:
            setattr(record, attr, value.decode("latin-1").strip()[:100])


def client_addr(head: RequestHead, peer: str, *, trusted: bool) -> str:
    """The client's IP: the socket's, or, behind a front proxy we trust, the
    address that proxy appended last to ``X-Forwarded-For`` (entries before
    it are whatever the client claimed)."""
    if trusted:
        forwarded = [v for n, v in head.headers if n == b"x-forwarded-for"]
        if forwarded:
            last = forwarded[-1].rsplit(b",", 1)[-1].strip().decode("latin-1")
            if last:
                return last[:64]
    host = peer.rpartition(":")[0] if ":" in peer else peer
    return host.removeprefix("[").removesuffix("]")


def _refuse(record: RequestRecord, refusal: Refusal | None) -> None:
    """A caller's limit, in the API's own terms: 401, 403 or 429 with
    ``retry-after``; nothing is forwarded."""
    if refusal is None:
        return
    record.limited = refusal.reason
    if refusal.status == 401:
        raise AuthenticationFailed(refusal.message)
    if refusal.status == 403:
        raise PermissionDenied(refusal.message)
    raise RateLimited(refusal.message, retry_after=refusal.retry_after)


def failed(record: RequestRecord) -> bool:
    """A request ``log_bodies = "errors"`` keeps: an error status (the
    upstream's or ours), an error event in a stream, or a forward broken
    mid-response."""
    return record.status >= 400 or record.usage.stream_errors > 0 or record.forward_failed


async def _fail(ex: ClientExchange, exc: ProxyError, capture: Capture | None) -> None:
    """The proxy's own answer, in Anthropic's shape; a response already
    under way is cut instead (never a body that looks complete)."""
    if ex.response_started:
        await ex.abort()
        return
    head, body = error_response(exc, ex.request_id)
    if capture is not None:
        capture.answer(head.headers, body)
    await respond(ex, head, body)
