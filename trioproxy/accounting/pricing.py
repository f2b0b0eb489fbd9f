"""Estimated cost of tokens: USD per million tokens by model (glob), for
``trioproxy usage``. An estimate: batch discounts, 1-hour cache writes and
long-context tiers are not modelled, and a provider's own prices (MiniMax,
Moonshot...) are whatever the [pricing] table says.

The built-in list prices and the ``[pricing]`` table are configuration
(``trioproxy.config.pricing``); this module applies them.
"""

from __future__ import annotations

import fnmatch

from trioproxy.accounting.usage import Usage
from trioproxy.config.model import Price


def price_for(model: str, prices: tuple[Price, ...]) -> Price | None:
    for p in prices:
        if fnmatch.fnmatchcase(model, p.pattern):
            return p
    return None


def cost_usd(usage: Usage, requested: str, prices: tuple[Price, ...]) -> float:
    """The estimated cost of one response: priced by the model that served
    it (else the one asked for); 0 for a model the table does not know."""
    price = price_for(usage.model or requested, prices)
    return 0.0 if price is None else price.cost(usage.as_dict())


def caller_tokens(usage: Usage) -> int:
    """Tokens as callers' ``tpm`` and token budgets count them: input (cache
    writes included, cache reads not, as Anthropic's own limits count) and
    output."""
    return usage.input_tokens + usage.cache_creation_input_tokens + usage.output_tokens
