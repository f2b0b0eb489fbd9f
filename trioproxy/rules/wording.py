"""Error wording a client's recovery matches on (pure).

Claude Code compacts a conversation when an error says the prompt is too
long: it looks for Anthropic's words (``prompt is too long``, with the
token counts it parses from ``N tokens > M maximum``) and for the stable
token ``capability_rejected: prompt_too_long`` of its gateway guide. An
error the proxy translates from another dialect (Chat Completions,
Bedrock, Vertex) says so in those words, keeping the upstream's own after
them, so the client recovers as it would from the Anthropic API.
"""

from __future__ import annotations

import re

import orjson

PROMPT_TOO_LONG = "capability_rejected: prompt_too_long"
# How other APIs say the prompt does not fit (OpenAI, vLLM, Ollama, LiteLLM,
# Bedrock, Vertex ...), lower case.
_OVERFLOW = re.compile(
    r"prompt is too long|maximum context length|context_length_exceeded|context length"
    r"|exceeds? the context window|context window exceeds|longer than the maximum model length"
    r"|longer than the model's context length|exceeds the available context size"
    r"|exceeds the maximum number of tokens|input token length too long|too many (input )?tokens"
    r"|input tokens exceed|maximum prompt length|prompt exceeds max length|input is too long",
    re.IGNORECASE,
)
# "... maximum context length is 128000 tokens ... resulted in 130532 tokens"
_LIMIT = re.compile(r"(?:maximum|limit|max)[^0-9]{0,40}?(\d{3,})", re.IGNORECASE)
_ACTUAL = re.compile(
    r"(?:resulted in|requested|you (?:have|sent)|got|prompt (?:has|is))[^0-9]{0,20}?(\d{3,})",
    re.IGNORECASE,
)


def overflows(message: str, code: str = "") -> bool:
    """Whether an error says the prompt does not fit the model's context."""
    return bool(_OVERFLOW.search(message) or _OVERFLOW.search(code))


def prompt_too_long(message: str) -> str:
    """Anthropic's words for it, the upstream's kept after them, and the token.
    With both counts known, the form Claude Code parses them from."""
    if message.lower().startswith("prompt is too long"):
        head = message
    else:
        limit, actual = _LIMIT.search(message), _ACTUAL.search(message)
        head = (
            f"prompt is too long: {actual.group(1)} tokens > {limit.group(1)} maximum ({message})"
            if limit and actual
            else f"prompt is too long: {message}"
        )
    return head if PROMPT_TOO_LONG in head else f"{head} ({PROMPT_TOO_LONG})"


def translated_error(
    status: int, known: tuple[int, str] | None, message: str, request_id: str = ""
) -> tuple[int, bytes]:
    """(status, Anthropic's error body) for an error another API gave:
    ``known`` its (status, type) when its name was mapped; otherwise the
    status says (a 429 is a rate limit, >= 500 ``api_error``, else a bad
    request). A prompt over the context is said in Anthropic's words."""
    if known is not None:
        status, kind = known
    elif status == 429:
        kind = "rate_limit_error"
    else:
        kind = "api_error" if status >= 500 else "invalid_request_error"
    if kind == "invalid_request_error" and overflows(message):
        message = prompt_too_long(message)
    body: dict[str, object] = {"type": "error", "error": {"type": kind, "message": message}}
    if request_id:
        body["request_id"] = request_id
    return status, orjson.dumps(body)
