"""One request through the proxy: own endpoints, else routing and forwarding.

``Forwarding`` executes the router's decisions: it asks for the providers to
try, runs an ``Attempt`` on each (retrying the same provider on 503, 529 and
connection errors, with backoff), and records every outcome in the
provider's health. Failover happens only before the first response byte:
until then the request body is kept (within the body limit) so it can be
sent again; after it, the attempt owns the failure (see attempt.py). Errors
are mapped once, here: the client gets an Anthropic-shaped error, or the last
upstream error response verbatim when every provider failed.
"""

from __future__ import annotations

import hashlib
import logging
import time

import trio

from trioproxy.accounting.record import RequestRecord
from trioproxy.accounting.usage import requested_model
from trioproxy.admin.endpoints import is_own, serve_own
from trioproxy.attempt import Attempt, Rejected
from trioproxy.config import Config
from trioproxy.config.model import ProviderConfig
from trioproxy.errors import (
    ClientGone,
    InvalidRequest,
    PermissionDenied,
    ProxyError,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    error_response,
)
from trioproxy.inbound.body import RequestBody
from trioproxy.inbound.exchange import ClientExchange, respond
from trioproxy.pipeline.access import check_caller
from trioproxy.pipeline.auth import presented_credential
from trioproxy.pipeline.cors import allowed_origin, is_preflight, preflight_answer, with_cors
from trioproxy.pipeline.forward import check_declared_length
from trioproxy.pipeline.transform import ParsedBody, parse_body, rewrite
from trioproxy.proto.events import BodyChunk, RequestHead, ResponseHead
from trioproxy.proto.headers import response_headers_for_client
from trioproxy.routing.decide import (
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
from trioproxy.routing.router import Router, usage_tokens
from trioproxy.scrub.engine import Scrubber
from trioproxy.scrub.restore import restore_json
from trioproxy.state import ServerState
from trioproxy.upstream.pool import UpstreamPool

log = logging.getLogger("trioproxy.handler")
access = logging.getLogger("trioproxy.access")
diag = logging.getLogger("trioproxy.diag")  # one line per failed forward

PIN_HEADER = b"x-trioproxy-provider"
SESSION_HEADER = b"x-claude-code-session-id"


class Proxy:
    """The proxy application: own endpoints, else forward upstream."""

    def __init__(self, state: ServerState, pools: dict[str, UpstreamPool], router: Router) -> None:
        self.state = state
        self.pools = pools
        self.router = router

    async def __call__(self, ex: ClientExchange) -> None:
        cfg = self.state.config  # this request's snapshot
        origin = allowed_origin(ex.head, cfg.cors_allow_origins)
        if origin is not None:
            if is_preflight(ex.head):  # before auth; never forwarded, never counted
                await respond(ex, preflight_answer(ex.head, origin), b"")
                return
            ex = _CorsExchange(ex, origin)
        if is_own(ex.head):
            await serve_own(ex, self.state)
            return
        head = ex.head
        record = RequestRecord(
            ex.request_id, head.method.decode("latin-1"), head.path.decode("latin-1"), ex.protocol
        )
        _, _, query = head.target.partition(b"?")
        record.query = query.decode("latin-1")
        record.anthropic_beta = (head.header(b"anthropic-beta") or b"").decode("latin-1")[:1000]
        t0 = time.monotonic()
        try:
            record.caller = check_caller(head, cfg.auth) or ""
            await Forwarding(cfg, self.pools, self.router, record).run(ex)
        except ProxyError as exc:
            record.status, record.error = exc.status, exc.detail
            await self._fail(ex, exc)
        except BaseException:
            record.client_disconnected = True  # cancelled: the client went away (or shutdown)
            raise
        finally:
            record.duration_s = time.monotonic() - t0
            if record.provider:
                # Abandoned streams count too: the provider served those tokens.
                self.router.record_usage(record.provider, usage_tokens(record.usage))
            self.state.metrics.observe(record)
            if self.state.ledger is not None:
                self.state.ledger.add(record)
            _emit(record, cfg)
            if record.forward_failed or record.status >= 500:  # ours or the upstream's 5xx
                diag.warning("%s", record.diagnostic())

    async def _fail(self, ex: ClientExchange, exc: ProxyError) -> None:
        if ex.response_started:
            await ex.abort()
            return
        head, body = error_response(exc, ex.request_id)
        await respond(ex, head, body)


class Forwarding:
    """One request's trip upstream, with the configuration it started with: a
    reload (SIGHUP) changes what new requests see, never one in flight."""

    def __init__(
        self,
        cfg: Config,
        pools: dict[str, UpstreamPool],
        router: Router,
        record: RequestRecord,
    ) -> None:
        self.cfg = cfg
        self.pools = pools
        self.router = router
        self.record = record
        self.restore: dict[str, str] = {}  # placeholder -> original, for the response

    async def run(self, ex: ClientExchange) -> None:
        cfg, router, record = self.cfg, self.router, self.record
        routing = cfg.routing
        declared = check_declared_length(ex.head, cfg.limits.max_body_bytes)
        body = RequestBody(
            ex, max_bytes=cfg.limits.max_body_bytes, idle_timeout=cfg.timeouts.client_body_idle
        )
        pin = self._pin(ex)
        session_raw = ex.head.header(SESSION_HEADER)
        session = session_raw.decode("latin-1") if session_raw else None
        parsed: ParsedBody | None = None
        buffered: bytes | None = None
        scrubbing = cfg.scrub is not None and ex.head.method == b"POST"
        try:
            if (routing.needs_body or scrubbing) and ex.has_body:
                buffered = await body.read_all()
                doc: object = None
                if scrubbing:
                    buffered, doc = self._scrub(buffered)
                if routing.needs_body:
                    parsed = (
                        ParsedBody(buffered, doc) if isinstance(doc, dict) else parse_body(buffered)
                    )
                if parsed is not None:
                    session = session or parsed.session_id
                    record.model_requested = parsed.model or ""
            caller_key = _caller_key(ex.head) if routing.passthrough else ""
            try:
                plan = router.plan(pin=pin, session=session, caller_key=caller_key)
            except UnknownProvider as exc:
                raise InvalidRequest(
                    f"x-trioproxy-provider: no provider named {exc.args[0]!r} "
                    f"(known: {', '.join(routing.names)})"
                ) from None
            except NoProvider as exc:  # a quota the operator set: the proxy's own 429
                raise RateLimited(exc.message, retry_after=exc.retry_after) from None
            # Thinking blocks in the history were signed by the session's last
            # provider (or, for a session we do not know, the first choice).
            home = router.family_of(router.session_provider(session)) or plan[0].family
            router.forwarding += 1
            try:
                await self._try_all(
                    ex, plan, body, declared, parsed, buffered, home, session, caller_key
                )
            finally:
                router.forwarding -= 1
        finally:
            record.bytes_in = body.total
            record.body_complete = body.done
            record.traits = body.traits
            if not record.model_requested and body.first:
                record.model_requested = requested_model(body.first[:4096])

    def _scrub(self, raw: bytes) -> tuple[bytes, object]:
        """The body with credentials and identifiers replaced; the mapping
        to put them back is kept for this request only (never logged)."""
        scrub = self.cfg.scrub
        assert scrub is not None
        result = Scrubber(
            scrub.hmac_key, max_body_bytes=scrub.max_body_bytes, allow=scrub.allow
        ).scrub(raw)
        record = self.record
        record.scrub_hits = sum(result.hits.values())
        record.scrub_detail = dict(result.hits)
        if result.skipped:
            record.unscrubbed = result.skipped
            if result.skipped == "too_large":
                log.warning(
                    "%s: request body of %d bytes passed unscrubbed (scrub.max_body_bytes %d)",
                    record.request_id,
                    len(raw),
                    scrub.max_body_bytes,
                )
        if scrub.restore:
            self.restore = result.mapping
        return result.body, result.doc

    def _pin(self, ex: ClientExchange) -> str | None:
        raw = ex.head.header(PIN_HEADER)
        if raw is None:
            return None
        if not self.cfg.routing.allow_pin:
            raise PermissionDenied(
                "x-trioproxy-provider: pinning requests to a provider is not enabled on this "
                "proxy (routing.allow_pin)"
            )
        return raw.decode("latin-1").strip()

    def _payload(
        self, provider: ProviderConfig, parsed: ParsedBody | None, buffered: bytes | None, home: str
    ) -> bytes | None:
        """The body as this provider gets it (None: stream the client's)."""
        if parsed is None:
            return buffered
        model = parsed.model
        if model is not None:
            model = provider.map_model(self.cfg.routing.resolve_alias(model))
        return rewrite(
            parsed,
            model=model,
            drop_fields=provider.drop_fields,
            strip_thinking=provider.family != home,
        )

    async def _try_all(
        self,
        ex: ClientExchange,
        plan: list[ProviderConfig],
        body: RequestBody,
        declared: int | None,
        parsed: ParsedBody | None,
        buffered: bytes | None,
        home: str,
        session: str | None,
        caller_key: str,
    ) -> None:
        router, record = self.router, self.record
        kept: Rejected | None = None  # the last upstream error answer held back
        error: ProxyError | None = None  # the last failure without an answer
        tried: list[str] = []
        for index, provider in enumerate(plan):
            tried.append(provider.name)
            record.provider, record.providers_tried = provider.name, ",".join(tried)
            verdict = _Verdict(
                self, provider, more=index < len(plan) - 1, key=cooldown_key(provider, caller_key)
            )
            payload = self._payload(provider, parsed, buffered, home)
            retrying = False  # holding a place in the retry budget
            try:
                while True:
                    attempt = Attempt(
                        self.cfg,
                        provider,
                        self.pools[provider.name],
                        record,
                        verdict.judge,
                        restore=self.restore,
                    )
                    try:
                        await attempt.run(ex, body, declared, payload)
                    except Rejected as exc:
                        kept, error = exc, None
                    except (UpstreamError, UpstreamTimeout) as exc:
                        if ex.response_started:
                            raise
                        verdict.connection_failed(exc)
                        error = exc
                    else:
                        router.remember_session(session, provider.name)
                        return
                    finally:
                        if retrying:
                            router.retrying -= 1
                            retrying = False
                    nxt = verdict.next
                    if nxt.retry_in is None:
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
            if verdict.more:
                record.failovers += 1
                router.count_failover(provider.name)
                log.info(
                    "%s: failing over from %s (%s)", ex.request_id, provider.name, verdict.reason
                )
        if kept is not None:
            # Some provider answered (maybe not the last one tried): clients
            # match on the API's own words, so that answer goes back verbatim.
            await self._send_kept(ex, kept)
            return
        assert error is not None
        cls = UpstreamTimeout if isinstance(error, UpstreamTimeout) else UpstreamError
        names = ", ".join(tried)
        raise cls(
            f"{error.message} (providers tried: {names})",
            detail=f"{error.detail} (providers tried: {names})",
        )

    async def _send_kept(self, ex: ClientExchange, kept: Rejected) -> None:
        """An upstream error answer, verbatim: status, headers, body."""
        head, data = kept.head, kept.body
        record = self.record
        record.status = head.status
        record.upstream_request_id = (head.header(b"request-id") or b"").decode("latin-1")[:100]
        if data is None:
            raise UpstreamError(f"upstream answered {head.status}; the answer could not be kept")
        headers = response_headers_for_client(head.headers)
        if data and self.restore:
            data = restore_json(data, self.restore)
            headers = [(n, v) for n, v in headers if n != b"content-length"]
            headers.append((b"content-length", str(len(data)).encode()))
        await ex.send_head(ResponseHead(head.status, headers, head.reason))
        if data:
            await ex.send_body(data)
            record.bytes_out += len(data)
        await ex.end()


class _Verdict:
    """Judges each attempt on one provider, and records the request's stay
    there in the provider's health exactly once (``settle``): one client
    request is one outcome for the breaker, however many attempts it made."""

    def __init__(self, fwd: Forwarding, provider: ProviderConfig, *, more: bool, key: str) -> None:
        self.fwd = fwd
        self.provider = provider
        self.more = more  # another provider can still be tried after this one
        self.key = key  # whose cooldown a 429 starts (see decide.cooldown_key)
        self.health = fwd.router.health_of(provider.name)
        self.visit = self.health.begin(trio.current_time())
        self.retry = 0
        self.next = Next(None)
        self.outcome: Outcome | None = None  # the last attempt's
        self.latency = 0.0
        self.reason = ""

    def _decide(self, outcome: Outcome, retry_after: float | None, status: int | None) -> Next:
        fwd = self.fwd
        routing = fwd.cfg.routing
        self.outcome = outcome
        nxt = after_failure(
            outcome,
            retry=self.retry,
            retries=self.provider.retries,
            retry_after=retry_after,
            cap=routing.retry_after_cap,
            backoff=routing.backoff,
            cooldown_s=self.provider.cooldown_s,
            rand=fwd.router.rand(),
            more=self.more,
            budget_ok=fwd.router.retry_allowed(),
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


class _CorsExchange:
    """The client's exchange, with every answer head marked readable by the
    listed origin the request came from (errors included: a page must be
    able to read a 401 or a 429 too)."""

    def __init__(self, inner: ClientExchange, origin: bytes) -> None:
        self._inner = inner
        self._origin = origin
        self.head = inner.head
        self.request_id = inner.request_id
        self.protocol = inner.protocol

    @property
    def peer(self) -> str:
        return self._inner.peer

    @property
    def has_body(self) -> bool:
        return self._inner.has_body

    @property
    def response_started(self) -> bool:
        return self._inner.response_started

    async def receive_body(self) -> BodyChunk | None:
        return await self._inner.receive_body()

    def ack(self, nbytes: int) -> None:
        self._inner.ack(nbytes)

    def watch_disconnect(self) -> None:
        self._inner.watch_disconnect()

    async def send_head(self, head: ResponseHead) -> None:
        await self._inner.send_head(with_cors(head, self._origin))

    async def send_body(self, data: bytes) -> None:
        await self._inner.send_body(data)

    async def end(self) -> None:
        await self._inner.end()

    async def abort(self) -> None:
        await self._inner.abort()


def _caller_key(head: RequestHead) -> str:
    """A short keyed digest of the caller's own credential, for passthrough
    cooldowns (never the credential itself: it is kept in memory as a key)."""
    presented = presented_credential(head.headers)
    if presented is None:
        return ""
    return hashlib.blake2b(presented, digest_size=12, key=b"trioproxy-cooldown").hexdigest()


def _emit(record: RequestRecord, cfg: Config) -> None:
    """The access line; slow requests (headers later than log.slow_seconds) at
    warning. Logging goes through a queue to a thread (see cli), so this
    never blocks the event loop."""
    slow = (record.time_to_headers_s or 0.0) > cfg.log_slow_seconds
    level = logging.WARNING if slow else logging.INFO
    if access.isEnabledFor(level):  # rendering costs: only when the line is wanted
        access.log(level, record.render(cfg.log_format))


__all__ = ["ClientGone", "Proxy"]
