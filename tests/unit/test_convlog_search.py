"""The search text of a streamed answer, taken by one regular expression
from its bytes, reads as the text of the Message it rebuilds into."""

from __future__ import annotations

import orjson
import pytest

from trioproxy.convlog.search import (
    SEARCH_MAX,
    json_answer_text,
    search_text,
    streamed_answer_text,
)
from trioproxy.convlog.views import rebuilt
from trioproxy.fake.messages import plan_for, stream_events


def _event(name: str, doc: dict[str, object]) -> bytes:
    data = orjson.dumps({"type": name, **doc})
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def _delta(index: int, delta: dict[str, object]) -> bytes:
    return _event(
        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
    )


@pytest.mark.parametrize(
    "request_doc",
    [
        {"model": "m"},
        {"model": "m", "tools": [{"name": "t"}]},
        {"model": "m", "tools": [{"name": "t"}], "thinking": {"type": "enabled"}},
    ],
)
def test_a_streamed_answer_reads_as_its_message(request_doc: dict[str, object]) -> None:
    raw = b"".join(stream_events(plan_for(request_doc, b"{}")))
    message = rebuilt(raw, "req_1")
    assert message is not None
    text = streamed_answer_text(raw)
    assert text == json_answer_text(message) and "fake upstream" in text


def test_escapes_unicode_and_names_in_text_are_read_as_json_strings() -> None:
    raw = b"".join(
        [
            _event(
                "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
            ),
            _delta(0, {"type": "text_delta", "text": 'say "name": \\ ok\n'}),
            _delta(0, {"type": "text_delta", "text": "caf\u00e9 \u2603"}),
            _event(
                "content_block_start",
                {"index": 1, "content_block": {"type": "tool_use", "name": "grep", "input": {}}},
            ),
            _delta(1, {"type": "input_json_delta", "partial_json": '{"pattern": "\\"text\\":"}'}),
            _delta(1, {"type": "signature_delta", "signature": "not searchable"}),
        ]
    )
    assert streamed_answer_text(raw) == 'say "name": \\ ok\ncafé ☃\ngrep {"pattern": "\\"text\\":"}'


def test_anything_else_gives_what_it_finds_never_an_error() -> None:
    assert streamed_answer_text(b"") == ""
    assert streamed_answer_text(b'event: error\ndata: {"type":"error"}\n\n') == ""
    cut = _delta(0, {"type": "text_delta", "text": "whole"}) + b'data: {"text":"cut sho'
    assert streamed_answer_text(cut) == "whole"
    assert streamed_answer_text(b'data: {"text":"bad \x01 control"}\n\n') == ""


def test_the_text_is_bounded_however_long_the_answer() -> None:
    piece = _delta(0, {"type": "text_delta", "text": "x" * 1000})
    text = streamed_answer_text(piece * 500)  # 500,000 characters
    assert len(text) == SEARCH_MAX
    both = search_text(
        {"system": "s" * 50_000, "messages": [{"role": "user", "content": "q"}]}, text
    )
    assert both == "s" * SEARCH_MAX + "\nq\n" + "x" * SEARCH_MAX
