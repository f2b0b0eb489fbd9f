"""The words Claude Code's recovery matches on, for errors translated from
other dialects (rules/wording.py)."""

from __future__ import annotations

import pytest

from trioproxy.rules.wording import PROMPT_TOO_LONG, overflows, prompt_too_long


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
