"""Parsing the ``x-fake-fault`` request header (pure).

Comma-separated tokens, each ``name`` or ``name=value``:

  429[=retry_after_s]   rate_limit_error with retry-after (default 1)
  no-retry-after        a 429 without retry-after (a spend cap, say)
  529[=retry_after_s]   overloaded_error (retry-after only when given)
  500 / 502 / 503 / 504 api_error with that status (=S: with retry-after S)
  400 / 401 / 403 / 404 / 413  the matching client error
  slow-headers=S        wait S seconds before the response headers (a stream:
                        its head at once, its first event S seconds later)
  hang-up               close the connection (h2: reset the stream) instead of answering
  event-delay=S         wait S seconds between SSE events
  drop-mid-stream[=N]   after N events (default 3) abort the response (h1: close, h2: RST_STREAM)
  reset-mid-stream[=N]  the same (an alias: the transport decides close vs RST_STREAM)
  error-mid-stream[=N]  after N events send `event: error` (overloaded_error) and end
  stall[=N]             after N events send nothing more, ever
  text-bytes=N          reply text of about N bytes (for big responses)
  delta-chars=N         characters of text per SSE delta (default 24)
  max-tokens-cut        honour max_tokens: the text stops there (stop_reason max_tokens)
  parallel-tools        (the OpenAI fake) call the first two tools at once
  context-overflow      (the OpenAI fake) a 400 context_length_exceeded, in OpenAI's words
"""

from __future__ import annotations

from dataclasses import dataclass

STATUS_FAULTS = {"400", "401", "403", "404", "413", "429", "500", "502", "503", "504", "529"}


@dataclass(frozen=True, slots=True)
class Faults:
    status: int | None = None
    retry_after: float | None = None  # seconds; a 429 says 1 unless told
    slow_headers: float = 0.0
    event_delay: float = 0.0
    drop_after: int | None = None
    error_after: int | None = None
    stall_after: int | None = None
    text_bytes: int | None = None
    delta_chars: int = 24
    hang_up: bool = False
    no_retry_after: bool = False
    max_tokens_cut: bool = False
    parallel_tools: bool = False
    context_overflow: bool = False


class FaultSyntaxError(ValueError):
    pass


def parse_faults(raw: bytes | None) -> Faults:
    if not raw:
        return Faults()
    kw: dict[str, float | int | None] = {}
    for token in raw.decode("latin-1").split(","):
        token = token.strip()
        if not token:
            continue
        name, _, value = token.partition("=")
        try:
            if name in STATUS_FAULTS:
                kw["status"] = int(name)
                if value:
                    kw["retry_after"] = float(value)
            elif name == "hang-up":
                kw["hang_up"] = True
            elif name == "no-retry-after":
                kw["no_retry_after"] = True
            elif name == "max-tokens-cut":
                kw["max_tokens_cut"] = True
            elif name == "parallel-tools":
                kw["parallel_tools"] = True
            elif name == "context-overflow":
                kw["context_overflow"] = True
            elif name == "slow-headers":
                kw["slow_headers"] = float(value)
            elif name == "event-delay":
                kw["event_delay"] = float(value)
            elif name in ("drop-mid-stream", "reset-mid-stream"):
                kw["drop_after"] = int(value or 3)
            elif name == "error-mid-stream":
                kw["error_after"] = int(value or 3)
            elif name == "stall":
                kw["stall_after"] = int(value or 3)
            elif name == "text-bytes":
                kw["text_bytes"] = int(value)
            elif name == "delta-chars":
                kw["delta_chars"] = max(1, int(value))
            else:
                raise FaultSyntaxError(f"unknown fault {name!r}")
        except ValueError as exc:
            raise FaultSyntaxError(f"bad fault {token!r}: {exc}") from None
    return Faults(**kw)  # type: ignore[arg-type]
