"""The upstream's answer on its way to the client, through the response
stages (stages.py).

Streamed as it arrives: each chunk is written to the client before the next
is read, so a slow client slows the upstream (HTTP/2 credit is returned only
then) and nothing is buffered, unless a stage needs the whole body (a JSON
answer restored whole, so its content-length stays exact), within a cap.

Until the first response bytes reach the client the request body is kept
(a retry or failover may need it) and an upstream failure is raised for the
caller to retry, fail over or answer. After, a failure is mirrored: the
client's response ends the way the upstream's did (HTTP/1.1: closed without
the last chunk; HTTP/2: RST_STREAM), so the client retries as it would
going direct; with ``stream_failure = "error_event"`` an SSE stream gets a
final ``event: error`` instead.
"""

from __future__ import annotations

import time

import trio

from trioproxy._util import one_error
from trioproxy.errors import (
    ProxyError,
    UpstreamError,
    UpstreamTimeout,
    about_upstream,
    sse_error_event,
)
from trioproxy.exchange.attempt import Answer
from trioproxy.exchange.body import RequestBody
from trioproxy.exchange.stages import Chain, Leg, response_chain
from trioproxy.exchange.trip import Trip
from trioproxy.proto.events import ResponseHead
from trioproxy.proto.headers import has_header, is_event_stream, response_headers_for_client

_BOUNDARIES = (b"\n\n", b"\r\n\r\n", b"\r\r")  # an SSE event ends with a blank line


def _note(trip: Trip, leg: Leg, head: ResponseHead) -> None:
    record = trip.record
    record.status = head.status
    streamed = is_event_stream(head.headers) or (head.header(b"content-type") or b"").startswith(
        b"application/vnd.amazon.eventstream"  # Bedrock's
    )
    record.stream = streamed and not leg.demoted
    rid = head.header(b"request-id") or head.header(b"x-amzn-requestid") or b""
    record.upstream_request_id = rid.decode("latin-1")[:100]


async def relay(trip: Trip, leg: Leg, answer: Answer, body: RequestBody, origin: object) -> None:
    """Stream ``answer`` (to ``leg``) to the client. Raises (UpstreamError
    and friends) only while nothing has reached the client."""
    ex, record = trip.ex, trip.record
    upstream = answer.head
    _note(trip, leg, upstream)
    record.time_to_headers_s = time.monotonic() - record.started_monotonic
    head = ResponseHead(
        upstream.status, response_headers_for_client(upstream.headers), upstream.reason
    )
    chain = response_chain(trip, leg, upstream)
    if chain is not None:
        if chain.whole:
            try:
                data = await _through_whole(trip, answer, chain, origin)
            except BaseException:
                _settle(trip, chain, complete=False)
                raise
            _settle(trip, chain, complete=True)
            await deliver(trip, chain.head(head), data)
            return
        head = chain.head(head)
    await ex.send_head(head)
    keepalive = trip.cfg.stream_keepalive_s
    pinged = chain is not None and bool(keepalive) and is_event_stream(head.headers)
    out = _Out(trip, body, keepalive=pinged)
    try:
        if pinged:
            assert chain is not None
            with one_error():
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(out.keep_alive, chain, keepalive)
                    try:
                        await _pump(trip, answer, chain, out, origin)
                    finally:
                        await out.stop(nursery.cancel_scope)
        else:
            await _pump(trip, answer, chain, out, origin)
    except (UpstreamError, UpstreamTimeout) as exc:
        _settle(trip, chain, complete=False)
        if not ex.response_started:
            raise  # nothing reached the client: retried, failed over or answered
        await _mirror(
            trip, exc, chain, out.tail, framed=has_header(upstream.headers, b"content-length")
        )
        return
    except BaseException:
        _settle(trip, chain, complete=False)  # client gone: keep what was seen, flagged
        raise
    _settle(trip, chain, complete=True)
    await ex.end()


class _Out:
    """The client's side of a relay: what was written, and the one lock
    that keeps a keep-alive write from interleaving with the upstream's
    bytes (taken only when keep-alives are on)."""

    __slots__ = ("body", "kept", "last", "lock", "tail", "trip")

    def __init__(self, trip: Trip, body: RequestBody, *, keepalive: bool = False) -> None:
        self.trip = trip
        self.body = body
        self.kept = True  # the request body is kept for a retry until bytes reached the client
        self.tail = b"\n\n"  # the last bytes written: is the client at an SSE event boundary?
        # With keep-alives only: when the upstream last sent something, and
        # the lock that keeps a ping from interleaving with its bytes.
        self.last = trio.current_time() if keepalive else 0.0
        self.lock: trio.Lock | None = trio.Lock() if keepalive else None

    async def send(self, chunk: bytes) -> None:
        if self.lock is None:
            await self._write(chunk)
            return
        async with self.lock:
            await self._write(chunk)

    async def _write(self, chunk: bytes) -> None:
        record = self.trip.record
        await self.trip.ex.send_body(chunk)
        record.bytes_out += len(chunk)
        self.tail = chunk[-4:]
        if self.kept:
            self.body.forget()  # from here on it is never replayed: do not hold it
            self.kept = False
            record.time_to_first_byte_s = time.monotonic() - record.started_monotonic

    async def keep_alive(self, chain: Chain, every: float) -> None:
        """Until cancelled: after ``every`` seconds without upstream bytes,
        what the stages offer for the silence (a ping) goes to the client;
        then again after another ``every`` seconds of silence."""
        while True:
            await trio.sleep_until(self.last + every)
            if trio.current_time() < self.last + every:
                continue  # the upstream spoke meanwhile
            self.last = trio.current_time()
            if data := chain.idle():
                await self.send(data)

    async def stop(self, scope: trio.CancelScope) -> None:
        """Stop the keep-alives, never in the middle of one's write."""
        assert self.lock is not None
        with trio.CancelScope(shield=True):
            async with self.lock:
                scope.cancel()


async def _pump(trip: Trip, answer: Answer, chain: Chain | None, out: _Out, origin: object) -> None:
    """The upstream's bytes to the client as they come, through the stages."""
    idle = trip.cfg.timeouts.upstream_body_idle
    with trip.watchdog.guard(idle) as guard:
        pinged = out.lock is not None
        while (chunk := await answer.receive()) is not None:
            if pinged:
                out.last = trio.current_time()
            guard.disarm()  # a slow client is not an idle upstream
            if chain is not None:
                chunk = chain.feed(chunk)
                if not chunk:
                    guard.extend(idle)
                    continue
            await out.send(chunk)
            guard.extend(idle)
    if guard.expired:
        raise about_upstream(UpstreamTimeout, origin, f"sent nothing for {idle:g} s mid-response")
    if chain is not None and (rest := chain.end()):
        await out.send(rest)


async def _mirror(
    trip: Trip, exc: ProxyError, chain: Chain | None, tail: bytes, *, framed: bool
) -> None:
    """The upstream broke off after the client got bytes: end the client's
    response the same way (or, by choice, with an SSE error event)."""
    ex, record = trip.ex, trip.record
    record.error = f"upstream failed mid-response: {exc.detail}"
    record.forward_failed = True
    if chain is not None and (rest := chain.end()):
        await ex.send_body(rest)  # what the upstream did send, through the stages
        tail = rest[-4:]
    if record.stream and not framed and trip.cfg.stream_failure == "error_event":
        sep = b"" if tail.endswith(_BOUNDARIES) else b"\n\n"
        await ex.send_body(sep + sse_error_event("the upstream stream was interrupted"))
        await ex.end()
        return
    # Mirrored: the client's stream ends the way the upstream's did, so the
    # client retries exactly as it would going direct.
    await ex.abort()


async def _through_whole(trip: Trip, answer: Answer, chain: Chain, origin: object) -> bytes:
    """An answer a stage needs whole (a JSON answer restored whole, a
    demoted stream), fed to the chain as it arrives: the stages keep what
    they need, within their own caps. Nothing has reached the client yet,
    so a failure here (the upstream's, or a stream that cannot be rebuilt)
    is raised: retried, failed over or answered, never mirrored."""
    idle = trip.cfg.timeouts.upstream_body_idle
    out: list[bytes] = []
    with trip.watchdog.guard(idle) as guard:
        while (chunk := await answer.receive()) is not None:
            if data := chain.feed(chunk):
                out.append(data)
            guard.extend(idle)
    if guard.expired:
        raise about_upstream(UpstreamTimeout, origin, f"sent nothing for {idle:g} s mid-response")
    out.append(chain.end())
    return b"".join(out)


async def deliver(trip: Trip, head: ResponseHead, data: bytes) -> None:
    """A whole answer: with its exact length, in one write when it is small."""
    ex = trip.ex
    headers = [(n, v) for n, v in head.headers if n != b"content-length"]
    headers.append((b"content-length", str(len(data)).encode()))
    await ex.send_head(ResponseHead(head.status, headers, head.reason))
    if data and ex.head.method != b"HEAD":
        await ex.send_body(data)
        record = trip.record
        record.bytes_out += len(data)
        record.time_to_first_byte_s = time.monotonic() - record.started_monotonic
    await ex.end()


async def deliver_kept(trip: Trip, leg: Leg, head: ResponseHead, data: bytes) -> None:
    """An upstream's error answer that was held back while other providers
    were tried, verbatim (status, headers, body), through the stages of the
    leg that got it."""
    _note(trip, leg, head)
    out = ResponseHead(head.status, response_headers_for_client(head.headers), head.reason)
    chain = response_chain(trip, leg, head)
    if chain is not None:
        out = chain.head(out)
        data = chain.feed(data) + chain.end()
    await deliver(trip, out, data)


def _settle(trip: Trip, chain: Chain | None, *, complete: bool) -> None:
    """The answer is over: what its stages found (usage) goes to the record."""
    trip.record.usage.complete = complete
    if chain is not None:
        chain.settle(trip.record, complete=complete)
