"""The answer side of a client of another format, without sockets: what
reaches the client when the upstream's answer cannot be translated whole."""

from __future__ import annotations

import orjson

from trioproxy.bedrock.client import BedrockTarget
from trioproxy.exchange import foreign_client
from trioproxy.exchange.bedrock_client import BedrockClient
from trioproxy.exchange.openai_client import OpenAIClient
from trioproxy.proto.events import RequestHead, ResponseHead

JSON = [(b"content-type", b"application/json")]


class Client:
    """Just enough of a ClientExchange for the answer side: what was sent."""

    def __init__(self) -> None:
        self.head = RequestHead(b"POST", b"/v1/chat/completions", [], b"1.1", b"x", b"http")
        self.request_id = "req_test"
        self.protocol = "http/1.1"
        self.response_started = False
        self.sent: list[ResponseHead | bytes] = []

    async def send_head(self, head: ResponseHead) -> None:
        self.response_started = True
        self.sent.append(head)

    async def send_body(self, data: bytes) -> None:
        self.sent.append(data)

    async def end(self) -> None:
        pass


async def answer(ex: foreign_client.ForeignClient, head: ResponseHead, *parts: bytes) -> None:
    await ex.send_head(head)
    for p in parts:
        await ex.send_body(p)
    await ex.end()


async def test_a_200_no_chat_client_can_read_is_a_502_in_openai_s_shape() -> None:
    # An integer over 64 bits (orjson writes none), content not a list, no object.
    big = b'{"type":"message","id":"msg_1","usage":{"input_tokens":' + b"9" * 30 + b"}}"
    for unreadable in (big, b'{"type":"message","content":"not a list"}', b"[1]"):
        inner = Client()
        ex = OpenAIClient(inner)  # type: ignore[arg-type]
        await answer(ex, ResponseHead(200, JSON), unreadable)
        head, body = inner.sent
        assert isinstance(head, ResponseHead) and head.status == 502
        assert isinstance(body, bytes) and orjson.loads(body)["error"]["type"] == "server_error"


async def test_an_answer_over_the_cap_is_an_error_never_a_truncated_one(monkeypatch) -> None:
    monkeypatch.setattr(foreign_client, "WHOLE_MAX", 100)
    inner = Client()
    ex = BedrockClient(inner, BedrockTarget("claude-opus-5-5", "count-tokens"))  # type: ignore[arg-type]
    await answer(ex, ResponseHead(200, JSON), b'{"input_tokens":' + b" " * 120, b"5}")
    head, body = inner.sent
    assert isinstance(head, ResponseHead) and head.status == 500
    assert head.header(b"x-amzn-errortype") == b"InternalServerException:"
    assert isinstance(body, bytes) and "100 bytes" in orjson.loads(body)["message"]
    # Within the cap, the same answer translates.
    inner = Client()
    ex = BedrockClient(inner, BedrockTarget("claude-opus-5-5", "count-tokens"))  # type: ignore[arg-type]
    await answer(ex, ResponseHead(200, JSON), b'{"input_tokens":', b"5}")
    assert orjson.loads(inner.sent[1]) == {"inputTokens": 5}  # type: ignore[arg-type]
