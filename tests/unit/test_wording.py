"""The words Claude Code's recovery matches on, for errors translated from
other dialects (rules/wording.py)."""

from __future__ import annotations

import re

import orjson
import pytest

from trioproxy.rules.wording import (
    PROMPT_TOO_LONG,
    classify,
    overflows,
    prompt_too_long,
    translated_error,
    with_token,
)


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("This model's maximum context length is 8192 tokens.", ""),
        ("bad request", "context_length_exceeded"),
        ("The input is longer than the model's context length", ""),
        ("prompt is too long: 210000 tokens > 200000 maximum", ""),
        ("Input is too long for requested model.", ""),
    ],
)
def test_overflows(message: str, code: str) -> None:
    assert overflows(message, code)


def test_not_every_error_overflows() -> None:
    assert not overflows("Invalid API key", "invalid_api_key")
    assert not overflows("max_tokens: must be at most 8192", "")


def test_anthropic_s_words_with_the_counts_and_the_provider_s() -> None:
    openai = (
        "This model's maximum context length is 128000 tokens. However, your messages"
        " resulted in 130532 tokens."
    )
    assert prompt_too_long(openai) == (
        f"prompt is too long: 130532 tokens > 128000 maximum ({openai}) ({PROMPT_TOO_LONG})"
    )
    assert prompt_too_long("context window exceeded") == (
        f"prompt is too long: context window exceeded ({PROMPT_TOO_LONG})"
    )
    already = "prompt is too long: 3 tokens > 2 maximum"
    assert prompt_too_long(already) == f"{already} ({PROMPT_TOO_LONG})"
    assert prompt_too_long(f"{already} ({PROMPT_TOO_LONG})").count(PROMPT_TOO_LONG) == 1


def claude_code_matches(message: str, kind: str) -> bool:
    """Claude Code's own test for a token (its binary, 2.1.330): the token,
    then no character that could continue a class name."""
    token, start = f"capability_rejected: {kind}", 0
    while (at := message.find(token, start)) != -1:
        after = message[at + len(token) : at + len(token) + 1]
        if not after or not re.match(r"[A-Za-z0-9_:.-]", after):
            return True
        start = at + 1
    return False


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        (
            'messages: Unexpected role "system". Use the top-level system parameter.',
            "mid_conv_system",
        ),
        ("System message must be at the beginning.", "mid_conv_system"),
        (
            "messages.1.content.0.text.cache_control: Extra inputs are not permitted",
            "cache_control_field",
        ),
        ("messages.1.content.0: Invalid `signature` in `thinking` block", "thinking_signature"),
        ("messages.3.content.0: Invalid signature in thinking block", "thinking_signature"),
        ("Invalid data in redacted_thinking block", "thinking_signature"),
        ("messages.1.content.0.thinking.signature: Field required", "thinking_signature"),
        ("thinking.type: enabled is not supported for this model", "thinking_type:enabled"),
        ("Adaptive thinking is not supported on this model", "thinking_type:adaptive"),
        ("output_config.format: Extra inputs are not permitted", "structured_outputs_unsupported"),
        ("This model does not support the effort parameter.", "effort_unsupported"),
        ("output_config.effort: Extra inputs are not permitted", "effort_unsupported"),
        ("Too much media: 90 document pages + 20 images > 100", "media_budget"),
        ("Could not process image", "image_block"),
        ("messages.0.content.1.image.source.base64: image exceeds 5 MB maximum", "image_block"),
        ("Could not process PDF", "document_block"),
        ("This model does not support PDF input", "document_block"),
        ("Input is too long for requested model.", "prompt_too_long"),
        (
            "input length and `max_tokens` exceed context limit: 190000 + 32000 > 200000",
            "max_tokens_context_overflow",
        ),
        (
            "Unexpected value(s) `afk-mode-2026-01-31` for the `anthropic-beta` header.",
            "beta_header:afk-mode-2026-01-31",
        ),
        ("max_tokens: must be at most 8192", None),
        ("Invalid API key", None),
    ],
)
def test_each_class_of_the_guide_is_named_as_claude_code_matches_it(
    message: str, kind: str | None
) -> None:
    assert classify(message) == kind
    out = with_token(message)
    if kind is None:
        assert out == message  # conservative: no sure class, no token
        return
    assert claude_code_matches(out, kind) and message in out.replace("\n", "")
    assert (
        out.count("capability_rejected") == 1 and with_token(out).count("capability_rejected") == 1
    )


def test_only_the_statuses_claude_code_recovers_from_carry_a_token() -> None:
    assert classify("Could not process image", 500) is None
    assert classify("Could not process image", 413) is None
    assert classify("request exceeds the model's context window", 413) == "prompt_too_long"


def test_a_translated_error_carries_its_class() -> None:
    status, body = translated_error(400, (400, "invalid_request_error"), "Could not process PDF")
    assert status == 400 and claude_code_matches(
        orjson.loads(body)["error"]["message"], "document_block"
    )
    status, body = translated_error(429, (429, "rate_limit_error"), "Could not process PDF")
    assert "capability_rejected" not in orjson.loads(body)["error"]["message"]
