"""Chat Completions SSE chunks as Anthropic's SSE events, translated as
they arrive (pure).

Each ``data:`` chunk gives what it can at once: the first one a
``message_start``; text deltas a text block (started on the first); each
tool call its own ``tool_use`` block, its argument fragments as
``input_json_delta``; the finish reason and the usage (the last chunk with
``stream_options.include_usage``) a ``message_delta``; ``[DONE]`` the
``message_stop``. Blocks are sequential, as Anthropic's are, while a
provider may interleave the argument fragments of parallel calls: so the
first call streams live, and a call that starts while another's block is
open is held (its fragments gathered) and given whole, in call order, when
that block closes (at the finish, or when text follows). A fragment for a
call whose block was already given (text came between) is an error rather
than a misplaced argument.
"""

from __future__ import annotations

from typing import Any

import orjson

from trioproxy.openai.answer import STOP_REASONS, message_id, usage_of
from trioproxy.proto.sse import SSEParser


class StreamError(ValueError):
    """The provider's stream cannot be translated (the relay cuts it)."""


def event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class ChatStreamTranslator:
    def __init__(self, model: str = "") -> None:
        self._sse = SSEParser()
        self._model = model
        self._started = False
        self._ended = False
        self._index = -1  # the open block (-1: none)
        self._open = False
        self._kind = ""  # "text" or "tool"
        self._tools: dict[int, int] = {}  # tool call index -> block index
        self._held: dict[int, tuple[dict[str, Any], list[str]]] = {}  # index -> (block, fragments)
        self._stop: str | None = None
        self._usage: dict[str, int] | None = None

    @property
    def done(self) -> bool:
        return self._ended

    def feed(self, chunk: bytes) -> bytes:
        out: list[bytes] = []
        for ev in self._sse.feed(chunk):
            data = ev.data.strip()
            if not data:
                continue
            if data == b"[DONE]":
                out.append(self._finish())
                continue
            try:
                doc = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise StreamError("a chunk is not JSON") from None
            if isinstance(doc, dict) and "error" in doc:
                out.append(self._error(doc["error"]))
                continue
            if not isinstance(doc, dict):
                raise StreamError("a chunk is not an object")
            out.append(self._chunk(doc))
        return b"".join(out)

    def end(self) -> bytes:
        """The stream's end: a finish without ``[DONE]`` is finished here;
        one without a finish reason was cut."""
        if self._ended:
            return b""
        if self._stop is None:
            raise StreamError("the provider's stream ended before its finish reason")
        return self._finish()

    # -- pieces ------------------------------------------------------------------
    def _chunk(self, doc: dict[str, Any]) -> bytes:
        out: list[bytes] = []
        if not self._started:
            self._started = True
            out.append(
                event(
                    "message_start",
                    {
                        "type": "message_start",
                        "message": {
                            "id": message_id(doc.get("id")),
                            "type": "message",
                            "role": "assistant",
                            "model": doc.get("model") or self._model,
                            "content": [],
                            "stop_reason": None,
                            "stop_sequence": None,
                            "usage": usage_of(None),
                        },
                    },
                )
            )
        if doc.get("usage"):
            self._usage = usage_of(doc["usage"])
        for choice in doc.get("choices") or []:
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                if not (self._open and self._kind == "text"):
                    out.append(self._start({"type": "text", "text": ""}, "text"))
                out.append(self._delta({"type": "text_delta", "text": text}))
            for call in delta.get("tool_calls") or []:
                out.append(self._tool(call))
            if choice.get("finish_reason"):
                self._stop = STOP_REASONS.get(choice["finish_reason"], "end_turn")
                out.append(self._close())
        return b"".join(out)

    def _tool(self, call: dict[str, Any]) -> bytes:
        k = int(call.get("index", 0))
        fn = call.get("function") or {}
        args = fn.get("arguments")
        args = args if isinstance(args, str) else ""
        if k in self._held:
            self._held[k][1].append(args)
            return b""
        out: list[bytes] = []
        if k not in self._tools:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": str(call.get("id", "")),
                "name": fn.get("name") or "",
                "input": {},
            }
            if self._open and self._kind == "tool":
                self._held[k] = (block, [args])  # given whole when the open call's block closes
                return b""
            out.append(self._start(block, "tool"))
            self._tools[k] = self._index
        elif self._tools[k] != self._index or not self._open:
            raise StreamError(
                "the provider sent arguments for a tool call after text that followed it"
            )
        if args:
            out.append(self._delta({"type": "input_json_delta", "partial_json": args}))
        return b"".join(out)

    def _start(self, block: dict[str, Any], kind: str) -> bytes:
        closed = self._close()
        self._open, self._kind = True, kind
        return closed + self._next_block(block)

    def _next_block(self, block: dict[str, Any]) -> bytes:
        self._index += 1
        return event(
            "content_block_start",
            {"type": "content_block_start", "index": self._index, "content_block": block},
        )

    def _end_block(self) -> bytes:
        return event("content_block_stop", {"type": "content_block_stop", "index": self._index})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return event(
            "content_block_delta",
            {"type": "content_block_delta", "index": self._index, "delta": delta},
        )

    def _close(self) -> bytes:
        """The open block's end, then the held tool calls, each whole."""
        if not self._open:
            return b""
        self._open = False
        out = [self._end_block()]
        for k in sorted(self._held):
            block, fragments = self._held[k]
            out.append(self._next_block(block))
            self._tools[k] = self._index
            if args := "".join(fragments):
                out.append(self._delta({"type": "input_json_delta", "partial_json": args}))
            out.append(self._end_block())
        self._held.clear()
        return b"".join(out)

    def _finish(self) -> bytes:
        if self._ended:
            return b""
        self._ended = True
        out = [self._close()]
        out.append(
            event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": self._stop or "end_turn", "stop_sequence": None},
                    "usage": self._usage or usage_of(None),
                },
            )
        )
        out.append(event("message_stop", {"type": "message_stop"}))
        return b"".join(out)

    def _error(self, err: object) -> bytes:
        self._ended = True
        message = err.get("message") if isinstance(err, dict) else str(err)
        return event(
            "error",
            {"type": "error", "error": {"type": "api_error", "message": str(message or "")}},
        )
