"""One exchange through the proxy: the request pump and the response pump.

The request body streams client -> upstream in one task while the response
streams upstream -> client in another (an upstream may answer before the body
is done). Errors are mapped once, here: before the first response byte, the
client gets an Anthropic-shaped error; after it, an SSE stream gets a final
``event: error`` and anything else is truncated (``abort``), so a client never
mistakes a broken body for a complete one.
"""

from __future__ import annotations

import logging
import math
import time

import trio

from trioproxy._util import one_error
from trioproxy.accounting.record import RequestRecord
from trioproxy.accounting.usage import UsageObserver, requested_model
from trioproxy.admin.endpoints import is_own, serve_own
from trioproxy.config import Config
from trioproxy.errors import (
    ClientGone,
    ClientTimeout,
    ProxyError,
    RequestTooLarge,
    UpstreamError,
    UpstreamTimeout,
    error_response,
    sse_error_event,
)
from trioproxy.inbound.exchange import ClientExchange, respond
from trioproxy.pipeline.access import check_caller
from trioproxy.pipeline.forward import check_declared_length, upstream_head
from trioproxy.proto.events import BodyChunk, ResponseHead
from trioproxy.proto.headers import (
    has_header,
    is_event_stream,
    response_headers_for_client,
)
from trioproxy.proto.sse import EventBoundary
from trioproxy.state import ServerState
from trioproxy.upstream.lease import Lease, UpstreamClosed, UpstreamWriteFailed
from trioproxy.upstream.pool import UpstreamPool

log = logging.getLogger("trioproxy.handler")
access = logging.getLogger("trioproxy.access")

REPLAY_LIMIT = 4 * 1024 * 1024  # bytes of request body kept to resend once on a stale connection
# Seconds an upload may still run after the upstream already answered in full.
# Upstreams (nginx `return`, early 4xx) often answer before reading the body;
# finishing a short upload keeps the upstream connection reusable, while a long
# one is cut off (the connection is then closed instead).
UPLOAD_GRACE = 1.0
# Bodies up to this size (declared by Content-Length) are sent before the
# response is read, in the handler's own task: no pump task, no nursery. Most
# API requests are this small; larger or chunked uploads stream concurrently
# with the response, so an upstream may still answer before they end.
INLINE_BODY_MAX = 64 * 1024  # bytes


class RequestBody:
    """The client's request body, read once, with limits and a bounded copy.

    The copy lets a request that hit a connection the server had already closed
    be sent again on a fresh one (at most once); bodies over REPLAY_LIMIT are
    not kept, and such a request is not retried."""

    def __init__(self, ex: ClientExchange, *, max_bytes: int, idle_timeout: float) -> None:
        self._ex = ex
        self._max = max_bytes
        self._idle = idle_timeout
        self.total = 0
        self.done = not ex.has_body
        self._replay: list[bytes] | None = []
        self._replay_bytes = 0
        self.first: bytes | None = None  # the first chunk (for the requested model)

    @property
    def exchange(self) -> ClientExchange:
        return self._ex

    @property
    def replayable(self) -> bool:
        return self._replay is not None

    def replay(self) -> list[bytes]:
        return list(self._replay or ())

    async def read(self) -> BodyChunk | None:
        if self.done:
            return None
        with trio.move_on_after(self._idle) as scope:
            chunk = await self._ex.receive_body()
        if scope.cancelled_caught:
            raise ClientTimeout(f"no request body data received for {self._idle:g} s")
        if chunk is None:
            self.done = True
            return None
        if self.first is None:
            self.first = chunk.data
        self.total += len(chunk.data)
        if self.total > self._max:
            raise RequestTooLarge(f"request body exceeds the proxy's limit of {self._max} bytes")
        if self._replay is not None:
            self._replay_bytes += len(chunk.data)
            if self._replay_bytes > REPLAY_LIMIT:
                self._replay = None
            else:
                self._replay.append(chunk.data)
        return chunk

    def ack(self, chunk: BodyChunk) -> None:
        self._ex.ack(chunk.flow_controlled_length)


class Proxy:
    """The proxy application: own endpoints, else forward upstream."""

    def __init__(self, state: ServerState, pool: UpstreamPool) -> None:
        self.state = state
        self.pool = pool

    async def __call__(self, ex: ClientExchange) -> None:
        if is_own(ex.head):
            await serve_own(ex, self.state)
            return
        cfg = self.state.config  # this request's snapshot
        head = ex.head
        record = RequestRecord(
            ex.request_id, head.method.decode("latin-1"), head.path.decode("latin-1"), ex.protocol
        )
        t0 = time.monotonic()
        try:
            record.caller = check_caller(head, cfg.auth) or ""
            await Forwarding(cfg, self.pool, record).run(ex)
        except ProxyError as exc:
            record.status, record.error = exc.status, exc.message
            await self._fail(ex, exc)
        except BaseException:
            record.client_disconnected = True  # cancelled: the client went away (or shutdown)
            raise
        finally:
            record.duration_s = time.monotonic() - t0
            self.state.metrics.observe(record)
            _emit(record, cfg)

    async def _fail(self, ex: ClientExchange, exc: ProxyError) -> None:
        if ex.response_started:
            await ex.abort()
            return
        head, body = error_response(exc, ex.request_id)
        await respond(ex, head, body)


class Forwarding:
    """One request's trip upstream, with the configuration it started with: a
    reload (SIGHUP) changes what new requests see, never one in flight."""

    def __init__(self, cfg: Config, pool: UpstreamPool, record: RequestRecord) -> None:
        self.cfg = cfg
        self.pool = pool
        self.record = record

    async def run(self, ex: ClientExchange) -> None:
        cfg = self.cfg
        declared = check_declared_length(ex.head, cfg.limits.max_body_bytes)
        body = RequestBody(
            ex, max_bytes=cfg.limits.max_body_bytes, idle_timeout=cfg.timeouts.client_body_idle
        )
        fresh = False
        while True:
            lease = await self._acquire(fresh=fresh)
            try:
                await self._exchange(ex, lease, body, declared)
                return
            except UpstreamClosed as exc:
                if not (
                    exc.retryable and not fresh and body.replayable and not ex.response_started
                ):
                    raise
                log.debug(
                    "%s: stale upstream connection, retrying once on a fresh one", ex.request_id
                )
                fresh = True
                self.record.retries += 1
            finally:
                self.record.bytes_in = body.total
                if body.first:
                    self.record.model_requested = requested_model(body.first[:4096])
                await self.pool.release(lease)

    async def _acquire(self, *, fresh: bool) -> Lease:
        timeout = self.cfg.timeouts.connect
        with trio.move_on_after(timeout) as scope:
            return await self.pool.acquire(fresh=fresh)
        assert scope.cancelled_caught
        raise UpstreamError(
            f"could not connect to upstream {self.pool.origin} within {timeout:g} s"
        )

    async def _exchange(
        self, ex: ClientExchange, lease: Lease, body: RequestBody, declared: int | None
    ) -> None:
        cfg = self.cfg
        up_head = upstream_head(
            ex.head,
            self.pool.origin,
            upstream_is_h2=lease.protocol == "h2",
            credential=self.cfg.upstream.credential,
        )
        try:
            await lease.send_head(up_head, has_body=ex.has_body)
        except UpstreamWriteFailed as exc:
            raise UpstreamClosed(
                f"upstream {self.pool.origin} closed the connection", retryable=lease.reused
            ) from exc
        if not ex.has_body or (declared is not None and declared <= INLINE_BODY_MAX):
            await self._upload(lease, body)
            with trio.move_on_after(cfg.timeouts.response_headers) as head_scope:
                resp = await lease.receive_head()
            if head_scope.cancelled_caught:
                raise self._headers_timeout()
            await self._pump_response(ex, lease, resp)
            return
        head_scope = trio.CancelScope(deadline=math.inf)
        uploaded = trio.Event()
        with one_error():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pump_request, lease, body, head_scope, uploaded)
                with head_scope:
                    resp = await lease.receive_head()
                if head_scope.cancelled_caught:
                    raise self._headers_timeout()
                await self._pump_response(ex, lease, resp)
                with trio.move_on_after(UPLOAD_GRACE):
                    await uploaded.wait()
                nursery.cancel_scope.cancel()  # an upload still running after the grace ends here

    def _headers_timeout(self) -> UpstreamTimeout:
        t = self.cfg.timeouts.response_headers
        return UpstreamTimeout(f"upstream sent no response headers within {t:g} s")

    async def _upload(self, lease: Lease, body: RequestBody) -> None:
        """Client body -> upstream. Credit goes back to the client only after a
        chunk was handed to the upstream (HTTP/2 backpressure). A failed write
        is left for the response side to report (an early answer may still be
        readable, and a stale connection shows there as retryable)."""
        try:
            for data in body.replay():
                await lease.send_body(data)
            while (chunk := await body.read()) is not None:
                await lease.send_body(chunk.data)
                body.ack(chunk)
            await lease.end_body()
        except UpstreamWriteFailed:
            pass
        # Now we wait on the upstream: a client that leaves must cancel that.
        body.exchange.watch_disconnect()

    async def _pump_request(
        self, lease: Lease, body: RequestBody, head_scope: trio.CancelScope, uploaded: trio.Event
    ) -> None:
        """The upload as a task beside the response (large or chunked bodies)."""
        try:
            await self._upload(lease, body)
        finally:
            uploaded.set()
            # The response-header timeout counts from the end of the upload.
            head_scope.deadline = min(
                head_scope.deadline,
                trio.current_time() + self.cfg.timeouts.response_headers,
            )

    async def _pump_response(self, ex: ClientExchange, lease: Lease, resp: ResponseHead) -> None:
        idle_timeout = self.cfg.timeouts.upstream_body_idle
        stream = is_event_stream(resp.headers)
        sse = EventBoundary() if stream else None
        framed = has_header(resp.headers, b"content-length")
        record = self.record
        record.status, record.stream = resp.status, stream
        record.time_to_headers_s = time.monotonic() - record.started_monotonic
        record.upstream_request_id = (resp.header(b"request-id") or b"").decode("latin-1")[:100]
        observer = UsageObserver(event_stream=stream)
        record.usage = observer.usage
        await ex.send_head(
            ResponseHead(resp.status, response_headers_for_client(resp.headers), resp.reason)
        )
        try:
            # One scope for the whole body; its deadline is moved, not re-created,
            # per chunk. It only runs while we wait for the upstream.
            with trio.CancelScope() as idle:
                while True:
                    idle.deadline = trio.current_time() + idle_timeout
                    chunk = await lease.receive_body()
                    if chunk is None:
                        break
                    idle.deadline = math.inf
                    observer.feed(chunk)
                    if sse is not None:
                        sse.feed(chunk)
                    await ex.send_body(chunk)
                    record.bytes_out += len(chunk)
            if idle.cancelled_caught:
                raise UpstreamTimeout(f"upstream sent nothing for {idle_timeout:g} s mid-response")
        except (UpstreamError, UpstreamTimeout) as exc:
            observer.finish(complete=False)
            record.error = f"upstream failed mid-response: {exc.message}"
            if sse is not None and not framed:
                sep = b"" if sse.at_boundary else b"\n\n"
                await ex.send_body(
                    sep + sse_error_event(f"upstream stream interrupted: {exc.message}")
                )
                await ex.end()
            else:
                await ex.abort()
            return
        except BaseException:
            observer.finish(complete=False)  # client gone: keep what was seen, flagged
            raise
        observer.finish(complete=True)
        await ex.end()


def _emit(record: RequestRecord, cfg: Config) -> None:
    """The access line; slow requests (headers later than log.slow_seconds) at
    warning. Logging goes through a queue to a thread (see cli), so this
    never blocks the event loop."""
    slow = (record.time_to_headers_s or 0.0) > cfg.log_slow_seconds
    level = logging.WARNING if slow else logging.INFO
    if access.isEnabledFor(level):  # rendering costs: only when the line is wanted
        access.log(level, record.render(cfg.log_format))


__all__ = ["ClientGone", "Proxy"]
