"""One try of a request on one provider, in two phases::

    async with Attempt(trip, leg, pool, body, credential, signer).open() as answer:
        ... answer.head is the upstream's response head: the caller decides,
        in one place, whether it goes to the client (respond.relay) or is
        kept back for a retry or failover (answer.keep) ...

Entering sends the request and waits for the response head; it raises
UpstreamError (can't connect, closed before answering), UpstreamTimeout (no
head within the response-header timeout) or Overloaded (no pooled
connection within timeouts.pool), and nothing has reached the client then.
A connection the server had closed while idle is tried once more on a fresh
one: that is not the provider failing. Leaving releases the connection (or
stream) to the pool, once the response body was read or abandoned.

Bodies up to INLINE_BODY_MAX, or the body rewritten for this provider, are
sent before the response is read, in the caller's own task. Larger or
chunked uploads stream in a task beside the response (an upstream may
answer before it has read the body); the response-header timeout then
counts from the end of the upload, and an upload still running after the
answer ended gets UPLOAD_GRACE more before it is cut off.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import trio

from trioproxy._util import one_error
from trioproxy.config.model import Credential
from trioproxy.config.oauth import OAUTH_BETA
from trioproxy.errors import Overloaded, UpstreamError, UpstreamTimeout, about_upstream
from trioproxy.exchange.body import RequestBody
from trioproxy.exchange.stage import Leg
from trioproxy.exchange.trip import Trip
from trioproxy.proto.events import Http, ResponseHead
from trioproxy.rules.upstream_head import upstream_head
from trioproxy.upstream.aws import Signer
from trioproxy.upstream.lease import Lease, UpstreamClosed, UpstreamWriteFailed
from trioproxy.upstream.pool import PoolTimeout, UpstreamPool

# Seconds an upload may still run after the upstream already answered in full.
# Upstreams (nginx `return`, early 4xx) often answer before reading the body;
# finishing a short upload keeps the upstream connection reusable, while a long
# one is cut off (the connection is then closed instead).
UPLOAD_GRACE = 1.0
# Bodies up to this size (declared by Content-Length, or rewritten for the
# provider) are sent before the response is read, in the caller's own task:
# no upload task, no nursery. Most API requests are this small.
INLINE_BODY_MAX = 64 * 1024  # bytes
ERROR_BODY_MAX = 1024 * 1024  # bytes of a held-back answer kept to show the client later


class Answer:
    """The upstream's response: its head, and its body to read."""

    __slots__ = ("_lease", "head", "latency")

    def __init__(self, lease: Lease, head: ResponseHead, latency: float) -> None:
        self._lease = lease
        self.head = head
        self.latency = latency  # seconds from the attempt's start to the head

    async def receive(self) -> bytes | None:
        """The next body chunk, or None at its end. Raises UpstreamError /
        UpstreamClosed when the upstream breaks off."""
        return await self._lease.receive_body()

    async def keep(self, idle: float) -> bytes | None:
        """The whole body of an answer held back (error bodies are small), to
        give the client verbatim if nothing else works; None if it is too
        large or broke off."""
        chunks: list[bytes] = []
        total = 0
        with trio.move_on_after(idle):
            try:
                while (chunk := await self._lease.receive_body()) is not None:
                    total += len(chunk)
                    if total > ERROR_BODY_MAX:
                        return None
                    chunks.append(chunk)
            except UpstreamError:
                return None
            return b"".join(chunks)
        return None


class Attempt:
    __slots__ = (
        "_lease",
        "body",
        "credential",
        "headers_timeout",
        "leg",
        "payload",
        "pool",
        "provider",
        "signer",
        "traceparent",
        "trip",
    )

    def __init__(
        self,
        trip: Trip,
        leg: Leg,
        pool: UpstreamPool,
        body: RequestBody,
        credential: Credential | None,
        signer: Signer | None = None,
        traceparent: bytes | None = None,
    ) -> None:
        """``leg.payload``: the body as this provider gets it, when it was
        read whole (else the client's body streams, replayed from the copy
        when this is not the first try). ``credential``: what the proxy
        sends for the caller (None: the caller's own credential goes
        through). ``signer``: a cloud's signature over the final head and
        body, made for each try (its time is part of it). ``traceparent``:
        this try's, with tracing on."""
        self.trip = trip
        self.leg = leg
        self.credential = credential
        self.provider = leg.provider
        self.pool = pool
        self.body = body
        self.payload = leg.payload
        self.signer = signer
        self.traceparent = traceparent
        self._lease: Lease | None = None
        self.headers_timeout = (
            self.provider.response_headers_timeout or trip.cfg.timeouts.response_headers
        )

    def open(self) -> AbstractAsyncContextManager[Answer]:
        """Send the request; the context's value is the upstream's answer."""
        ex, declared = self.trip.ex, self.body.declared
        inline = self.payload is not None or (declared is not None and declared <= INLINE_BODY_MAX)
        if not ex.has_body or inline:
            return _Inline(self)
        return self._streamed()

    # -- the two ways --------------------------------------------------------------
    async def send_inline(self) -> Answer:
        """Body first, then the answer's head, all in the caller's task."""
        t0 = trio.current_time()
        fresh = False
        while True:
            lease = self._lease = await self._acquire(fresh=fresh)
            try:
                await self._send_head(lease)
                await self._upload(lease, self.payload)
                with trio.move_on_after(self.headers_timeout) as scope:
                    head = await lease.receive_head()
                if scope.cancelled_caught:
                    raise self._headers_timeout()
            except UpstreamClosed as exc:
                await self.close()
                if not (exc.retryable and not fresh and self.body.replayable):
                    raise
                fresh = True  # a kept-alive connection the server had closed: once more
                self.trip.record.retries += 1
                continue
            except BaseException:
                await self.close()
                raise
            return Answer(lease, head, trio.current_time() - t0)

    @asynccontextmanager
    async def _streamed(self) -> AsyncIterator[Answer]:
        """A large or chunked upload streams in a task beside the response
        (the upstream may answer before it has read it all)."""
        t0 = trio.current_time()
        fresh = answered = False
        try:
            while True:
                lease = self._lease = await self._acquire(fresh=fresh)
                try:
                    with one_error():
                        async with trio.open_nursery() as nursery:
                            await self._send_head(lease)
                            head_scope = trio.CancelScope(deadline=math.inf)
                            uploaded = trio.Event()
                            nursery.start_soon(self._pump_upload, lease, head_scope, uploaded)
                            with head_scope:
                                head = await lease.receive_head()
                            if head_scope.cancelled_caught:
                                raise self._headers_timeout()
                            answered = True
                            yield Answer(lease, head, trio.current_time() - t0)
                            with trio.move_on_after(UPLOAD_GRACE):
                                await uploaded.wait()
                            nursery.cancel_scope.cancel()  # an upload still running ends here
                    return
                except UpstreamClosed as exc:
                    if answered or not (exc.retryable and not fresh and self.body.replayable):
                        raise  # after the head it is the caller's to handle
                    await self.close()
                    fresh = True
                    self.trip.record.retries += 1
        finally:
            await self.close()

    async def close(self) -> None:
        """Back to the pool (or closed): once the answer was read or abandoned."""
        lease, self._lease = self._lease, None
        if lease is not None:
            await self.pool.release(lease)

    # -- the steps ----------------------------------------------------------------------
    async def _acquire(self, *, fresh: bool) -> Lease:
        connect = self.provider.connect_timeout or self.trip.cfg.timeouts.connect
        pool_timeout = self.trip.cfg.timeouts.pool
        try:
            return await self.pool.acquire(
                fresh=fresh, connect_timeout=connect, pool_timeout=pool_timeout
            )
        except PoolTimeout:
            raise Overloaded(
                f"no connection to provider {self.provider.name} came free within "
                f"{pool_timeout:g} s (upstream.max_connections is "
                f"{self.provider.upstream.max_connections}); try again shortly",
                retry_after=1,
            ) from None

    async def _send_head(self, lease: Lease) -> None:
        trip, payload, provider = self.trip, self.payload, self.provider
        ex = trip.ex
        up_head = upstream_head(
            ex.head,
            self.pool.origin,
            upstream_is_h2=lease.protocol is Http.H2,
            credential=self.credential,
            # A subscription's token is accepted with the OAuth beta only.
            add_beta=OAUTH_BETA if provider.oauth_file and self.credential is not None else b"",
            chat=provider.kind == "openai",
            cloud_target=self.leg.target,
            cloud_headers=self.leg.headers,
            body_length=None if payload is None else len(payload),
            drop_betas=provider.drop_betas,
            identity=bool(trip.restore),
            traceparent=self.traceparent,
        )
        if self.signer is not None:
            up_head = self.signer(up_head, payload or b"")
        has_body = ex.has_body if payload is None else bool(payload)
        await lease.send_head(up_head, has_body=has_body)  # UpstreamWriteFailed: typed there

    def _headers_timeout(self) -> UpstreamTimeout:
        return about_upstream(
            UpstreamTimeout,
            self.pool.origin,
            f"sent no response headers within {self.headers_timeout:g} s",
        )

    async def _upload(self, lease: Lease, payload: bytes | None) -> None:
        """Client body -> upstream. Credit goes back to the client only after a
        chunk was handed to the upstream (HTTP/2 backpressure). A failed write
        is left for the response side to report (an early answer may still be
        readable, and a stale connection shows there as retryable)."""
        body = self.body
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
        self.trip.ex.watch_disconnect()

    async def _pump_upload(
        self, lease: Lease, head_scope: trio.CancelScope, uploaded: trio.Event
    ) -> None:
        """The upload as a task beside the response (large or chunked bodies)."""
        try:
            await self._upload(lease, None)
        finally:
            uploaded.set()
            # The response-header timeout counts from the end of the upload.
            head_scope.deadline = min(
                head_scope.deadline, trio.current_time() + self.headers_timeout
            )


class _Inline:
    """The context of an attempt whose body goes first (no task, no nursery)."""

    __slots__ = ("_attempt",)

    def __init__(self, attempt: Attempt) -> None:
        self._attempt = attempt

    async def __aenter__(self) -> Answer:
        return await self._attempt.send_inline()

    async def __aexit__(self, *exc: object) -> None:
        await self._attempt.close()
