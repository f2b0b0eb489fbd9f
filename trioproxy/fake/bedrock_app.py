"""The fake Amazon Bedrock runtime (``trioproxy fake-upstream --bedrock``):
InvokeModel, InvokeModelWithResponseStream and CountTokens for Claude, as
Bedrock serves them, offline.

It checks what Bedrock checks: the SigV4 signature (fake/sigv4.py: the
credentials it issued, the region, the clock), the body's
``anthropic_version``, no ``model`` or ``stream`` in the body, and none of
the fields and betas Bedrock rejects (it answers 400 as Bedrock does). It
answers with the Anthropic fake's Messages, a stream as real event-stream
frames (each event base64 in a ``chunk``), and carries the same faults
(``x-fake-fault``) in Bedrock's terms: throttling, unavailability, a slow
first event, a cut or an exception mid-stream.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
from collections import deque
from typing import Any
from urllib.parse import unquote

import orjson
import trio

from trioproxy.bedrock.request import ANTHROPIC_VERSION, BEDROCK_BRIDGE, SIGNING_NAME
from trioproxy.fake.app import FakeUpstream, send_paced
from trioproxy.fake.faults import Faults, FaultSyntaxError
from trioproxy.fake.messages import message_json, plan_for, stream_events, with_call
from trioproxy.fake.sigv4 import verify
from trioproxy.inbound.exchange import ClientExchange, respond
from trioproxy.proto.events import Headers, ResponseHead
from trioproxy.proto.eventstream import encode_message
from trioproxy.proto.sse import SSEParser

FAKE_REGION = "us-east-1"
_CHUNK = {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}
_ACTIONS = ("invoke", "invoke-with-response-stream", "count-tokens")


class BedrockFake(FakeUpstream):
    def __init__(
        self,
        *,
        faults: bytes | None = None,
        tools: bool = True,
        region: str = FAKE_REGION,
        call: tuple[str, dict[str, Any]] | None = None,
    ) -> None:
        """``call``: answer a first turn with this tool call when the
        request offers the tool (an agent then runs it and asks again)."""
        super().__init__(faults=faults, tools=tools, call=call)
        self.region = region
        self.refused: deque[str] = deque(maxlen=100)  # why requests were refused
        self.frames: list[bytes] = []  # the last stream's frames, its error frame last
        self.signed_by: deque[str] = deque(maxlen=1000)  # the access key of each request

    async def _route(self, ex: ClientExchange, body: bytes, rid: str) -> None:
        self.bodies.append(body)
        head = ex.head
        headers: dict[str, str] = {}
        for n, v in head.headers:
            headers.setdefault(n.decode("latin-1"), v.decode("latin-1"))
        headers.setdefault("host", head.authority.decode("latin-1"))
        refusal = verify(
            head.method.decode(),
            head.target.decode("latin-1"),
            headers,
            body,
            region=self.region,
            service=SIGNING_NAME,
        )
        if refusal is not None:
            await self._refuse(ex, refusal.status, refusal.errortype, refusal.message, rid)
            return
        self.signed_by.append(headers["authorization"].split("Credential=", 1)[1].split("/")[0])
        parts = head.path.decode("latin-1").split("/")
        if len(parts) != 4 or parts[1] != "model" or parts[3] not in _ACTIONS:
            await self._refuse(ex, 404, "UnknownOperationException", "Unknown operation", rid)
            return
        if head.method != b"POST":
            await self._refuse(ex, 405, "UnknownOperationException", "Method not allowed", rid)
            return
        model, action = unquote(parts[2]), parts[3]
        try:
            faults = self.faults_for(ex.head.header(b"x-fake-fault"))
        except FaultSyntaxError as exc:
            await self._refuse(ex, 400, "ValidationException", str(exc), rid)
            return
        if action == "count-tokens":
            await self._count(ex, body, rid)
            return
        problem, doc = invoke_problem(body)
        if problem:
            self.refused.append(problem)
            await self._refuse(ex, 400, "ValidationException", problem, rid)
            return
        if faults.hang_up:
            await ex.abort()
            return
        if faults.status is not None:
            await self._bedrock_fault(ex, faults.status, rid)
            return
        request = {**doc, "model": model}
        plan = plan_for(
            request,
            body,
            text_bytes=faults.text_bytes,
            tools=self.tools,
            max_tokens_cut=faults.max_tokens_cut,
        )
        plan = with_call(plan, request, self.call)
        if action == "invoke":
            if faults.slow_headers:
                await trio.sleep(faults.slow_headers)
            await _json(ex, 200, message_json(plan), rid)
            return
        await self._stream(ex, stream_events(plan, delta_chars=faults.delta_chars), faults, rid)

    async def _count(self, ex: ClientExchange, body: bytes, rid: str) -> None:
        try:
            wrapped = orjson.loads(body)
            inner = base64.b64decode(wrapped["input"]["invokeModel"]["body"], validate=True)
        except (orjson.JSONDecodeError, KeyError, TypeError, binascii.Error):
            await self._refuse(ex, 400, "ValidationException", "input.invokeModel.body", rid)
            return
        problem, _ = invoke_problem(inner)
        if problem:
            self.refused.append(problem)
            await self._refuse(ex, 400, "ValidationException", problem, rid)
            return
        await _json(ex, 200, orjson.dumps({"inputTokens": max(1, len(inner) // 4)}), rid)

    async def _bedrock_fault(self, ex: ClientExchange, status: int, rid: str) -> None:
        if status == 429:
            await self._refuse(
                ex, 429, "ThrottlingException", "Too many requests, please wait (fake).", rid
            )
        elif status >= 500:
            await self._refuse(
                ex, 503, "ServiceUnavailableException", "Bedrock is unavailable (fake).", rid
            )
        else:
            await self._refuse(ex, status, "ValidationException", f"fake {status}", rid)

    async def _stream(
        self, ex: ClientExchange, events: list[bytes], faults: Faults, rid: str
    ) -> None:
        await ex.send_head(
            ResponseHead(
                200,
                [
                    (b"content-type", b"application/vnd.amazon.eventstream"),
                    (b"x-amzn-requestid", rid.encode()),
                    (b"x-amzn-bedrock-content-type", b"application/json"),
                ],
            )
        )
        if faults.slow_headers:
            await trio.sleep(faults.slow_headers)  # a slow first event
        throttled = encode_message(
            {":message-type": "exception", ":exception-type": "throttlingException"},
            b'{"message":"Too many tokens, please wait before trying again (fake)."}',
        )
        frames = [f for f in (chunk_frame(e) for e in events) if f]
        self.frames = [*frames, throttled]
        await send_paced(ex, frames, faults, throttled)

    async def _refuse(
        self, ex: ClientExchange, status: int, errortype: str, message: str, rid: str
    ) -> None:
        body = orjson.dumps({"message": message})
        await _json(ex, status, body, rid, [(b"x-amzn-errortype", f"{errortype}:".encode())])


def invoke_problem(body: bytes) -> tuple[str, dict[str, Any]]:
    """Why Bedrock would refuse this InvokeModel body ("" if it would not)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "Malformed input request: the body is not JSON", {}
    if not isinstance(doc, dict):
        return "Malformed input request: expected an object", {}
    if doc.get("anthropic_version") != ANTHROPIC_VERSION:
        return f"Malformed input request: anthropic_version must be {ANTHROPIC_VERSION}", doc
    for key in ("model", "stream"):
        if key in doc:
            return f"Malformed input request: extraneous key [{key}] is not permitted", doc
    rejected = bridge_rejects(doc, [str(b) for b in doc.get("anthropic_beta") or []])
    if rejected is not None and rejected[0] == "field":
        return f"Malformed input request: extraneous key [{rejected[1]}] is not permitted", doc
    if rejected is not None:
        return f"invalid beta flag: {rejected[1]}", doc
    return "", doc


def bridge_rejects(doc: dict[str, Any], betas: list[str]) -> tuple[str, str] | None:
    """("field", name) or ("beta", value): the first thing of the request
    that the clouds reject (``BEDROCK_BRIDGE``), as both fakes check it."""
    for bridge in BEDROCK_BRIDGE:
        name = bridge.field
        if name.startswith("tools[]."):
            field = name.split(".", 1)[1]
            if any(isinstance(t, dict) and field in t for t in doc.get("tools") or []):
                return "field", field
        elif name and name in doc:
            return "field", name
    for beta in betas:
        if any(fnmatch.fnmatchcase(beta, g) for b in BEDROCK_BRIDGE for g in b.betas):
            return "beta", beta
    return None


def chunk_frame(sse_event: bytes) -> bytes:
    """One of the Anthropic fake's SSE events as Bedrock's chunk frame
    (b"" for a ping: Bedrock sends none)."""
    (ev,) = SSEParser().feed(sse_event)
    if ev.event == b"ping":
        return b""
    payload = {
        "bytes": base64.b64encode(ev.data).decode(),
        "p": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP"[: len(ev.data) % 40],
    }
    return encode_message(_CHUNK, orjson.dumps(payload))


async def _json(
    ex: ClientExchange, status: int, body: bytes, rid: str, extra: Headers | None = None
) -> None:
    headers: Headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-amzn-requestid", rid.encode()),
        *(extra or []),
    ]
    await respond(ex, ResponseHead(status, headers), body)
