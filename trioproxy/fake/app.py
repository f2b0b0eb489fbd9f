"""The fake upstream application (a ``ClientExchange`` handler)."""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson
import trio

from trioproxy.errors import ClientGone
from trioproxy.fake.faults import Faults, FaultSyntaxError, parse_faults
from trioproxy.fake.messages import (
    error_json,
    message_json,
    models_json,
    plan_for,
    sse,
    stream_events,
    with_call,
)
from trioproxy.inbound.exchange import ClientExchange, respond
from trioproxy.proto.events import Headers, ResponseHead

MAX_BODY = 64 * 1024 * 1024  # bytes the fake accepts in one request
RECORDS = 1000  # requests remembered for tests to inspect
KEEP_BODY = 4 * 1024 * 1024  # bytes of the last body kept verbatim


@dataclass(frozen=True, slots=True)
class Seen:
    """A request as it reached the fake upstream."""

    method: bytes
    target: bytes
    headers: Headers
    protocol: str
    body_len: int
    body_sha256: str
    stream: bool  # a Messages request that asked for SSE


CLIENT_ERRORS = {
    400: (
        "invalid_request_error",
        "messages.1.content.0: Invalid signature in thinking block (fake)",
    ),
    401: ("authentication_error", "invalid x-api-key (fake)"),
    403: ("permission_error", "Your API key does not have permission (fake)"),
    404: ("not_found_error", "model: not found (fake)"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes (fake)"),
}


class FakeUpstream:
    def __init__(
        self,
        *,
        faults: bytes | None = None,
        tools: bool = True,
        call: tuple[str, dict[str, Any]] | None = None,
    ) -> None:
        """``faults``: the x-fake-fault applied to every /v1/messages request
        that carries none (a provider that is down, say). ``script`` holds
        faults for the next requests, one each, before that default.
        ``tools``: answer with a call of the request's first tool; an agent
        such as Claude Code would then run it and ask again, forever.
        ``call``: answer a first turn with this tool call (a name and its
        input) when the request offers it, once (messages.with_call)."""
        self.default_faults = faults
        self.call = call
        self.tools = tools
        self.script: deque[bytes] = deque()
        self.seen: deque[Seen] = deque(maxlen=RECORDS)
        self.last_body = b""
        self.bodies: deque[bytes] = deque(maxlen=100)  # what _route got, for tests
        self.requests = 0
        self.cancelled = 0  # exchanges the peer abandoned (reset stream, closed connection)
        self.bytes_sent = 0  # body bytes /bytes/N handed to the transport so far
        self._changed = trio.Event()
        self._ids = 0

    async def wait_for(self, predicate: Any) -> None:
        """For tests: wait until ``predicate(self)`` holds (the caller bounds it)."""
        while not predicate(self):
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def faults_for(self, header: bytes | None) -> Faults:
        """The request's own x-fake-fault, else the next scripted one, else
        the default (raises FaultSyntaxError)."""
        if header is None and self.script:
            header = self.script.popleft()
        return parse_faults(header if header is not None else self.default_faults)

    def _request_id(self) -> str:
        self._ids += 1
        return f"req_fake_{self._ids:06d}"

    async def __call__(self, ex: ClientExchange) -> None:
        self.requests += 1
        rid = self._request_id()
        try:
            body = await self._read_body(ex)
            head = ex.head
            self.seen.append(
                Seen(
                    head.method,
                    head.target,
                    list(head.headers),
                    ex.protocol,
                    len(body),
                    hashlib.sha256(body).hexdigest(),
                    b'"stream":true' in body.replace(b" ", b""),
                )
            )
            self.last_body = body[:KEEP_BODY]
            self._notify()
            await self._route(ex, body, rid)
        except (trio.Cancelled, ClientGone):  # reset, closed, or closed mid-body
            self.cancelled += 1
            self._notify()
            raise

    async def _read_body(self, ex: ClientExchange) -> bytes:
        parts: list[bytes] = []
        total = 0
        while (chunk := await ex.receive_body()) is not None:
            total += len(chunk.data)
            if total <= MAX_BODY:
                parts.append(chunk.data)
            ex.ack(chunk.flow_controlled_length)
        ex.watch_disconnect()  # like the real API: notice a caller that hangs up
        return b"".join(parts)

    async def _route(self, ex: ClientExchange, body: bytes, rid: str) -> None:
        self.bodies.append(body)
        method, path = ex.head.method, ex.head.path
        if path == b"/v1/messages" and method == b"POST":
            await self._messages(ex, body, rid)
        elif path == b"/v1/messages/count_tokens" and method == b"POST":
            await json_answer(ex, 200, orjson.dumps({"input_tokens": max(1, len(body) // 4)}), rid)
        elif path == b"/v1/models" and method == b"GET":
            await json_answer(ex, 200, models_json(), rid)
        elif path == b"/api/hello" and method in (b"GET", b"HEAD"):
            await json_answer(ex, 200, orjson.dumps({"message": "hello"}), rid)
        elif path.startswith(b"/echo"):
            await self._echo(ex, body, rid)
        elif path.startswith(b"/bytes/") and method == b"GET":
            await self._bytes(ex, path, rid)
        else:
            await json_answer(
                ex,
                404,
                error_json("not_found_error", f"Not found: {path.decode('latin-1')}", rid),
                rid,
            )

    async def _echo(self, ex: ClientExchange, body: bytes, rid: str) -> None:
        """The request as received: head in headers, body verbatim."""
        head = ex.head
        hdrs = orjson.dumps([[k.decode("latin-1"), v.decode("latin-1")] for k, v in head.headers])
        await respond(
            ex,
            ResponseHead(
                200,
                [
                    (b"content-type", b"application/octet-stream"),
                    (b"content-length", str(len(body)).encode()),
                    (b"request-id", rid.encode()),
                    (b"x-echo-method", head.method),
                    (b"x-echo-target", head.target),
                    (b"x-echo-protocol", ex.protocol.encode()),
                    (b"x-echo-authority", head.authority),
                    (b"x-echo-headers", hdrs),
                ],
            ),
            body,
        )

    async def _bytes(self, ex: ClientExchange, path: bytes, rid: str) -> None:
        """GET /bytes/N: N bytes of zeros in 64 KiB chunks, fast (backpressure tests)."""
        try:
            total = int(path.rsplit(b"/", 1)[1])
        except ValueError:
            await json_answer(ex, 400, error_json("invalid_request_error", "bad size", rid), rid)
            return
        await ex.send_head(
            ResponseHead(
                200,
                [
                    (b"content-type", b"application/octet-stream"),
                    (b"content-length", str(total).encode()),
                ],
            )
        )
        chunk = bytes(64 * 1024)
        left = total
        while left > 0:
            piece = chunk if left >= len(chunk) else chunk[:left]
            await ex.send_body(piece)
            left -= len(piece)
            self.bytes_sent += len(piece)
            self._notify()
        await ex.end()

    async def _messages(self, ex: ClientExchange, body: bytes, rid: str) -> None:
        try:
            faults = self.faults_for(ex.head.header(b"x-fake-fault"))
        except FaultSyntaxError as exc:
            await json_answer(ex, 400, error_json("invalid_request_error", str(exc), rid), rid)
            return
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            await json_answer(
                ex,
                400,
                error_json("invalid_request_error", "request body is not valid JSON", rid),
                rid,
            )
            return
        if not isinstance(request, dict) or "messages" not in request or "model" not in request:
            await json_answer(
                ex,
                400,
                error_json("invalid_request_error", "model and messages are required", rid),
                rid,
            )
            return
        streaming = request.get("stream") is True
        if faults.slow_headers and not streaming:
            await trio.sleep(faults.slow_headers)
        if faults.hang_up:
            await ex.abort()
            return
        if faults.status is not None:
            await self._status_fault(ex, faults, rid)
            return
        plan = plan_for(
            request,
            body,
            text_bytes=faults.text_bytes,
            tools=self.tools,
            max_tokens_cut=faults.max_tokens_cut,
        )
        plan = with_call(plan, request, self.call)
        if not request.get("stream"):
            if faults.error_after is not None:  # overloaded during generation: the API's 529
                await json_answer(
                    ex,
                    529,
                    error_json("overloaded_error", "Overloaded (fake, mid-stream)", rid),
                    rid,
                    [(b"x-should-retry", b"true")],
                )
                return
            doc = message_json(plan)
            limits: Headers = [(b"anthropic-ratelimit-requests-limit", b"4000")]
            if faults.drop_after is not None:  # half the JSON body, then abort
                await ex.send_head(
                    ResponseHead(
                        200,
                        [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(doc)).encode()),
                        ],
                    )
                )
                await ex.send_body(doc[: len(doc) // 2])
                await ex.abort()
                return
            await json_answer(ex, 200, doc, rid, limits)
            return
        await self._stream(ex, stream_events(plan, delta_chars=faults.delta_chars), faults, rid)

    async def _status_fault(self, ex: ClientExchange, faults: Faults, rid: str) -> None:
        status = faults.status or 500
        extra: Headers = []
        retry_after = faults.retry_after
        if status == 429:
            kind, msg = "rate_limit_error", "Number of requests has exceeded your rate limit (fake)"
            if retry_after is None and not faults.no_retry_after:
                retry_after = 1.0
        elif status == 529:
            kind, msg = "overloaded_error", "Overloaded (fake)"
            extra.append((b"x-should-retry", b"true"))
        elif status in CLIENT_ERRORS:
            kind, msg = CLIENT_ERRORS[status]
        else:
            kind, msg = "api_error", f"Internal server error (fake {status})"
            extra.append((b"x-should-retry", b"true"))
        if retry_after is not None:
            extra.append((b"retry-after", f"{retry_after:g}".encode()))
        await json_answer(ex, status, error_json(kind, msg, rid), rid, extra)

    async def _stream(
        self, ex: ClientExchange, events: list[bytes], faults: Faults, rid: str
    ) -> None:
        await ex.send_head(
            ResponseHead(
                200,
                [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    (b"request-id", rid.encode()),
                    (b"anthropic-ratelimit-requests-limit", b"4000"),
                ],
            )
        )
        if faults.slow_headers:
            # A stream's head comes at once, as the API sends it; what is
            # slow is the first event (a long prefill, a long think).
            await trio.sleep(faults.slow_headers)
        overloaded = {"type": "overloaded_error", "message": "Overloaded (fake, mid-stream)"}
        await send_paced(ex, events, faults, sse("error", {"type": "error", "error": overloaded}))


async def send_paced(ex: ClientExchange, items: list[bytes], faults: Faults, error: bytes) -> None:
    """A stream's items, one write each, as the faults say: cut after
    ``drop_after`` items, ``error`` (then the end) after ``error_after``,
    silence after ``stall_after``, ``event_delay`` between items. Every
    fake streams through here, each with its own items and error."""
    for n, item in enumerate(items):
        if faults.drop_after is not None and n == faults.drop_after:
            await ex.abort()
            return
        if faults.error_after is not None and n == faults.error_after:
            await ex.send_body(error)
            await ex.end()
            return
        if faults.stall_after is not None and n == faults.stall_after:
            await trio.sleep_forever()
        if faults.event_delay and n:
            await trio.sleep(faults.event_delay)
        await ex.send_body(item)
    await ex.end()


async def json_answer(
    ex: ClientExchange,
    status: int,
    body: bytes,
    rid: str,
    extra: Headers | None = None,
    *,
    id_header: bytes = b"request-id",
) -> None:
    """A JSON answer with its request id (Anthropic says ``request-id``,
    OpenAI ``x-request-id``)."""
    headers: Headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (id_header, rid.encode()),
        *(extra or []),
    ]
    await respond(ex, ResponseHead(status, headers), body)
