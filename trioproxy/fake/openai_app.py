"""The fake Chat Completions API (OpenAI, DeepSeek, vLLM ... as trioproxy
sees them): ``POST .../chat/completions``, JSON or SSE, the same faults as
the Anthropic fake (x-fake-fault), for offline tests and the demo."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import orjson
import trio

from trioproxy.fake.app import FakeUpstream, json_answer
from trioproxy.fake.faults import FaultSyntaxError, parse_faults
from trioproxy.fake.openai import chat_chunks, chat_error, chat_json, chat_plan
from trioproxy.inbound.exchange import ClientExchange
from trioproxy.proto.events import Headers, ResponseHead

CHAT = b"/chat/completions"
ISSUED_KEPT = 4096  # tool call ids remembered
# OpenAI's own answer to a prompt over the model's context.
CONTEXT_OVERFLOW = orjson.dumps(
    {
        "error": {
            "message": "This model's maximum context length is 128000 tokens. However, your"
            " messages resulted in 130532 tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }
)


def unissued_call_ids(request: object, issued: Iterable[str]) -> list[str]:
    """The tool call ids a request's history names (assistant tool_calls,
    tool results) that are not among ``issued``."""
    known = set(issued)
    messages = request.get("messages") if isinstance(request, dict) else None
    named: list[str] = []
    for m in messages if isinstance(messages, list) else []:
        if not isinstance(m, dict):
            continue
        if m.get("role") == "tool":
            named.append(str(m.get("tool_call_id")))
        for c in m.get("tool_calls") or []:
            if isinstance(c, dict):
                named.append(str(c.get("id")))
    return [i for i in named if i not in known]


class OpenAIFake(FakeUpstream):
    def __init__(
        self,
        *,
        faults: bytes | None = None,
        tools: bool = True,
        call: tuple[str, dict[str, object]] | None = None,
    ) -> None:
        """``call``: answer the first turn with this tool call (name,
        arguments) when the request offers it, as a model would (an agent
        then runs it and asks again); otherwise as the Anthropic fake."""
        super().__init__(faults=faults, tools=tools, call=call)
        # Tool call ids this fake issued (the latest ISSUED_KEPT): a request
        # naming another one is refused, as a real provider refuses a
        # tool result for a call it never made.
        self.issued: deque[str] = deque(maxlen=ISSUED_KEPT)

    async def _route(self, ex: ClientExchange, body: bytes, rid: str) -> None:
        self.bodies.append(body)
        if not (ex.head.path.endswith(CHAT) and ex.head.method == b"POST"):
            await _answer(ex, 404, chat_error(404, "no such route (fake)"), rid)
            return
        try:
            raw = ex.head.header(b"x-fake-fault")
            if raw is None and self.script:
                raw = self.script.popleft()
            faults = parse_faults(raw if raw is not None else self.default_faults)
            request = orjson.loads(body)
        except (FaultSyntaxError, orjson.JSONDecodeError) as exc:
            await _answer(ex, 400, chat_error(400, f"bad request (fake): {exc}"), rid)
            return
        if faults.context_overflow:
            await _answer(ex, 400, CONTEXT_OVERFLOW, rid)
            return
        if faults.status is not None:
            extra: Headers = []
            if faults.status == 429:
                extra.append((b"retry-after", f"{faults.retry_after or 1:g}".encode()))
            await _answer(ex, faults.status, chat_error(faults.status, "fake failure"), rid, extra)
            return
        unknown = unissued_call_ids(request, self.issued)
        if unknown:
            message = f"Invalid parameter: tool_call_id {unknown[0]!r} was never issued (fake)"
            await _answer(ex, 400, chat_error(400, message), rid)
            return
        if faults.slow_headers and not request.get("stream"):
            await trio.sleep(faults.slow_headers)
        plan = chat_plan(
            request, body, parallel=faults.parallel_tools, tools_used=self.tools, call=self.call
        )
        self.issued.extend(c["id"] for c in plan.calls)
        if not request.get("stream"):
            await _answer(ex, 200, chat_json(plan), rid)
            return
        await ex.send_head(
            ResponseHead(
                200,
                [(b"content-type", b"text/event-stream"), (b"x-request-id", rid.encode())],
            )
        )
        for n, chunk in enumerate(chat_chunks(plan)):
            if faults.drop_after is not None and n == faults.drop_after:
                await ex.abort()
                return
            if faults.event_delay and n:
                await trio.sleep(faults.event_delay)
            await ex.send_body(chunk)
        await ex.end()


async def _answer(
    ex: ClientExchange, status: int, body: bytes, rid: str, extra: Headers | None = None
) -> None:
    await json_answer(ex, status, body, rid, extra, id_header=b"x-request-id")
