"""What a request cost, in USD: the one function every view of cost uses
(the access line, the ledger, the dashboard, the viewer, ``trioproxy
usage``, callers' USD budgets).

Prices come from ``genai-prices``, a maintained price database (Pydantic's)
that knows the current Claude models on Anthropic, Bedrock and Vertex AI,
their cache write and read rates and long-context tiers, and other
providers' models. The ``[pricing]`` table overrides it (negotiated rates,
models no database knows), checked first. A model neither knows is what
``pricing.unknown_model`` says: refused for a caller with a USD budget
(``"refuse"``, and unpriced everywhere else), free, or a given price.

A lookup is made once per (model, provider) and kept (bounded); the cost
itself is four multiplications, so pricing every request costs the request
path nothing that shows. The database is loaded when the book is made, at
start, never on a request.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from trioproxy.accounting.usage import Usage
from trioproxy.config.model import Config, Price

if TYPE_CHECKING:
    from genai_prices.types import TieredPrices

REFUSE = "refuse"
FREE = "free"
MAX_KEPT = 4096  # (model, provider) lookups kept; answers' model names are the upstream's to choose

# (base USD per million tokens, ((more than this many input tokens, that price), ...))
Tiered = tuple[float, tuple[tuple[int, float], ...]]
_CLASSES = (
    ("input_tokens", "input_mtok"),
    ("cache_creation_input_tokens", "cache_write_mtok"),
    ("cache_read_input_tokens", "cache_read_mtok"),
    ("output_tokens", "output_mtok"),
)


@dataclass(frozen=True, slots=True)
class Rates:
    """One model's prices at one provider, in the order of ``_CLASSES``; a
    tier applies to all of a request's tokens once its input (cache reads
    and writes included) is over the tier's start, as the APIs bill."""

    source: str  # "pricing" (the table), "genai-prices", or "unknown_model"
    tiers: tuple[Tiered, Tiered, Tiered, Tiered]

    def cost(self, tokens: Mapping[str, int]) -> float:
        total_input = (
            tokens.get("input_tokens", 0)
            + tokens.get("cache_creation_input_tokens", 0)
            + tokens.get("cache_read_input_tokens", 0)
        )
        usd = 0.0
        for (name, _), (base, steps) in zip(_CLASSES, self.tiers, strict=True):
            price = base
            for start, higher in steps:
                if total_input > start:
                    price = higher
            usd += tokens.get(name, 0) * price
        return usd / 1_000_000


def flat(price: Price, source: str) -> Rates:
    return Rates(
        source,
        (
            (price.input, ()),
            (price.cache_write, ()),
            (price.cache_read, ()),
            (price.output, ()),
        ),
    )


def provider_hint(kind: str, url: str) -> str:
    """How the database knows a provider: Bedrock is AWS's prices, Vertex
    Google's; another is found by its URL (an Anthropic-compatible API such
    as MiniMax's), else by the model alone."""
    return {"bedrock": "aws", "vertex": "google"}.get(kind, url)


class PriceBook:
    """Prices for a configuration: its ``[pricing]`` table, the database and
    its ``unknown_model`` policy, and each provider's hint by name. Used on
    the event loop (and by the CLI): lookups are kept without a lock."""

    def __init__(
        self,
        table: tuple[Price, ...] = (),
        unknown: str | Price = REFUSE,
        providers: Mapping[str, str] | None = None,
    ) -> None:
        self._table = table
        self._unknown: Rates | None = None  # "refuse"
        if isinstance(unknown, Price):
            self._unknown = flat(unknown, "unknown_model")
        elif unknown == FREE:
            self._unknown = flat(Price("*", 0, 0, 0, 0), "unknown_model")
        self._refuses = self._unknown is None
        self._hints = dict(providers or {})
        self._kept: dict[tuple[str, str], Rates | None] = {}
        # The database (a 1.6 MB module) is loaded now, not on a request; the
        # server makes its book in a worker thread before it serves.
        from genai_prices import data_snapshot

        self._snapshot: Any = data_snapshot.get_snapshot()

    @classmethod
    def of(cls, config: Config) -> PriceBook:
        """The book for a configuration (its table, policy and providers)."""
        hints = {
            p.name: provider_hint(p.kind, str(p.upstream.origin)) for p in config.routing.providers
        }
        return cls(config.pricing, config.pricing_unknown, hints)

    @property
    def refuses_unknown(self) -> bool:
        """``pricing.unknown_model = "refuse"``: a USD-budgeted caller is
        never served a model that cannot be priced."""
        return self._refuses

    def known(self, model: str, provider: str = "") -> bool:
        """Whether the table or the database prices this model (at this
        provider, by name)."""
        return self._rates(model, self._hints.get(provider, "")) is not None

    def cost(self, usage: Usage, requested: str = "", provider: str = "") -> float | None:
        """What this response cost: priced by the model that served it,
        else the one asked for, at this provider (by name); None when
        neither can be priced and the policy is to refuse."""
        hint = self._hints.get(provider, "")
        rates = None
        for model in (usage.model, requested):
            if model and (rates := self._rates(model, hint)) is not None:
                break
        rates = rates or self._unknown
        return None if rates is None else rates.cost(usage.as_dict())

    def tokens_cost(
        self, tokens: Mapping[str, int], model: str, provider: str = ""
    ) -> float | None:
        """The same for summed tokens of one model (the ledger's old rows)."""
        rates = self._rates(model, self._hints.get(provider, "")) or self._unknown
        return None if rates is None else rates.cost(tokens)

    def rates(self, model: str, provider: str = "") -> Rates | None:
        """The prices a model is charged at (None: unknown), for display."""
        return self._rates(model, self._hints.get(provider, ""))

    def _rates(self, model: str, hint: str) -> Rates | None:
        for price in self._table:
            if fnmatch.fnmatchcase(model, price.pattern):
                return flat(price, "pricing")
        key = (model, hint)
        if key in self._kept:
            return self._kept[key]
        rates = self._lookup(model, hint)
        if len(self._kept) < MAX_KEPT:
            self._kept[key] = rates
        return rates

    def _lookup(self, model: str, hint: str) -> Rates | None:
        snapshot = self._snapshot
        tries: list[tuple[str | None, str | None]] = []
        if hint.startswith(("http://", "https://")):
            tries.append((None, hint))
        elif hint:
            tries.append((hint, None))
        tries.append((None, None))
        for provider_id, url in tries:
            try:
                _, info = snapshot.find_provider_model(model, None, provider_id, url)
            except LookupError:
                continue
            prices = info.get_prices(datetime.now(tz=UTC))
            values = [getattr(prices, attr, None) for _, attr in _CLASSES]
            if values[0] is None and values[3] is None:
                continue  # priced by something other than tokens (an image model)
            return Rates("genai-prices", tuple(_tiered(v) for v in values))  # type: ignore[arg-type]
        return None


def _tiered(value: Decimal | TieredPrices | None) -> Tiered:
    from genai_prices.types import TieredPrices

    if value is None:
        return (0.0, ())
    if isinstance(value, TieredPrices):
        return (float(value.base), tuple((t.start, float(t.price)) for t in value.tiers))
    return (float(value), ())


def caller_tokens(usage: Usage) -> int:
    """Tokens as callers' ``tpm`` and token budgets count them: input (cache
    writes included, cache reads not, as Anthropic's own limits count) and
    output."""
    return usage.input_tokens + usage.cache_creation_input_tokens + usage.output_tokens
