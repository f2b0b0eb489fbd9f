"""Error wording a client's recovery matches on (pure).

Claude Code compacts a conversation when an error says the prompt is too
long: it looks for Anthropic's words (``prompt is too long``, with the
token counts it parses from ``N tokens > M maximum``) and for the stable
token ``capability_rejected: prompt_too_long`` of its gateway guide. An
error the proxy translates from another dialect (Chat Completions,
Bedrock, Vertex) says so in those words, keeping the upstream's own after
them, so the client recovers as it would from the Anthropic API.

The guide defines more classes than the prompt's length, each a recovery
Claude Code takes (strip thinking blocks, images or documents, stop
sending effort or structured outputs, swap the thinking type ...):
``classify`` names the class an error's words say, in the guide's order
and conservatively (a wrong token triggers the wrong recovery), and
``with_token`` adds it to the message, the upstream's words kept.
"""

from __future__ import annotations

import re

import orjson

TOKEN = "capability_rejected: "
PROMPT_TOO_LONG = TOKEN + "prompt_too_long"
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


# The guide's classes, in its classification order (the earlier row wins),
# each with the words that say it (matched on the lower-cased message).
_CLASSES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(words))
    for name, words in (
        (
            "mid_conv_system",
            r'unexpected role "?system"?|system messages? (?:must|can only|should) (?:be|appear)'
            r" (?:at the (?:beginning|start)|first)|system (?:role|messages?) (?:is|are) not"
            r" (?:allowed|supported|permitted)",
        ),
        (
            "cache_control_field",
            r"cache_control\S*:? (?:extra inputs are not permitted|unknown field|field not"
            r" permitted|is not permitted|unrecognized)",
        ),
        (
            "thinking_signature",
            r"invalid signature in thinking block|invalid data in redacted_thinking block"
            r"|thinking\S* blocks?.{0,60}cannot be modified|thinking\.signature: field required",
        ),
        (
            "structured_outputs_unsupported",
            r"output_config\.format: extra inputs are not permitted",
        ),
        (
            "effort_unsupported",
            r"does not support the effort parameter|output_config\S*: extra inputs are not"
            r" permitted|output_config.{0,80}requires a model that supports",
        ),
        ("media_budget", r"too much media"),
        (
            "image_block",
            r"could not process image|messages\.\d+\.content\.\d+\.image"
            r"|image (?:exceeds|dimensions exceed|is too large)",
        ),
        (
            "document_block",
            r"could not process pdf|does not support pdfs?(?: input)?\b"
            r"|messages\.\d+\.content\.\d+\.document|pdf (?:has too many pages|pages? exceed)",
        ),
    )
)
_THINKING_TYPE = re.compile(
    r"thinking\.type:? '?\"?(enabled|adaptive)\b.{0,60}not supported"
    r"|(adaptive|enabled) thinking is not supported"
)
_MAX_TOKENS_OVERFLOW = re.compile(r"input length and `?max_tokens`? exceed context limit")
_BETA = re.compile(
    r"unexpected value\(s\) `([^`]{1,200})` for the `anthropic-beta` header", re.IGNORECASE
)


def classify(message: str, status: int = 400) -> str | None:
    """The guide's ``capability_rejected`` class an error's words name, or
    None: only for a 400 (or a 413, for the prompt's length), as Claude
    Code only recovers from those."""
    if status not in (400, 413):
        return None
    low = message.lower().replace("`", "")  # the API quotes names: Invalid `signature` in ...
    if status == 400:
        for name, words in _CLASSES[:3]:
            if words.search(low) and not (name == "cache_control_field" and "system" in low):
                return name
        if m := _THINKING_TYPE.search(low):
            return f"thinking_type:{m.group(1) or m.group(2)}"
        for name, words in _CLASSES[3:]:
            if words.search(low):
                return name
    if overflows(message) or (status == 413 and "context window" in low):
        return "prompt_too_long"
    if status == 400 and _MAX_TOKENS_OVERFLOW.search(low):
        return "max_tokens_context_overflow"
    if status == 400 and (m := _BETA.search(message)):
        return f"beta_header:{m.group(1)}"
    return None


def with_token(message: str, status: int = 400) -> str:
    """The message with the class its words name (a prompt too long in
    Anthropic's own words too); unchanged when no class is sure."""
    kind = classify(message, status)
    if kind is None:
        return message
    if kind == "prompt_too_long":
        return prompt_too_long(message)
    token = TOKEN + kind
    return message if token in message else f"{message} ({token})"


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
        message, status = prompt_too_long(message), 400
    elif kind in ("invalid_request_error", "request_too_large"):
        message = with_token(message, status)
    body: dict[str, object] = {"type": "error", "error": {"type": kind, "message": message}}
    if request_id:
        body["request_id"] = request_id
    return status, orjson.dumps(body)
