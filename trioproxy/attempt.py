"""One try of a request on one provider: the request pump and the response pump.

The request body streams client -> upstream in one task while the response
streams upstream -> client in another (an upstream may answer before the body
is done). When the response head arrives, ``judge`` decides whether it goes
to the client or is kept back for a retry or failover (``Rejected``: the
caller tries again, nothing reached the client). After the first response
byte, failures are this module's business: the client's response is cut the
way the upstream's was (``abort``), so a client never mistakes a broken body for
a complete one and retries as it would going direct (``stream_failure =
"error_event"`` ends an SSE stream with a final ``event: error`` instead).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import trio

from trioproxy._util import one_error
from trioproxy.accounting.record import RequestRecord
from trioproxy.accounting.usage import UsageObserver
from trioproxy.config import Config
from trioproxy.config.model import ProviderConfig
from trioproxy.errors import UpstreamError, UpstreamTimeout, about_upstream, sse_error_event
from trioproxy.inbound.body import RequestBody
from trioproxy.inbound.exchange import ClientExchange
from trioproxy.pipeline.forward import upstream_head
from trioproxy.proto.events import ResponseHead
from trioproxy.proto.headers import (
    content_length,
    has_header,
    is_event_stream,
    response_headers_for_client,
)
from trioproxy.proto.sse import EventBoundary
from trioproxy.scrub.restore import JSONRestorer, SSERestorer, restore_json
from trioproxy.upstream.lease import Lease, UpstreamClosed, UpstreamWriteFailed
from trioproxy.upstream.pool import UpstreamPool

# Seconds an upload may still run after the upstream already answered in full.
# Upstreams (nginx `return`, early 4xx) often answer before reading the body;
# finishing a short upload keeps the upstream connection reusable, while a long
# one is cut off (the connection is then closed instead).
UPLOAD_GRACE = 1.0
# Bodies up to this size (declared by Content-Length, or rewritten for the
# provider) are sent before the response is read, in the handler's own task:
# no pump task, no nursery. Most API requests are this small; larger or
# chunked uploads stream concurrently with the response.
INLINE_BODY_MAX = 64 * 1024  # bytes
ERROR_BODY_MAX = 1024 * 1024  # bytes of a rejected answer kept to show the client later


class Rejected(Exception):
    """The provider answered with a status that is retried or failed over.
    ``body`` is None when it could not be kept (too large, or it stalled)."""

    def __init__(self, head: ResponseHead, body: bytes | None) -> None:
        super().__init__(f"upstream answered {head.status}")
        self.head = head
        self.body = body


# judge(head, time to headers) -> True: send it to the client; False: reject.
Judge = Callable[[ResponseHead, float], bool]


class Attempt:
    def __init__(
        self,
        cfg: Config,
        provider: ProviderConfig,
        pool: UpstreamPool,
        record: RequestRecord,
        judge: Judge,
        *,
        restore: dict[str, str] | None = None,
    ) -> None:
        """``restore``: placeholders the scrubber put in this request, to be
        put back in the response (empty: the response passes untouched)."""
        self.restore = restore or {}
        self.cfg = cfg
        self.provider = provider
        self.pool = pool
        self.record = record
        self.judge = judge
        t = cfg.timeouts
        self.connect_timeout = provider.connect_timeout or t.connect
        self.headers_timeout = provider.response_headers_timeout or t.response_headers

    async def run(
        self, ex: ClientExchange, body: RequestBody, declared: int | None, payload: bytes | None
    ) -> None:
        """Forward once. ``payload``: the body rewritten for this provider
        (else the client's body streams, replayed from the copy when this is
        not the first try). A connection that turns out stale (the server
        closed it while idle) is retried once on a fresh one: that is not the
        provider failing. Raises Rejected, UpstreamError, UpstreamTimeout or
        UpstreamClosed before the response started; after, returns."""
        fresh = False
        t0 = trio.current_time()
        while True:
            lease = await self._acquire(fresh=fresh)
            try:
                await self._exchange(ex, lease, body, declared, payload, t0)
                return
            except UpstreamClosed as exc:
                if not (exc.retryable and not fresh and not ex.response_started):
                    raise
                fresh = True
                self.record.retries += 1
            finally:
                await self.pool.release(lease)

    async def _acquire(self, *, fresh: bool) -> Lease:
        with trio.move_on_after(self.connect_timeout) as scope:
            return await self.pool.acquire(fresh=fresh)
        assert scope.cancelled_caught
        raise about_upstream(
            UpstreamError,
            self.pool.origin,
            f"could not be connected to within {self.connect_timeout:g} s",
        )

    async def _exchange(
        self,
        ex: ClientExchange,
        lease: Lease,
        body: RequestBody,
        declared: int | None,
        payload: bytes | None,
        t0: float,
    ) -> None:
        up_head = upstream_head(
            ex.head,
            self.pool.origin,
            upstream_is_h2=lease.protocol == "h2",
            credential=self.provider.upstream.credential,
            body_length=None if payload is None else len(payload),
            drop_betas=self.provider.drop_betas,
            identity=bool(self.restore),
        )
        has_body = ex.has_body if payload is None else bool(payload)
        try:
            await lease.send_head(up_head, has_body=has_body)
        except UpstreamWriteFailed as exc:
            raise about_upstream(
                UpstreamClosed,
                self.pool.origin,
                "closed the connection",
                retryable=lease.reused,
            ) from exc
        inline = payload is not None or (declared is not None and declared <= INLINE_BODY_MAX)
        if not ex.has_body or inline:
            await self._upload(lease, body, payload)
            with trio.move_on_after(self.headers_timeout) as head_scope:
                resp = await lease.receive_head()
            if head_scope.cancelled_caught:
                raise self._headers_timeout()
            await self._answer(ex, lease, resp, t0, body)
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
                await self._answer(ex, lease, resp, t0, body)  # Rejected cancels the upload
                with trio.move_on_after(UPLOAD_GRACE):
                    await uploaded.wait()
                nursery.cancel_scope.cancel()  # an upload still running after the grace ends here

    def _headers_timeout(self) -> UpstreamTimeout:
        return about_upstream(
            UpstreamTimeout,
            self.pool.origin,
            f"sent no response headers within {self.headers_timeout:g} s",
        )

    async def _answer(
        self, ex: ClientExchange, lease: Lease, resp: ResponseHead, t0: float, body: RequestBody
    ) -> None:
        if not self.judge(resp, trio.current_time() - t0):
            raise Rejected(resp, await self._keep_body(lease))
        await self._pump_response(ex, lease, resp, body)

    async def _keep_body(self, lease: Lease) -> bytes | None:
        """A rejected answer's body (error bodies are small), to give the
        client verbatim if every other try fails too."""
        chunks: list[bytes] = []
        total = 0
        with trio.move_on_after(self.cfg.timeouts.upstream_body_idle):
            try:
                while (chunk := await lease.receive_body()) is not None:
                    total += len(chunk)
                    if total > ERROR_BODY_MAX:
                        return None
                    chunks.append(chunk)
            except (UpstreamError, UpstreamTimeout, UpstreamClosed):
                return None
            return b"".join(chunks)
        return None

    async def _upload(self, lease: Lease, body: RequestBody, payload: bytes | None) -> None:
        """Client body -> upstream. Credit goes back to the client only after a
        chunk was handed to the upstream (HTTP/2 backpressure). A failed write
        is left for the response side to report (an early answer may still be
        readable, and a stale connection shows there as retryable)."""
        try:
            if payload is not None:
                if payload:
                    await lease.send_body(payload)
            else:
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
        self,
        lease: Lease,
        body: RequestBody,
        head_scope: trio.CancelScope,
        uploaded: trio.Event,
    ) -> None:
        """The upload as a task beside the response (large or chunked bodies)."""
        try:
            await self._upload(lease, body, None)
        finally:
            uploaded.set()
            # The response-header timeout counts from the end of the upload.
            head_scope.deadline = min(
                head_scope.deadline, trio.current_time() + self.headers_timeout
            )

    async def _pump_response(
        self, ex: ClientExchange, lease: Lease, resp: ResponseHead, body: RequestBody
    ) -> None:
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
        headers = response_headers_for_client(resp.headers)
        restorer: SSERestorer | JSONRestorer | None = None
        if self.restore and stream:
            restorer = SSERestorer(self.restore)
        elif self.restore:
            declared = content_length(resp.headers)
            if declared is not None and declared <= ERROR_BODY_MAX:
                await self._send_restored_json(ex, lease, resp, headers, observer)
                return
            # Too large to hold: restored as it streams; its length changes.
            restorer = JSONRestorer(self.restore)
            headers = [(n, v) for n, v in headers if n != b"content-length"]
        await ex.send_head(ResponseHead(resp.status, headers, resp.reason))
        # The body is kept for a retry until response bytes reached the client
        # (a sized answer's head waits for its first body bytes).
        kept = True
        sent_tail = b"\n\n"  # the last bytes written: is the client at an event boundary?
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
                    if restorer is not None:
                        chunk = restorer.feed(chunk)
                        if not chunk:
                            continue
                        sent_tail = chunk[-2:]
                    await ex.send_body(chunk)
                    record.bytes_out += len(chunk)
                    if kept:
                        body.forget()  # from here on it is never replayed: do not hold it
                        kept = False
            if idle.cancelled_caught:
                raise about_upstream(
                    UpstreamTimeout,
                    self.pool.origin,
                    f"sent nothing for {idle_timeout:g} s mid-response",
                )
            if restorer is not None and (rest := restorer.finish()):
                await ex.send_body(rest)
                record.bytes_out += len(rest)
        except (UpstreamError, UpstreamTimeout, UpstreamClosed) as exc:
            observer.finish(complete=False)
            if not ex.response_started:
                raise  # nothing reached the client: retried, failed over or answered
            record.error = f"upstream failed mid-response: {exc.detail}"
            record.forward_failed = True
            if restorer is not None and (rest := restorer.finish()):
                await ex.send_body(rest)  # what the upstream did send, restored
                sent_tail = rest[-2:]
            if sse is not None and not framed and self.cfg.stream_failure == "error_event":
                at_boundary = sse.at_boundary if restorer is None else sent_tail == b"\n\n"
                sep = b"" if at_boundary else b"\n\n"
                await ex.send_body(sep + sse_error_event("the upstream stream was interrupted"))
                await ex.end()
            else:
                # Mirrored: the client's stream ends the way the upstream's did
                # (HTTP/1.1: closed without the last chunk; HTTP/2: RST_STREAM),
                # so the client retries exactly as it would going direct.
                await ex.abort()
            return
        except BaseException:
            observer.finish(complete=False)  # client gone: keep what was seen, flagged
            raise
        observer.finish(complete=True)
        await ex.end()

    async def _send_restored_json(
        self,
        ex: ClientExchange,
        lease: Lease,
        resp: ResponseHead,
        headers: list[tuple[bytes, bytes]],
        observer: UsageObserver,
    ) -> None:
        """A JSON answer to a scrubbed request: read whole (its length
        changes with the restored values), restored, then sent. An upstream
        failure here happens before the client saw a byte."""
        body = await self._keep_body(lease)
        if body is None:
            raise UpstreamError("upstream answer broke off or was too large to restore")
        observer.feed(body)
        observer.finish(complete=True)
        data = restore_json(body, self.restore)
        headers = [(n, v) for n, v in headers if n != b"content-length"]
        headers.append((b"content-length", str(len(data)).encode()))
        await ex.send_head(ResponseHead(resp.status, headers, resp.reason))
        if data:
            await ex.send_body(data)
        self.record.bytes_out += len(data)
        await ex.end()
