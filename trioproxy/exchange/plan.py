"""The planner: before anything is sent, which providers a request goes to,
in which order, and what it is refused for. Decided once per request from
its head, its body when routing must look inside it, the caller and the
router's state; the exchange (forward.py) only executes the plan.

Refusals are the proxy's own errors, each naming why: a pin that is not
allowed or names no provider, a model outside the caller's allowlist, an
operator's quota (429), a subscription token that expired, a path a Chat
Completions provider cannot serve, a caller that must not be served with
its own secret.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from trioproxy.callers.policy import check_model
from trioproxy.config.model import ProviderConfig, Route
from trioproxy.errors import InvalidRequest, NotFound, PermissionDenied, RateLimited, Unavailable
from trioproxy.exchange.local import (
    ESTIMATE,
    LIST_MODELS,
    PROFILES,
    RELAY,
    is_models,
    is_profiles,
)
from trioproxy.exchange.trip import Trip
from trioproxy.proto.events import RequestHead
from trioproxy.routing.decide import OWN_KEY, NoProvider, UnknownProvider
from trioproxy.routing.router import Router, Unusable
from trioproxy.routing.routes import RequestFacts, choose, model_for
from trioproxy.rules.auth import presented_credential
from trioproxy.rules.transform import ParsedBody
from trioproxy.telemetry.stamp import is_relay

PIN_HEADER = b"x-trioproxy-provider"
COUNT_TOKENS = b"/v1/messages/count_tokens"
SESSION_HEADER = b"x-claude-code-session-id"


@dataclass(frozen=True, slots=True)
class Plan:
    providers: list[ProviderConfig]  # tried in this order
    route: Route | None  # the [[routes]] rule the request matched
    caller_key: str  # whose cooldown a 429 starts (see decide.cooldown_key)
    home: str  # the provider family whose thinking signatures the history carries
    remember: str | None  # the session that moves to the provider that serves
    local: str = ""  # the proxy answers itself (exchange/local.py): "estimate" or "models"


def needs_body(trip: Trip) -> bool:
    """Whether the plan must see the body (routing rules, a session id in
    metadata, a model to map, the caller's model allowlist, demotion)."""
    routing, caller = trip.cfg.routing, trip.caller
    allowlist = caller is not None and bool(caller.models)
    return (
        routing.needs_body
        or relayed(trip)
        or allowlist
        or (trip.messages and routing.demotes)
        or _priced_only(trip)
    )


def relayed(trip: Trip) -> bool:
    """Callers' own OTLP telemetry, for the relay (telemetry.relay_to)."""
    return trip.relay is not None and is_relay(trip.ex.head.method, trip.ex.head.path)


def _priced_only(trip: Trip) -> bool:
    """A caller with a USD budget under ``pricing.unknown_model = "refuse"``:
    served only models that can be priced."""
    caller, prices = trip.caller, trip.prices
    return (
        caller is not None
        and caller.budget is not None
        and caller.budget.usd is not None
        and prices is not None
        and prices.refuses_unknown
    )


def pinned(trip: Trip) -> str | None:
    """The provider the client pinned (x-trioproxy-provider), if allowed."""
    raw = trip.ex.head.header(PIN_HEADER)
    if raw is None:
        return None
    if not trip.cfg.routing.allow_pin:
        raise PermissionDenied(
            "x-trioproxy-provider: pinning requests to a provider is not enabled on this "
            "proxy (routing.allow_pin)"
        )
    return raw.decode("latin-1").strip()


def make_plan(
    trip: Trip, router: Router, parsed: ParsedBody | None, body_len: int, pin: str | None
) -> Plan:
    """The plan for this request, or the proxy's own refusal (ProxyError)."""
    ex, record, routing, caller = trip.ex, trip.record, trip.cfg.routing, trip.caller
    if is_models(ex.head.method, ex.head.path):  # from the catalogue, never an upstream's list
        return Plan([], None, "", "", None, local=LIST_MODELS)
    if is_profiles(ex.head.method, ex.head.path):
        return Plan([], None, "", "", None, local=PROFILES)
    if relayed(trip):
        return Plan([], None, "", "", None, local=RELAY)
    session_raw = ex.head.header(SESSION_HEADER)
    session = session_raw.decode("latin-1") if session_raw else None
    route: Route | None = None
    if parsed is not None:
        session = session or parsed.session_id
        record.model_requested = parsed.model or ""
        if routing.routes:
            facts = RequestFacts(
                parsed.doc,
                body_len,
                record.caller,
                ex.head.headers,
                routing.resolve_alias(parsed.model or ""),
            )
            route = choose(routing.routes, facts)
            if route is not None:
                record.route = route.name
    if caller is not None and caller.models:
        model = parsed.model if parsed is not None else None
        refusal = check_model(caller, model and routing.resolve_alias(model))
        if refusal is not None:
            record.limited = refusal.reason
            raise PermissionDenied(refusal.message)
    own = caller is not None and caller.own_credential
    caller_key = _caller_key(ex.head) if routing.passthrough or own else ""
    if own and caller_key:
        caller_key = OWN_KEY + caller_key
    try:
        if route is not None and pin is None:
            providers = _route_plan(router, route, caller_key)
        else:
            providers = router.plan(pin=pin, session=session, caller_key=caller_key)
    except UnknownProvider as exc:
        raise InvalidRequest(
            f"x-trioproxy-provider: no provider named {exc.args[0]!r} "
            f"(known: {', '.join(routing.names)})"
        ) from None
    except NoProvider as exc:  # a quota the operator set: the proxy's own 429
        raise RateLimited(exc.message, retry_after=exc.retry_after) from None
    except Unusable as exc:  # a subscription's token expired: never sent
        raise Unavailable(exc.message) from None
    # A request a rule routed does not move its session: the main agent's
    # turns stay where they were while a subagent's go elsewhere.
    remember = session if route is None else None
    if ex.head.path == COUNT_TOKENS and providers[0].kind == "openai":
        return Plan(providers, route, caller_key, providers[0].family, remember, local=ESTIMATE)
    if not trip.messages:
        # A provider of another dialect is asked only what can be translated.
        counted = ex.head.path == COUNT_TOKENS and ex.head.method == b"POST"
        providers = [p for p in providers if not p.messages_only or (counted and p.cloud)]
        if not providers:
            raise NotFound(
                f"{ex.head.path.decode('latin-1')}: the provider here speaks another "
                "dialect (Chat Completions or a cloud's); only POST /v1/messages (and, for "
                "a cloud, /v1/messages/count_tokens) is translated for it"
            )
    if caller is not None and not caller.own_credential:
        # Never a provider without a key of its own: the caller's proxy
        # secret would travel in its place.
        providers = [p for p in providers if p.keyed]
        if not providers:
            raise PermissionDenied(
                f"caller {caller.name} can only be served with its own upstream "
                'credential (upstream_credential = "own"): no provider here has a key'
            )
    if parsed is not None and parsed.model and _priced_only(trip):
        providers = _priced(trip, providers, route, parsed.model)
    # Thinking blocks in the history were signed by the session's last
    # provider (or, for a session we do not know, the first choice).
    home = router.family_of(router.session_provider(session)) or providers[0].family
    return Plan(providers, route, caller_key, home, remember)


def _priced(
    trip: Trip, providers: list[ProviderConfig], route: Route | None, requested: str
) -> list[ProviderConfig]:
    """The providers whose model for this request can be priced; none is a
    403 naming the model and the setting, never a budget bypassed."""
    prices, routing = trip.prices, trip.cfg.routing
    assert prices is not None
    models = [model_for(p, route, requested, routing) for p in providers]
    kept = [p for p, m in zip(providers, models, strict=True) if prices.known(m, p.name)]
    if not kept:
        trip.record.limited = "unpriced_model"
        raise PermissionDenied(
            f"model {models[0]!r} has no price (neither the price database nor [pricing] "
            f"knows it), and caller {trip.record.caller}'s budget is in USD: refused under "
            'pricing.unknown_model = "refuse" (give the model a [pricing."glob"] entry, or '
            "set pricing.unknown_model to a price)"
        )
    return kept


def _route_plan(router: Router, route: Route, caller_key: str) -> list[ProviderConfig]:
    """A rule's provider, then its fallbacks: the request's failover list
    (each asked whatever its health, as a pinned request is; one over its
    quota or with an unusable credential is skipped)."""
    plan: list[ProviderConfig] = []
    first: Exception | None = None
    for name in (route.provider, *route.fallbacks):
        try:
            got = router.plan(pin=name, session=None, caller_key=caller_key)
        except (NoProvider, Unusable) as exc:
            first = first or exc
            continue
        plan.extend(p for p in got if p.enabled and p not in plan)
    if not plan:
        if first is not None:
            raise first
        raise NoProvider(f"route {route.name}: no provider of it is enabled", 0.0)
    return plan


def _caller_key(head: RequestHead) -> str:
    """A short keyed digest of the caller's own credential, for passthrough
    cooldowns (never the credential itself: it is kept in memory as a key)."""
    presented = presented_credential(head.headers)
    if presented is None:
        return ""
    return hashlib.blake2b(presented, digest_size=12, key=b"trioproxy-cooldown").hexdigest()
