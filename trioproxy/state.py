"""Per-server runtime state, passed explicitly (no module-level singletons).

The transports see only ``listening`` (inbound/context.py: request ids, the
watchdog, drain and the connection counters); the proxy application and the
admin endpoints see the rest too: the configuration requests start with,
metrics, the router, the pools and the journal (access lines, ledger).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from trioproxy.accounting.journal import Journal
from trioproxy.accounting.metrics import Metrics
from trioproxy.accounting.pricing import PriceBook
from trioproxy.accounting.trace_note import gen_ai_system
from trioproxy.alerts.sender import Alerts, Claim
from trioproxy.audit.auditor import Auditor
from trioproxy.callers.book import CallerBook
from trioproxy.callers.directory import Directory
from trioproxy.config.model import Config
from trioproxy.convlog.reader import LogReader
from trioproxy.db.base import Database
from trioproxy.db.open import open_database
from trioproxy.inbound.context import Listening
from trioproxy.oidc.issuer import Issuer, SignIn
from trioproxy.routing.router import Router
from trioproxy.telemetry.exporter import Telemetry
from trioproxy.telemetry.relay import Relay
from trioproxy.upstream.pool import UpstreamPool

log = logging.getLogger("trioproxy.server")


class Peers(Protocol):
    """The other workers of this server, reached through the supervisor
    (trioproxy/workers/). A server on its own has none."""

    async def gather(self) -> dict[str, Any] | None:
        """The snapshot of every worker merged (accounting/merge.py); None
        when the supervisor does not answer in time."""
        ...

    async def tell_others(self, message: dict[str, Any]) -> None:
        """Deliver ``message`` to every other worker (a routing switch)."""
        ...


@dataclass(eq=False)
class ServerState:
    config: Config  # what new requests start with (a reload replaces it)
    listening: Listening = field(init=False)
    metrics: Metrics = field(default_factory=Metrics)
    router: Router | None = None  # set by the proxy server (admin endpoints read it)
    pools: dict[str, UpstreamPool] = field(default_factory=dict)  # by provider, while serving
    journal: Journal = field(default_factory=Journal)  # access lines and ledger rows
    log_reader: LogReader | None = None  # the viewer's read connection to the database
    peers: Peers | None = None  # the other workers, when this is one of several
    callers: Directory = field(init=False)  # who may call, with their policies
    book: CallerBook = field(default_factory=CallerBook)  # what each caller used
    _prices: PriceBook | None = field(init=False, default=None)  # what each request cost
    signin: SignIn | None = field(init=False)  # users of an identity provider ([auth.oidc])
    alerts: Alerts = field(init=False)  # to alerts.webhook_urls
    audit: Auditor = field(init=False)  # administrative changes, to the database
    telemetry: Telemetry | None = None  # [telemetry]: traces (the server sets it up)
    relay: Relay | None = field(init=False)  # callers' own telemetry (telemetry.relay_to)

    def __post_init__(self) -> None:
        self.listening = Listening(self.config)
        self.callers = Directory(self.config.auth)
        auth = self.config.auth
        self.signin = SignIn(Issuer(auth.oidc), auth.groups) if auth.oidc else None
        self.alerts = Alerts(self.config.alert_urls, self.metrics.alerts, claim=self._claim)
        self.audit = Auditor(self.open_database)
        relay = self.config.relay
        self.relay = Relay(relay, self.metrics.relayed) if relay else None

    def reconfigure(self, config: Config) -> None:
        old = self.config
        self.config = config
        self.listening.config = config
        if config.auth != old.auth:
            self.callers.reconfigure(config.auth)
        self.alerts.urls = config.alert_urls
        if self.signin is not None and config.auth.groups != old.auth.groups:
            self.signin = SignIn(self.signin.issuer, config.auth.groups)  # the same keys
        if (config.pricing, config.pricing_unknown, config.routing.providers) != (
            old.pricing,
            old.pricing_unknown,
            old.routing.providers,
        ):
            self._prices = PriceBook.of(config)

    @property
    def prices(self) -> PriceBook:
        """The price book (the server makes it in a thread before serving:
        loading the database takes a quarter of a second)."""
        if self._prices is None:
            self._prices = PriceBook.of(self.config)
        return self._prices

    async def load_prices(self) -> None:
        if self._prices is None:
            self._prices = await trio.to_thread.run_sync(PriceBook.of, self.config)

    async def load_telemetry(self) -> None:
        """[telemetry]: the SDK's processors and exporters, made in a thread
        before the server serves; an SDK setting it refuses (its OTEL_BSP_*
        variables, say) leaves telemetry off, logged, not the proxy down."""
        cfg = self.config
        if cfg.telemetry is None or self.telemetry is not None:
            return
        telemetry = cfg.telemetry
        systems = {p.name: gen_ai_system(p.kind) for p in cfg.routing.providers}
        try:
            self.telemetry = await trio.to_thread.run_sync(
                lambda: Telemetry(
                    telemetry, self.metrics, in_flight=lambda: self.in_flight, systems=systems
                )
            )
        except ValueError as exc:
            log.error("telemetry is off: the OpenTelemetry SDK refused its settings: %s", exc)

    def open_database(self) -> Database:
        """The database as the configuration in force names it (blocking)."""
        return open_database(self.config.database_url, self.config.state_dir)

    def _claim(self) -> Claim | None:
        """The state store's claim, once the router has one: an alert is
        posted by the one process that claims it."""
        store = self.router.store if self.router is not None else None
        return store.claim if store is not None else None

    # -- what the admin endpoints read -------------------------------------------
    @property
    def draining(self) -> bool:
        return self.listening.draining

    @property
    def in_flight(self) -> int:
        return self.listening.in_flight

    @property
    def active(self) -> dict[str, int]:
        return self.listening.active

    @property
    def connections(self) -> dict[str, int]:
        return self.listening.connections

    @property
    def total_connections(self) -> int:
        return self.listening.total_connections

    @property
    def uptime_s(self) -> float:
        return self.listening.uptime_s

    def begin_drain(self) -> None:
        self.listening.begin_drain()
