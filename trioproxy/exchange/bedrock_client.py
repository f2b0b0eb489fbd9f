"""The client's exchange as a Bedrock-format client sees it (bedrock/client.py
has the translations; foreign_client.py the two phases): its request a
Messages request; every answer, the proxy's own errors included, in
Bedrock's format."""

from __future__ import annotations

from trioproxy.bedrock.client import (
    EVENT_STREAM,
    BedrockTarget,
    SSEToEventStream,
    aws_error,
    count_answer,
    to_messages,
)
from trioproxy.bedrock.relay import FrameMemo
from trioproxy.exchange.foreign_client import COUNT_TOKENS, MESSAGES, ForeignClient, Translate
from trioproxy.inbound.exchange import ClientExchange
from trioproxy.proto.events import Headers, ResponseHead

UNSERVED = BedrockTarget("", "")


class BedrockClient(ForeignClient):
    def __init__(
        self, inner: ClientExchange, target: BedrockTarget = UNSERVED, *, unserved: str = ""
    ) -> None:
        super().__init__(inner, unserved=unserved)
        self.target = target
        self.frames = FrameMemo()  # a Bedrock provider's frames, to pass on as they came

    def translate(self, raw: bytes) -> tuple[bytes, bytes, list[str]]:
        body, betas = to_messages(raw, self.target)
        path = COUNT_TOKENS if self.target.action == "count-tokens" else MESSAGES
        return path, body, betas

    def whole(self, head: ResponseHead) -> bool:
        return head.status >= 400 or self.target.action == "count-tokens"

    def streamed(self, head: ResponseHead) -> tuple[ResponseHead, Translate] | None:
        if head.status != 200 or not (head.header(b"content-type") or b"").startswith(
            b"text/event-stream"
        ):
            return None  # a Message: Bedrock's JSON is Anthropic's
        drop = (b"content-type", b"content-length")
        headers = [(n, v) for n, v in head.headers if n not in drop]
        headers.append((b"content-type", EVENT_STREAM))
        return ResponseHead(200, headers, head.reason), SSEToEventStream(self.frames).feed

    def finish(self, head: ResponseHead, body: bytes) -> tuple[int, Headers, bytes]:
        counted = count_answer(body) if head.status == 200 else None
        if counted is not None:
            return 200, [], counted
        status, name, out = aws_error(head.status, body)
        return status, [(b"x-amzn-errortype", f"{name}:".encode())], out
