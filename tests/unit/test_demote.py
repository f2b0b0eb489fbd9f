"""Demotion's sans-IO core: the byte-level body edit, and the stream rebuilt
into a Message from byte transcripts, however the bytes are split."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trioproxy.fake.messages import message_json, plan_for, stream_events
from trioproxy.rules.demote import DemoteFailed, MessageAssembler, streaming_body


def edit(body: bytes) -> bytes | None:
    return streaming_body(body, orjson.loads(body))


@pytest.mark.parametrize(
    ("body", "want"),
    [
        (b'{"model":"m"}', b'{"stream":true,"model":"m"}'),
        (b' { "model" : "m" }', b' {"stream":true, "model" : "m" }'),
        (b"{}", b'{"stream":true}'),
        (b'{"stream": false, "model":"m"}', b'{"stream": true, "model":"m"}'),
        (b'{"model":"m","stream":null}', b'{"model":"m","stream":true}'),
        # a nested "stream" and a string that looks like the key stay as they are
        (
            b'{"metadata":{"stream":false},"system":"\\"stream\\": false","stream":false}',
            b'{"metadata":{"stream":false},"system":"\\"stream\\": false","stream":true}',
        ),
        (b'{"stream":true}', None),
        (b'{"stream":"yes"}', None),
    ],
)
def test_the_body_edit_touches_one_top_level_value(body: bytes, want: bytes | None) -> None:
    got = edit(body)
    assert got == want
    if got is not None:
        assert orjson.loads(got)["stream"] is True


def events_for(request: dict[str, object]) -> tuple[bytes, bytes]:
    raw = orjson.dumps(request)
    plan = plan_for(request, raw)
    return b"".join(stream_events(plan, delta_chars=5)), message_json(plan)


REQUEST = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 100,
    "thinking": {"type": "enabled", "budget_tokens": 1000},
    "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
    "messages": [{"role": "user", "content": "hi"}],
}


@given(st.lists(st.integers(min_value=1, max_value=300), max_size=40))
def test_any_split_of_the_stream_gives_the_same_message(cuts: list[int]) -> None:
    stream, want = events_for(REQUEST)
    asm = MessageAssembler()
    at = 0
    for n in cuts:
        asm.feed(stream[at : at + n])
        at += n
    asm.feed(stream[at:])
    status, body = asm.result()
    assert status == 200 and orjson.loads(body) == orjson.loads(want)


def sse(event: str, data: object) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def start(content: list[object] | None = None) -> bytes:
    return sse(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "m",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 10, "output_tokens": 1},
            },
        },
    )


END = sse(
    "message_delta",
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 7, "server_tool_use": {"web_search_requests": 1}},
    },
) + sse("message_stop", {"type": "message_stop"})


def block(index: int, content_block: object, *deltas: object) -> bytes:
    out = sse(
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": content_block},
    )
    for d in deltas:
        out += sse(
            "content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}
        )
    return out + sse("content_block_stop", {"type": "content_block_stop", "index": index})


def rebuild(stream: bytes) -> dict[str, object]:
    asm = MessageAssembler(request_id="req_1")
    asm.feed(stream)
    status, body = asm.result()
    assert status == 200
    return dict(orjson.loads(body))


def test_citations_server_tools_and_a_big_integer_tool_input() -> None:
    big = "123456789012345678901234567890"
    stream = (
        start()
        + block(
            0,
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
            {"type": "input_json_delta", "partial_json": '{"query": "tr'},
            {"type": "input_json_delta", "partial_json": 'io"}'},
        )
        + block(
            1,
            {
                "type": "web_search_tool_result",
                "tool_use_id": "srvtoolu_1",
                "content": [{"url": "u"}],
            },
        )
        + block(
            2,
            {"type": "text", "text": ""},
            {"type": "text_delta", "text": "Trio is "},
            {
                "type": "citations_delta",
                "citation": {"type": "web_search_result_location", "url": "u"},
            },
            {"type": "text_delta", "text": "structured."},
        )
        + block(
            3,
            {"type": "tool_use", "id": "toolu_1", "name": "calc", "input": {}},
            {"type": "input_json_delta", "partial_json": '{"n": ' + big[:10]},
            {"type": "input_json_delta", "partial_json": big[10:] + "}"},
        )
        + block(4, {"type": "redacted_thinking", "data": "abc"})
        + END
    )
    asm = MessageAssembler()
    asm.feed(stream)
    _, raw = asm.result()
    assert f'"input":{{"n": {big}}}'.encode() in raw  # spliced, never re-encoded
    doc = rebuild(stream)
    content = doc["content"]
    assert isinstance(content, list)
    assert content[0]["input"] == {"query": "trio"}
    assert content[1]["content"] == [{"url": "u"}]
    assert content[2] == {
        "type": "text",
        "text": "Trio is structured.",
        "citations": [{"type": "web_search_result_location", "url": "u"}],
    }
    assert content[4] == {"type": "redacted_thinking", "data": "abc"}
    assert doc["usage"] == {
        "input_tokens": 10,
        "output_tokens": 7,
        "server_tool_use": {"web_search_requests": 1},
    }
    assert doc["stop_reason"] == "end_turn"


def test_an_error_event_becomes_the_error_answer() -> None:
    asm = MessageAssembler(request_id="req_9")
    asm.feed(
        start()
        + sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
    )
    status, body = asm.result()
    assert status == 529
    assert orjson.loads(body) == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "busy"},
        "request_id": "req_9",
    }


@pytest.mark.parametrize(
    ("stream", "says"),
    [
        (start() + block(0, {"type": "text", "text": ""}), "before message_stop"),
        (start() + sse("brand_new_event", {"type": "brand_new_event"}) + END, "unknown event type"),
        (
            start()
            + block(0, {"type": "text", "text": ""}, {"type": "sparkle_delta", "x": 1})
            + END,
            "unknown delta type",
        ),
        (
            start()
            + block(
                0,
                {"type": "tool_use", "id": "t", "name": "n", "input": {}},
                {"type": "input_json_delta", "partial_json": '{"a": '},
            )
            + END,
            "not JSON",
        ),
    ],
)
def test_what_cannot_be_placed_fails_loudly(stream: bytes, says: str) -> None:
    asm = MessageAssembler()
    with pytest.raises(DemoteFailed, match=says):
        asm.feed(stream)
        asm.result()


# -- keep-alive pings: never inside an event -----------------------------------------
@given(
    st.lists(st.integers(min_value=1, max_value=200), max_size=60),
    st.lists(st.booleans(), max_size=60),
)
def test_pings_land_only_between_events(cuts: list[int], silences: list[bool]) -> None:
    """The upstream's bytes split anywhere, with a silence (idle()) after
    any piece: the client's stream parses to the upstream's events, in
    order and intact, with pings only between them."""
    from types import SimpleNamespace

    from trioproxy.exchange.answer_stages import PING, PingStage
    from trioproxy.exchange.stage import Chain
    from trioproxy.proto.sse import SSEParser

    stream, _ = events_for(REQUEST)
    trip = SimpleNamespace(record=SimpleNamespace(pings=0))
    chain = Chain([PingStage(trip)])  # type: ignore[arg-type]
    out = bytearray(chain.idle())  # before anything: at a boundary
    at = 0
    for i, n in enumerate([*cuts, len(stream)]):
        out += chain.feed(stream[at : at + n])
        at += n
        if i < len(silences) and silences[i]:
            out += chain.idle()
    # The client's bytes are the upstream's with whole ping events put in
    # (the API's own ping in this stream is spelled without a space).
    assert bytes(out).replace(PING, b"") == stream
    assert bytes(out).count(PING) == trip.record.pings
    got = SSEParser().feed(bytes(out))
    want = SSEParser().feed(stream)
    ours = [e for e in got if e.data == b'{"type": "ping"}']
    assert len(ours) == trip.record.pings  # each one parses as an event of its own
    assert [e for e in got if e not in ours] == want  # the upstream's, intact, in order
