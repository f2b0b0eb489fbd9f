"""The ``[pricing]`` table: prices per million tokens that override the
price database (``accounting/pricing.py``), for negotiated rates and models
no database knows, checked first::

    [pricing."MiniMax-M2*"]
    input = 0.3
    output = 1.2
    cache_write = 0.375
    cache_read = 0.03

and ``pricing.unknown_model``: what a model neither knows costs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trioproxy.config.model import Price

FIELDS = ("input", "output", "cache_write", "cache_read")
UNKNOWN_MODEL = "unknown_model"  # a setting in the table, not a model glob


def parse_pricing(raw: object) -> tuple[Price, ...]:
    """The [pricing] table (glob -> four prices), checked; raises ValueError
    naming the key."""
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise ValueError('pricing: expected a table of [pricing."model-glob"] entries')
    return tuple(
        _price(str(pattern), entry, f'pricing."{pattern}"')
        for pattern, entry in raw.items()
        if pattern != UNKNOWN_MODEL
    )


def _price(pattern: str, entry: object, where: str) -> Price:
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
    return Price(pattern, **values)


def parse_unknown_model(raw: object) -> str | Price:
    """``"refuse"``, ``"free"``, or a price: a table like a [pricing] entry,
    or (in the environment) ``INPUT/OUTPUT[/CACHE_WRITE/CACHE_READ]`` in USD
    per million tokens."""
    if isinstance(raw, Mapping):
        return _price("*", raw, "a price")
    if not isinstance(raw, str):
        raise ValueError('expected "refuse", "free" or a price')
    text = raw.strip()
    if text in ("refuse", "free"):
        return text
    parts = text.split("/")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (2, 4) or any(n < 0 or n != n for n in numbers):
        raise ValueError(
            'expected "refuse", "free" or a price: INPUT/OUTPUT[/CACHE_WRITE/CACHE_READ] '
            "in USD per million tokens"
        )
    return _price("*", dict(zip(FIELDS, numbers, strict=False)), "a price")
