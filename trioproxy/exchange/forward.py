"""Forwarding: the plan (plan.py: which providers, or the proxy's refusal)
executed, and every decision about what happens after an attempt taken
here, in one place. What a feature does to the body is the stages'
business (stages.py): the request's stages once, then each provider's
(``prepare``, whose ``Leg`` the answer's stages follow).

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

import logging
import time

import trio

from trioproxy.accounting.trace_note import AttemptNote, gen_ai_system
from trioproxy.accounting.usage import requested_model
from trioproxy.config.model import Credential, ProviderConfig
from trioproxy.errors import (
    ProxyError,
    Unavailable,
    UpstreamError,
    UpstreamTimeout,
)
from trioproxy.exchange.attempt import Attempt
from trioproxy.exchange.body import RequestBody
from trioproxy.exchange.local import answer_locally
from trioproxy.exchange.plan import Plan, make_plan, needs_body, pinned
from trioproxy.exchange.respond import deliver_kept, relay
from trioproxy.exchange.retention import Retention
from trioproxy.exchange.stages import REQUEST, Leg, prepare, reading_chain, run_whole
from trioproxy.exchange.trip import Trip
from trioproxy.proto.events import ResponseHead
from trioproxy.routing.decide import (
    Next,
    Outcome,
    after_failure,
    classify,
    cooldown_key,
    parse_retry_after,
)
from trioproxy.routing.health import PROVIDER
from trioproxy.routing.router import Router
from trioproxy.routing.routes import model_for
from trioproxy.rules.upstream_head import check_declared_length
from trioproxy.upstream.aws import Signer
from trioproxy.upstream.pool import UpstreamPool

log = logging.getLogger("trioproxy.exchange")


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
        ex, record = trip.ex, trip.record
        try:
            pin = pinned(trip)
            whole: bytes | None = None  # the body read whole, for the stages and for retries
            parsed = None
            stages = [s for make in REQUEST if (s := make(trip)) is not None]
            if (stages or needs_body(trip)) and ex.has_body:
                whole = run_whole(stages, await body.read_all())
                if trip.capture is not None:
                    trip.capture.went(whole)
                parsed = trip.parsed_body(whole)
            planning = time.monotonic()
            plan = make_plan(trip, router, parsed, len(whole) if whole is not None else 0, pin)
            if record.trace is not None:
                record.trace.plan = (planning, time.monotonic())
            trip.route, trip.home = plan.route, plan.home
            if plan.local:  # the proxy answers this itself
                await answer_locally(
                    plan.local, trip, whole if whole is not None else await body.read_all()
                )
                return
            router.forwarding += 1
            try:
                await self._try_all(plan, whole)
            finally:
                router.forwarding -= 1
        finally:
            body.forget()  # its place in the retention budget goes back now
            record.retention_skipped = body.skipped
            record.bytes_in = body.total
            record.body_complete = body.done
            body.settle(record)
            if not record.model_requested and body.first:
                record.model_requested = requested_model(body.first[:4096])

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

    def _signer(self, provider: ProviderConfig) -> Signer | None:
        """A cloud provider's signature maker with its current credentials
        (None for the others)."""
        if not provider.cloud:
            return None
        signer = self.router.clouds.signer(provider)
        if signer is None:  # lost since the plan was made
            raise Unavailable(f"provider {provider.name} cannot be used: no cloud credentials")
        return signer

    async def _try_all(self, plan: Plan, whole: bytes | None) -> None:
        trip, router, body = self.trip, self.router, self.body
        ex, record = trip.ex, trip.record
        providers = plan.providers
        # The last answer held back, and the leg (provider, translation) that gave it.
        kept: tuple[Leg, ResponseHead, bytes | None] | None = None
        error: ProxyError | None = None  # the last failure without an answer
        tried: list[str] = []
        for index, provider in enumerate(providers):
            tried.append(provider.name)
            record.provider, record.providers_tried = provider.name, ",".join(tried)
            verdict = Verdict(
                trip,
                router,
                provider,
                more=index < len(providers) - 1,
                key=cooldown_key(provider, plan.caller_key),
            )
            leg = prepare(trip, provider, whole)  # the body as this provider gets it
            record.demoted = leg.demoted
            if trip.capture is not None and leg.payload is not None:
                trip.capture.went(leg.payload)
            pool = self.pools[provider.name]
            credential = self._credential(provider)
            signer = self._signer(provider)
            retrying = False  # holding a place in the retry budget
            try:
                while True:
                    noted = _noted_attempt(trip, provider, verdict.retry)
                    try:
                        attempt = Attempt(
                            trip,
                            leg,
                            pool,
                            body,
                            credential,
                            signer,
                            traceparent=None if noted is None else noted[1],
                        )
                        async with attempt.open() as answer:
                            if noted is not None:
                                noted[0].status = answer.head.status
                            # A body streamed without a copy cannot be sent
                            # again: whatever this answer is, it is the answer.
                            if verdict.judge(answer.head, answer.latency) or not body.replayable:
                                await relay(trip, leg, answer, body, pool.origin)
                                router.remember_session(plan.remember, provider.name)
                                return
                            held = await answer.keep(trip.cfg.timeouts.upstream_body_idle)
                            kept, error = (leg, answer.head, held), None
                    except (UpstreamError, UpstreamTimeout) as exc:
                        if noted is not None:
                            noted[0].error = exc.detail[:200]
                        if ex.response_started:
                            raise
                        verdict.connection_failed(exc)
                        error = exc
                    finally:
                        if noted is not None:
                            noted[0].end = time.monotonic()
                        if retrying:
                            router.retrying -= 1
                            retrying = False
                    nxt = verdict.next
                    if nxt.retry_in is None or not body.replayable:
                        break
                    verdict.retry += 1
                    record.retries += 1
                    if record.trace is not None:
                        record.trace.event(
                            "retry",
                            **{
                                "trioproxy.provider": provider.name,
                                "trioproxy.reason": verdict.reason,
                            },
                        )
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
                if record.trace is not None:
                    record.trace.event(
                        "failover",
                        **{"trioproxy.provider": provider.name, "trioproxy.reason": verdict.reason},
                    )
                router.count_failover(provider.name)
                log.info(
                    "%s: failing over from %s (%s)", ex.request_id, provider.name, verdict.reason
                )
        if kept is not None:
            # Some provider answered (maybe not the last one tried): clients
            # match on the API's own words, so that answer goes back verbatim.
            leg, head, data = kept
            if data is None:
                trip.record.status = head.status
                raise UpstreamError(
                    f"the upstream answered {head.status}; the answer could not be kept"
                )
            await deliver_kept(trip, leg, head, data)
            return
        assert error is not None
        cls = UpstreamTimeout if isinstance(error, UpstreamTimeout) else UpstreamError
        names = ", ".join(tried)
        raise cls(
            f"{error.message} (providers tried: {names})",
            detail=f"{error.detail} (providers tried: {names})",
        )


def _noted_attempt(
    trip: Trip, provider: ProviderConfig, retry: int
) -> tuple[AttemptNote, bytes] | None:
    """With tracing on: this try in the request's trace, and the
    ``traceparent`` the upstream gets for it."""
    note = trip.record.trace
    if note is None:
        return None
    requested = trip.record.model_requested
    model = model_for(provider, trip.route, requested, trip.cfg.routing) if requested else ""
    attempt = note.attempt(
        provider.name,
        gen_ai_system(provider.kind),
        provider.upstream.origin.host,
        model,
        retry,
    )
    return attempt, note.header(attempt)


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
        if self.provider.cloud and head.status in (401, 403):
            self.router.clouds.refused(self.provider.name, head)
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
