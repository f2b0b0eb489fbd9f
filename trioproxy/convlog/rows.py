"""A capture and its request's record as one conversation-log row (writer
thread side): bodies joined and compressed, credentials in headers
redacted, the search text extracted. A streamed answer is stored as its
bytes; the viewer rebuilds its Message when the row is read."""

from __future__ import annotations

import re
from typing import Any

import orjson
import zstandard

from trioproxy.accounting.record import RequestRecord, redacted_query
from trioproxy.convlog.capture import Capture
from trioproxy.convlog.search import json_answer_text, search_text, streamed_answer_text
from trioproxy.db.schema import LOG_COLUMNS
from trioproxy.proto.events import Headers

ZSTD_LEVEL = 3  # zstd's default: about 300 MB/s here, a Messages body shrinks 5-10x
REDACTED = "<redacted>"
# Header names whose values are credentials (the API's, ours, a front proxy's).
_SECRET_HEADER = re.compile(
    r"authorization|api[-_]?key|secret|password|cookie|(^|-)token$|^x-trioproxy-key$"
)


class RowMaker:
    """One per writer thread (a zstd compressor is not shared between threads)."""

    def __init__(self) -> None:
        self._zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL)

    def row(self, record: RequestRecord, capture: Capture) -> tuple[object, ...]:
        request = _request_body(capture)
        request_total = capture.request_seen if capture.sent is None else len(request)
        request = request[: capture.cap]
        response = _joined(capture.response_chunks)[: capture.cap]
        if _is_event_stream(capture.response_headers):
            answer = streamed_answer_text(response)
        else:
            answer = json_answer_text(_json(response)) if response else ""
        u = record.usage
        path = record.path + (f"?{redacted_query(record.query)}" if record.query else "")
        doc: dict[str, Any] = {
            "request_id": record.request_id,
            "ts": record.started,
            "caller": record.caller or "-",
            "provider": record.provider or "-",
            "providers_tried": record.providers_tried,
            "model": u.model or record.model_requested or "-",
            "model_requested": record.model_requested or "-",
            "method": record.method,
            "path": path,
            "status": record.status,
            "origin": record.origin,
            "error": int(record.status >= 400 or u.stream_errors > 0 or record.forward_failed),
            "error_text": record.error,
            "stream": int(record.stream),
            "session": record.session_id,
            "route": record.route,
            "request_class": record.request_class,
            "agent_type": record.agent_type,
            "agent_id": record.agent_id,
            "prompt_id": record.prompt_id,
            "upstream_request_id": record.upstream_request_id,
            "retries": record.retries,
            "failovers": record.failovers,
            "time_to_headers_s": _rounded(record.time_to_headers_s),
            "time_to_first_token_s": _rounded(record.time_to_first_byte_s),
            "duration_s": round(record.duration_s, 4),
            "input_tokens": u.input_tokens,
            "cache_creation_input_tokens": u.cache_creation_input_tokens,
            "cache_read_input_tokens": u.cache_read_input_tokens,
            "output_tokens": u.output_tokens,
            "cost_usd": record.cost_usd or 0.0,  # priced when it ended (accounting/pricing.py)
            "request_headers": headers_json(capture.request_headers),
            "response_headers": headers_json(capture.response_headers),
            "request_bytes": request_total,
            "request_truncated": int(request_total > capture.cap),
            "request_body": self._zstd.compress(request) if request else None,
            "response_bytes": capture.response_seen,
            "response_truncated": int(capture.response_seen > capture.cap),
            "response_body": self._zstd.compress(response) if response else None,
            "message": None,  # rebuilt when read (rows written before stored it)
            "search": search_text(_json(request), answer),
        }
        return tuple(doc[c] for c in LOG_COLUMNS)


def headers_json(headers: Headers) -> str:
    """[[name, value], ...] with credentials' values redacted."""
    out = []
    for name, value in headers:
        text = name.decode("latin-1")
        out.append([text, REDACTED if _SECRET_HEADER.search(text) else value.decode("latin-1")])
    return orjson.dumps(out).decode()


def _request_body(capture: Capture) -> bytes:
    if capture.sent is not None:
        return capture.sent
    return _joined(capture.request_chunks)


def _joined(chunks: list[bytes]) -> bytes:
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _is_event_stream(headers: Headers) -> bool:
    return any(n == b"content-type" and b"text/event-stream" in v for n, v in headers)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
