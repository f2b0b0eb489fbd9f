"""Estimated cost of tokens: USD per million tokens by model (glob), for
``trioproxy usage``. An estimate: batch discounts, 1-hour cache writes and
long-context tiers are not modelled, and a provider's own prices (MiniMax,
Moonshot...) are whatever the [pricing] table says.

The built-in list prices and the ``[pricing]`` table are configuration
(``trioproxy.config.pricing``); this module applies them.
"""

from __future__ import annotations

import fnmatch

from trioproxy.config.model import Price


def price_for(model: str, prices: tuple[Price, ...]) -> Price | None:
    for p in prices:
        if fnmatch.fnmatchcase(model, p.pattern):
            return p
    return None
