"""Forwarding: the router's plan executed, and every decision about what
happens after an attempt taken here, in one place.

For each provider in the plan, attempts are made (attempt.py) and judged
(``Verdict``): the answer goes to the client (respond.relay), or it is held
back and the same provider is tried again (503 and connection errors, with
backoff, within the retry budget) or the next one is. Each provider records
the request's stay in its health exactly once. When every provider failed,
the last upstream answer goes to the client verbatim; if none answered, a
502 (or 504) in Anthropic's shape names the providers tried, never an
upstream address.
"""

from __future__ import annotations

import hashlib
import logging
import time

import orjson
import trio

from trioproxy.accounting.usage import requested_model
from trioproxy.callers.policy import check_model
from trioproxy.config.model import Credential, ProviderConfig, Route
from trioproxy.errors import (
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ProxyError,
    RateLimited,
    Unavailable,
    UpstreamError,
    UpstreamTimeout,
)
from trioproxy.exchange.attempt import Attempt
from trioproxy.exchange.body import RequestBody
from trioproxy.exchange.respond import deliver, deliver_kept, relay
from trioproxy.exchange.retention import Retention
from trioproxy.exchange.stages import PER_PROVIDER, REQUEST, reading_chain, run_whole
from trioproxy.exchange.trip import Trip
from trioproxy.proto.events import RequestHead, ResponseHead
from trioproxy.routing.decide import (
    OWN_KEY,
    Next,
    NoProvider,
    Outcome,
    UnknownProvider,
    after_failure,
    classify,
    cooldown_key,
    parse_retry_after,
)
from trioproxy.routing.health import PROVIDER
from trioproxy.routing.router import Router, Unusable
from trioproxy.routing.routes import RequestFacts, choose
from trioproxy.rules.auth import presented_credential
from trioproxy.rules.upstream_head import check_declared_length
from trioproxy.upstream.pool import UpstreamPool

log = logging.getLogger("trioproxy.exchange")

PIN_HEADER = b"x-trioproxy-provider"
COUNT_TOKENS = b"/v1/messages/count_tokens"
ESTIMATE_HEADER = b"x-trioproxy-estimate"
SESSION_HEADER = b"x-claude-code-session-id"


class Forwarding:
    """One request's trip upstream."""

    __slots__ = ("body", "pools", "router", "trip")

    def __init__(
        self,
        trip: Trip,
        pools: dict[str, UpstreamPool],
        router: Router,
        retention: Retention,
    ) -> None:
        self.trip = trip
        self.pools = pools
        self.router = router
        cfg, ex = trip.cfg, trip.ex
        declared = check_declared_length(ex.head, cfg.limits.max_body_bytes)
        retention.limit = cfg.limits.retained_body_bytes  # a reload may have changed it
        self.body = RequestBody(
            ex,
            max_bytes=cfg.limits.max_body_bytes,
            declared=declared,
            retention=retention,
            stages=reading_chain(trip),
        )

    async def run(self) -> None:
        trip, router, body = self.trip, self.router, self.body
        ex, record, routing = trip.ex, trip.record, trip.cfg.routing
        pin = self._pin()
        session_raw = ex.head.header(SESSION_HEADER)
        session = session_raw.decode("latin-1") if session_raw else None
        whole: bytes | None = None  # the body read whole, for the stages and for retries
        try:
            stages = [s for make in REQUEST if (s := make(trip)) is not None]
            caller = trip.caller
            allowlist = caller is not None and bool(caller.models)
            demotes = trip.messages and routing.demotes
            if (stages or routing.needs_body or allowlist or demotes) and ex.has_body:
                whole = run_whole(stages, await body.read_all())
                if trip.capture is not None:
                    trip.capture.went(whole)
                parsed = trip.parsed_body(whole)
                if parsed is not None:
                    session = session or parsed.session_id
                    record.model_requested = parsed.model or ""
                    if routing.routes:
                        trip.route = choose(
                            routing.routes,
                            RequestFacts(
                                parsed.doc,
                                len(whole),
                                record.caller,
                                ex.head.headers,
                                routing.resolve_alias(parsed.model or ""),
                            ),
                        )
                        if trip.route is not None:
                            record.route = trip.route.name
                if allowlist:
                    assert caller is not None
                    model = parsed.model if parsed is not None else None
                    refusal = check_model(caller, model and routing.resolve_alias(model))
                    if refusal is not None:
                        record.limited = refusal.reason
                        raise PermissionDenied(refusal.message)
            own = caller is not None and caller.own_credential
            caller_key = _caller_key(ex.head) if routing.passthrough or own else ""
            if own and caller_key:
                caller_key = OWN_KEY + caller_key
            try:
                if trip.route is not None and pin is None:
                    plan = self._route_plan(trip.route, caller_key)
                else:
                    plan = router.plan(pin=pin, session=session, caller_key=caller_key)
            except UnknownProvider as exc:
                raise InvalidRequest(
                    f"x-trioproxy-provider: no provider named {exc.args[0]!r} "
                    f"(known: {', '.join(routing.names)})"
                ) from None
            except NoProvider as exc:  # a quota the operator set: the proxy's own 429
                raise RateLimited(exc.message, retry_after=exc.retry_after) from None
            except Unusable as exc:  # a subscription's token expired: never sent
                raise Unavailable(exc.message) from None
            if ex.head.path == COUNT_TOKENS and plan[0].kind == "openai":
                await _estimate_tokens(trip, whole if whole is not None else await body.read_all())
                return
            if not trip.messages:
                # A Chat Completions provider is asked only what can be translated.
                plan = [p for p in plan if p.kind != "openai"]
                if not plan:
                    raise NotFound(
                        f"{ex.head.path.decode('latin-1')}: the provider here speaks Chat "
                        "Completions; only POST /v1/messages is translated for it"
                    )
            if caller is not None and not caller.own_credential:
                # Never a provider without a key of its own: the caller's
                # proxy secret would travel in its place.
                plan = [p for p in plan if p.keyed]
                if not plan:
                    raise PermissionDenied(
                        f"caller {caller.name} can only be served with its own upstream "
                        'credential (upstream_credential = "own"): no provider here has a key'
                    )
            # Thinking blocks in the history were signed by the session's last
            # provider (or, for a session we do not know, the first choice).
            trip.home = router.family_of(router.session_provider(session)) or plan[0].family
            router.forwarding += 1
            try:
                # A request a rule routed does not move its session: the main
                # agent's turns stay where they were while a subagent's go elsewhere.
                remembered = session if trip.route is None else None
                await self._try_all(plan, whole, remembered, caller_key)
            finally:
                router.forwarding -= 1
        finally:
            body.forget()  # its place in the retention budget goes back now
            record.retention_skipped = body.skipped
            record.bytes_in = body.total
            record.body_complete = body.done
            if trip.traits_stage is not None:
                traits = record.traits = trip.traits_stage.traits
                if not record.stream and body.done and traits.stream:
                    # Answered in JSON (an error, the proxy's own or the
                    # upstream's): the line says what the client asked for.
                    record.stream = True
            if not record.model_requested and body.first:
                record.model_requested = requested_model(body.first[:4096])

    def _route_plan(self, route: Route, caller_key: str) -> list[ProviderConfig]:
        """A rule's provider, then its fallbacks: the request's failover list
        (each asked whatever its health, as a pinned request is; one over
        its quota or with an unusable credential is skipped)."""
        plan: list[ProviderConfig] = []
        first: Exception | None = None
        for name in (route.provider, *route.fallbacks):
            try:
                got = self.router.plan(pin=name, session=None, caller_key=caller_key)
            except (NoProvider, Unusable) as exc:
                first = first or exc
                continue
            plan.extend(p for p in got if p.enabled and p not in plan)
        if not plan:
            if first is not None:
                raise first
            raise NoProvider(f"route {route.name}: no provider of it is enabled", 0.0)
        return plan

    def _credential(self, provider: ProviderConfig) -> Credential | None:
        """What goes upstream for the caller: nothing of ours for a caller
        with its own credential, a subscription's current token, or the
        provider's key (None without one: the caller's credential passes,
        which only happens with auth off or for callers bringing their own)."""
        caller = self.trip.caller
        if caller is not None and caller.own_credential:
            return None
        if provider.oauth_file:
            credential = self.router.subscriptions.credential(provider.name)
            if credential is None:  # expired since the plan was made
                raise Unavailable(
                    f"provider {provider.name} cannot be used: its subscription token expired"
                )
            return credential
        return provider.upstream.credential

    def _pin(self) -> str | None:
        raw = self.trip.ex.head.header(PIN_HEADER)
        if raw is None:
            return None
        if not self.trip.cfg.routing.allow_pin:
            raise PermissionDenied(
                "x-trioproxy-provider: pinning requests to a provider is not enabled on this "
                "proxy (routing.allow_pin)"
            )
        return raw.decode("latin-1").strip()

    async def _try_all(
        self,
        plan: list[ProviderConfig],
        whole: bytes | None,
        session: str | None,
        caller_key: str,
    ) -> None:
        trip, router, body = self.trip, self.router, self.body
        ex, record = trip.ex, trip.record
        # The last answer held back, and whether a Chat Completions provider gave it.
        kept: tuple[ResponseHead, bytes | None, bool] | None = None
        error: ProxyError | None = None  # the last failure without an answer
        tried: list[str] = []
        for index, provider in enumerate(plan):
            tried.append(provider.name)
            record.provider, record.providers_tried = provider.name, ",".join(tried)
            verdict = Verdict(
                trip,
                router,
                provider,
                more=index < len(plan) - 1,
                key=cooldown_key(provider, caller_key),
            )
            trip.openai = provider.kind == "openai"
            payload = whole
            if whole is not None:
                edits = [s for make in PER_PROVIDER if (s := make(trip, provider)) is not None]
                payload = run_whole(edits, whole) if edits else whole
                if trip.capture is not None and payload is not None:
                    trip.capture.went(payload)
            pool = self.pools[provider.name]
            credential = self._credential(provider)
            retrying = False  # holding a place in the retry budget
            try:
                while True:
                    try:
                        attempt = Attempt(trip, provider, pool, body, payload, credential)
                        async with attempt.open() as answer:
                            # A body streamed without a copy cannot be sent
                            # again: whatever this answer is, it is the answer.
                            if verdict.judge(answer.head, answer.latency) or not body.replayable:
                                await relay(trip, answer, body, pool.origin)
                                router.remember_session(session, provider.name)
                                return
                            held = await answer.keep(trip.cfg.timeouts.upstream_body_idle)
                            kept, error = (answer.head, held, trip.openai), None
                    except (UpstreamError, UpstreamTimeout) as exc:
                        if ex.response_started:
                            raise
                        verdict.connection_failed(exc)
                        error = exc
                    finally:
                        if retrying:
                            router.retrying -= 1
                            retrying = False
                    nxt = verdict.next
                    if nxt.retry_in is None or not body.replayable:
                        break
                    verdict.retry += 1
                    record.retries += 1
                    router.count_retry(provider.name)
                    log.info(
                        "%s: %s failed (%s); retry %d in %.2f s",
                        ex.request_id,
                        provider.name,
                        verdict.reason,
                        verdict.retry,
                        nxt.retry_in,
                    )
                    router.retrying += 1
                    retrying = True
                    await trio.sleep(nxt.retry_in)
            finally:
                if retrying:
                    router.retrying -= 1
                verdict.settle()
            if not body.replayable:
                break  # no copy to send elsewhere
            if verdict.more:
                record.failovers += 1
                router.count_failover(provider.name)
                log.info(
                    "%s: failing over from %s (%s)", ex.request_id, provider.name, verdict.reason
                )
        if kept is not None:
            # Some provider answered (maybe not the last one tried): clients
            # match on the API's own words, so that answer goes back verbatim.
            head, data, trip.openai = kept
            if data is None:
                trip.record.status = head.status
                raise UpstreamError(
                    f"the upstream answered {head.status}; the answer could not be kept"
                )
            await deliver_kept(trip, head, data)
            return
        assert error is not None
        cls = UpstreamTimeout if isinstance(error, UpstreamTimeout) else UpstreamError
        names = ", ".join(tried)
        raise cls(
            f"{error.message} (providers tried: {names})",
            detail=f"{error.detail} (providers tried: {names})",
        )


class Verdict:
    """Judges each attempt on one provider, and records the request's stay
    there in the provider's health exactly once (``settle``): one client
    request is one outcome for the breaker, however many attempts it made."""

    __slots__ = (
        "health",
        "key",
        "latency",
        "more",
        "next",
        "outcome",
        "provider",
        "reason",
        "retry",
        "router",
        "trip",
        "visit",
    )

    def __init__(
        self, trip: Trip, router: Router, provider: ProviderConfig, *, more: bool, key: str
    ) -> None:
        self.trip = trip
        self.router = router
        self.provider = provider
        self.more = more  # another provider can still be tried after this one
        self.key = key  # whose cooldown a 429 starts (see decide.cooldown_key)
        self.health = router.health_of(provider.name)
        self.visit = self.health.begin(trio.current_time())
        self.retry = 0
        self.next = Next(None)
        self.outcome: Outcome | None = None  # the last attempt's
        self.latency = 0.0
        self.reason = ""

    def _decide(self, outcome: Outcome, retry_after: float | None, status: int | None) -> Next:
        routing, router = self.trip.cfg.routing, self.router
        self.outcome = outcome
        nxt = after_failure(
            outcome,
            retry=self.retry,
            retries=self.provider.retries,
            retry_after=retry_after,
            cap=routing.retry_after_cap,
            backoff=routing.backoff,
            cooldown_s=self.provider.cooldown_s,
            rand=router.rand(),
            more=self.more,
            budget_ok=router.retry_allowed(),
            status=status,
        )
        if nxt.cooldown_for is not None:
            now = trio.current_time()
            key = PROVIDER if nxt.provider_wide else self.key
            self.health.cool_down(key, now, now + nxt.cooldown_for, self.reason)
        self.next = nxt
        return nxt

    def judge(self, head: ResponseHead, latency: float) -> bool:
        """True: this answer goes to the client; False: it is held back
        (retry or failover)."""
        outcome = classify(head.status)
        if outcome is Outcome.ANSWER:
            self.outcome, self.latency, self.next = outcome, latency, Next(None)
            return True
        self.reason = f"HTTP {head.status}"
        retry_after = parse_retry_after(head.header(b"retry-after"), time.time())
        nxt = self._decide(outcome, retry_after, head.status)
        # Nothing else to try: this answer goes to the client as it is.
        return nxt.retry_in is None and not self.more

    def connection_failed(self, exc: ProxyError) -> Next:
        outcome = Outcome.FAILOVER if isinstance(exc, UpstreamTimeout) else Outcome.RETRY
        self.reason = exc.detail
        return self._decide(outcome, None, None)

    def settle(self) -> None:
        health, visit, now = self.health, self.visit, trio.current_time()
        outcome = self.outcome
        if outcome is None:
            health.abandoned(visit)
        elif outcome is Outcome.ANSWER:
            health.succeeded(visit, now, self.provider.breaker, self.latency)
        elif outcome.is_failure:
            health.failed(visit, now, self.provider.breaker, self.reason)
        else:
            health.answered_not_now(visit)


async def _estimate_tokens(trip: Trip, body: bytes) -> None:
    """count_tokens for a Chat Completions provider, which has none: about
    four bytes a token, and a header that says it is an estimate."""
    doc = orjson.dumps({"input_tokens": max(1, len(body) // 4)})
    head = ResponseHead(
        200, [(b"content-type", b"application/json"), (ESTIMATE_HEADER, b"bytes/4")]
    )
    trip.record.status, trip.record.origin = 200, "proxy"
    await deliver(trip, head, doc)


def _caller_key(head: RequestHead) -> str:
    """A short keyed digest of the caller's own credential, for passthrough
    cooldowns (never the credential itself: it is kept in memory as a key)."""
    presented = presented_credential(head.headers)
    if presented is None:
        return ""
    return hashlib.blake2b(presented, digest_size=12, key=b"trioproxy-cooldown").hexdigest()
