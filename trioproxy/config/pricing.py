"""List prices per million tokens, and the ``[pricing]`` table that adds to
them (``trioproxy usage`` turns tokens into an estimated cost with these).

``[pricing]`` in the config file adds or overrides entries, and is checked
first::

    [pricing."MiniMax-M2*"]
    input = 0.3
    output = 1.2
    cache_write = 0.375
    cache_read = 0.03
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trioproxy.config.model import Price

FIELDS = ("input", "output", "cache_write", "cache_read")


# Anthropic's list prices (platform.claude.com/docs/en/about-claude/pricing),
# checked 2026-11 for these families; first match wins. A model not listed
# here or in [pricing] shows no cost rather than a guess.
DEFAULT_PRICES: tuple[Price, ...] = (
    Price("claude-opus-4-0*", 15, 75, 18.75, 1.5),
    Price("claude-opus-4-1*", 15, 75, 18.75, 1.5),
    Price("claude-opus-4-2025*", 15, 75, 18.75, 1.5),  # claude-opus-4-20250514
    Price("claude-3-opus*", 15, 75, 18.75, 1.5),
    Price("claude-opus-4-*", 5, 25, 6.25, 0.5),  # 4.5 and later
    Price("claude-sonnet-4*", 3, 15, 3.75, 0.3),
    Price("claude-3-7-sonnet*", 3, 15, 3.75, 0.3),
    Price("claude-3-5-sonnet*", 3, 15, 3.75, 0.3),
    Price("claude-haiku-4*", 1, 5, 1.25, 0.1),
    Price("claude-3-5-haiku*", 0.8, 4, 1, 0.08),
    Price("claude-3-haiku*", 0.25, 1.25, 0.3, 0.03),
)


def parse_pricing(raw: object) -> tuple[Price, ...]:
    """The [pricing] table (glob -> four prices), checked; raises ValueError
    naming the key."""
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise ValueError('pricing: expected a table of [pricing."model-glob"] entries')
    out = []
    for pattern, entry in raw.items():
        where = f'pricing."{pattern}"'
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: expected a table with {', '.join(FIELDS)}")
        unknown = sorted(set(entry) - set(FIELDS))
        if unknown:
            raise ValueError(f"{where}.{unknown[0]}: unknown field (known: {', '.join(FIELDS)})")
        values: dict[str, Any] = {}
        for f in FIELDS:
            v = entry.get(f, 0)
            if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
                raise ValueError(f"{where}.{f}: expected a price >= 0 (USD per million tokens)")
            values[f] = float(v)
        out.append(Price(str(pattern), **values))
    return tuple(out)
