"""Listeners, the connection-handler nursery, and drain.

Accepting and handling run in separate nurseries. Drain has two phases:

1. The grace (``timeouts.drain_grace``): /health answers 503 at once, HTTP/2
   connections get GOAWAY, HTTP/1.1 responses carry `connection: close`, and
   both listeners keep accepting and serving, so a load balancer or health
   check sees the 503 and moves traffic away before anything is refused.
2. Then the accept nursery stops and the listeners close, connections
   waiting for a request close, and the handler nursery's cancel scope gets
   the ``timeouts.drain`` deadline for what is still in flight.

A second signal cancels everything outright.
"""

from __future__ import annotations

import functools
import logging
import signal
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import trio

from trioproxy._util import first_of
from trioproxy.accounting.journal import Journal, Keeping
from trioproxy.admin.endpoints import AdminApp
from trioproxy.alerts.watch import watch
from trioproxy.audit.reload import reload_changes
from trioproxy.config import Config, ConfigError, binding_problem, is_loopback, load_checked
from trioproxy.config.model import ProviderConfig
from trioproxy.config.restart_only import keep_restart_only
from trioproxy.convlog.reader import LogReader
from trioproxy.convlog.rows import RowMaker
from trioproxy.db.open import open_database
from trioproxy.exchange.proxy import Proxy
from trioproxy.exchange.retention import serve_give_back
from trioproxy.inbound.conn import handle_connection, make_server_ssl_context
from trioproxy.inbound.exchange import App
from trioproxy.routing.router import Router
from trioproxy.state import ServerState
from trioproxy.transport.listen import open_listeners
from trioproxy.upstream.connect import tcp_connector
from trioproxy.upstream.pool import UpstreamPool, open_pools

log = logging.getLogger("trioproxy.server")


class Server:
    """One listening HTTP server running ``app``. ``serve`` reports the bound
    port through ``task_status`` (port 0 picks a free one)."""

    def __init__(
        self,
        config: Config,
        *,
        ssl_context: ssl.SSLContext | None = None,
        notify: Callable[[str], object] = lambda _message: None,
        loader: Callable[[], Config] | None = None,
        inherited: tuple[Sequence[socket.socket], Sequence[socket.socket]] | None = None,
        announce: bool = True,
    ) -> None:
        """``notify`` receives sd_notify messages (the CLI passes the real one;
        servers inside tests and the demo's fake stay silent). ``inherited``:
        listening sockets a supervisor bound (main, admin), used instead of
        binding ``listen`` and ``admin.listen``. ``announce``: log the
        configuration's summary at start (one worker of several does, not
        each of them the same lines)."""
        self.config = config
        self._announce = announce
        self._notify = notify
        self._loader = loader  # re-reads the configuration, for reload()
        self.state = ServerState(config)
        self.ssl_context = ssl_context
        if ssl_context is None and config.tls:
            self.ssl_context = make_server_ssl_context(config.tls_cert, config.tls_key)
        self._handlers_scope: trio.CancelScope | None = None
        self._grace_cut = trio.Event()  # stop accepting now, whatever is left of the grace
        self._inherited = inherited
        self.retiring = False  # replaced by a newer worker: see retire()
        self.stopped_accepting = trio.Event()  # this process's listeners are closed
        self.forced = False
        self.router = Router(config.routing)
        self.router.participants.append(self.state.book)  # callers' counts are shared too
        self.state.router = self.router
        self.pools: dict[str, UpstreamPool] = {}  # by provider name, while serving
        self._listeners: list[trio.SocketListener] = []
        self._admin_listeners: list[trio.SocketListener] = []
        self.port: int | None = None  # the main listener's port, once bound
        self.admin_port: int | None = None  # the admin listener's port, when there is one

    @property
    def pool(self) -> UpstreamPool | None:
        """The first provider's pool (the only one without [[providers]])."""
        return self.pools.get(self.config.routing.providers[0].name)

    def reload(self) -> bool:
        """Re-read the configuration (SIGHUP). New requests use the new one;
        requests in flight finish on the one they started with; open
        connections stay. What the running listener and pool were built from
        (listen address, upstream origin and pool settings, TLS on/off) needs a
        restart: a change there is logged and ignored. An invalid new
        configuration changes nothing. True if applied."""
        if self._loader is None:
            log.warning("reload requested, but this server has no configuration source")
            return False
        self._notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            new = load_checked(self._loader)
            if new.tls != self.config.tls:
                raise ConfigError("tls: turning TLS on or off needs a restart")
            new = keep_restart_only(self.config, new)
            ssl_context = make_server_ssl_context(new.tls_cert, new.tls_key) if new.tls else None
        except (ConfigError, OSError, ssl.SSLError) as exc:
            log.error("reload rejected; the running configuration stays in force: %s", exc)
            self._notify("READY=1\nSTATUS=reload rejected, previous configuration in force")
            return False
        if self._announce:  # one worker of several records it, not each
            self.state.audit.add(reload_changes(self.config, new))
        self.config = new
        self.state.reconfigure(new)
        # The ledger or the log turned on opens the database at the next
        # batch; retention changes apply at the next sweep.
        self.state.journal.keeping = Keeping.of(new)
        self.router.reconfigure(new.routing)
        if ssl_context is not None:
            self.ssl_context = ssl_context
        logging.getLogger().setLevel(new.log_level.upper())
        log.info(
            "configuration reloaded: %s; providers: %s",
            _describe_callers(self.state),
            _describe_providers(new),
        )
        self._notify("READY=1\nSTATUS=configuration reloaded")
        return True

    def begin_drain(self, *, grace: bool = True) -> None:
        """Start draining; ``grace=False`` skips (or cuts short) the drain
        grace: stop accepting now."""
        if not self.state.draining:
            self._notify("STOPPING=1\nSTATUS=draining")  # systemd: stop in progress
        self.state.begin_drain()
        if not grace:
            self._grace_cut.set()

    def retire(self) -> None:
        """A newer worker accepts on the same sockets now: stop accepting at
        once, then drain as on SIGTERM but with /health still 200 (the
        server as a whole is not going away). Idle keep-alive connections
        stay open for the drain grace, answering with `connection: close`,
        so a client that sends on one is served rather than reset."""
        if self.state.draining:
            return
        self.retiring = True
        self.state.listening.retiring = True
        self.state.begin_drain()

    def force_stop(self) -> None:
        self.forced = True
        self.state.begin_drain()
        if self._handlers_scope is not None:
            self._handlers_scope.cancel()

    async def bind(self, *, admin: bool = True) -> None:
        """Open the listeners (the admin one too, with ``admin`` and
        admin.listen set). Done first, before anything else starts, so that
        an address in use is a one-line ConfigError naming the setting."""
        cfg = self.config
        if self._inherited is not None and not self._listeners:
            main, admin_socks = self._inherited
            self._listeners = [_adopt(s) for s in main]
            self._admin_listeners = [_adopt(s) for s in admin_socks] if admin else []
        if not self._listeners:
            self._listeners = await open_listeners(cfg.listen, "listen")
        self.port = self._listeners[0].socket.getsockname()[1]
        if admin and cfg.admin_listen is not None and not self._admin_listeners:
            self._admin_listeners = await open_listeners(cfg.admin_listen, "admin.listen")
        if self._admin_listeners:
            self.admin_port = self._admin_listeners[0].socket.getsockname()[1]

    async def serve_app(
        self,
        app: App,
        *,
        admin_app: App | None = None,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until drained. Cancellation closes everything at once. With
        ``admin_app`` and ``admin.listen`` set, a second listener serves it
        (its port in ``self.admin_port``); both drain together."""
        try:
            await self.bind(admin=admin_app is not None)
        except BaseException:
            await self._close_listeners()
            raise
        listeners, admin_listeners = self._listeners, self._admin_listeners
        assert self.port is not None
        port = self.port

        async def _handle(stream: trio.SocketStream) -> None:
            # The context is looked up per connection, so a reload's new
            # certificate takes effect for the next handshake while open
            # connections keep theirs.
            await handle_connection(stream, shared, app, self.ssl_context)

        async def _handle_admin(stream: trio.SocketStream) -> None:
            assert admin_app is not None
            await handle_connection(stream, shared, admin_app, self.ssl_context)

        shared = self.state.listening
        async with trio.open_nursery() as keeper:  # the deadlines of every connection
            await keeper.start(shared.watchdog.serve)
            await self._serve_handlers(
                listeners, admin_listeners, _handle, _handle_admin, port, task_status
            )
            keeper.cancel_scope.cancel()
        log.info("stopped")

    async def _serve_handlers(
        self,
        listeners: list[trio.SocketListener],
        admin_listeners: list[trio.SocketListener],
        handle: Callable[[trio.SocketStream], Awaitable[None]],
        handle_admin: Callable[[trio.SocketStream], Awaitable[None]],
        port: int,
        task_status: trio.TaskStatus[int],
    ) -> None:
        """Accept until the drain grace is over, then let what is in flight
        finish within the drain deadline."""
        cfg, shared = self.config, self.state.listening
        async with trio.open_nursery() as handlers:
            self._handlers_scope = handlers.cancel_scope
            async with trio.open_nursery() as acceptors:
                acceptors.start_soon(
                    partial(trio.serve_listeners, handle, listeners, handler_nursery=handlers)
                )
                if admin_listeners:
                    acceptors.start_soon(
                        partial(
                            trio.serve_listeners,
                            handle_admin,
                            admin_listeners,
                            handler_nursery=handlers,
                        )
                    )
                task_status.started(port)
                await shared.drain_started.wait()
                if not self.retiring:
                    if cfg.timeouts.drain_grace > 0 and not self._grace_cut.is_set():
                        log.info(
                            "draining: /health answers 503; still accepting for %g s",
                            cfg.timeouts.drain_grace,
                        )
                    await self._grace()
                acceptors.cancel_scope.cancel()
            await self._close_listeners()
            self.stopped_accepting.set()
            if self.retiring:
                log.info(
                    "retiring: a newer worker accepts; idle connections close within %g s",
                    cfg.timeouts.drain_grace,
                )
                await self._grace(until_idle=True)
            shared.stop_accepting()
            log.info(
                "no longer accepting: %d request(s) in flight, %d connection(s); deadline %g s",
                shared.in_flight,
                shared.total_connections,
                cfg.timeouts.drain,
            )
            handlers.cancel_scope.deadline = min(
                handlers.cancel_scope.deadline, trio.current_time() + cfg.timeouts.drain
            )
        if handlers.cancel_scope.cancelled_caught and not self.forced:
            log.warning("drain deadline reached; remaining requests were cancelled")

    async def _grace(self, *, until_idle: bool = False) -> None:
        """The drain grace, or what is left of it until ``_grace_cut``; with
        ``until_idle``, also until no client connection is left (a retiring
        worker no longer accepts, so none can come)."""
        grace = self.config.timeouts.drain_grace
        if grace <= 0 or self._grace_cut.is_set():
            return
        waits = [self._grace_cut.wait]
        if until_idle:
            waits.append(self.state.listening.until_no_connections)
        with trio.move_on_after(grace):
            await first_of(*waits)

    async def _close_listeners(self) -> None:
        for listener in [*self._listeners, *self._admin_listeners]:
            await listener.aclose()

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """The proxy: the upstream pool, then the listeners in front of it.
        Raises ConfigError before listening if the binding policy forbids it,
        or if an address cannot be listened on."""
        problem = binding_problem(self.config)
        if problem:
            raise ConfigError(problem)
        try:
            await self.bind()
        except BaseException:
            await self._close_listeners()
            raise
        auth = self.config.auth
        if self._announce and not auth.enabled:
            log.warning(
                "caller auth is off (no callers: TRIOPROXY_AUTH_SECRETS, [[callers]] or "
                "TRIOPROXY_AUTH_CALLERS_FILE): %s",
                "trusting the front proxy to authenticate callers"
                if auth.trust_front_proxy and not is_loopback(self.config.listen.host)
                else "only this machine can reach the proxy",
            )
        if self._announce:
            log.info(
                "providers: %s; %s", _describe_providers(self.config), _describe_callers(self.state)
            )
        cfg = self.config
        await self.state.load_prices()
        await self.state.load_telemetry()
        upstreams = {p.name: p.upstream for p in cfg.routing.providers}
        connector = tcp_connector(self.state.listening.buffer)
        async with open_pools(
            upstreams, max_head_bytes=cfg.limits.max_head_bytes, connector=connector
        ) as pools:
            self.pools = self.state.pools = pools
            async with trio.open_nursery() as background:
                await background.start(self.router.serve, cfg.state_dir, cfg.state_redis_url)
                await background.start(self.state.callers.serve)
                if self.state.signin is not None:
                    await background.start(self.state.signin.issuer.serve)
                await background.start(self.state.alerts.serve)
                await background.start(self.state.audit.serve)
                if self.state.relay is not None:
                    await background.start(self.state.relay.serve)
                await background.start(watch, self.router, self.state.alerts)
                await background.start(self.router.watch_subscriptions)
                await background.start(self.router.watch_clouds)
                journal = Journal(
                    opener=functools.partial(open_database, cfg.database_url, cfg.state_dir),
                    keeping=Keeping.of(cfg),
                    log_rows=RowMaker(),
                )
                self.state.journal = journal
                reader = self.state.log_reader = LogReader(
                    functools.partial(open_database, cfg.database_url, cfg.state_dir, readonly=True)
                )
                await background.start(journal.serve)
                proxy = Proxy(self.state, pools, self.router)
                await background.start(serve_give_back, proxy.retention)
                try:
                    await self.serve_app(
                        proxy,
                        admin_app=AdminApp(self.state),
                        task_status=task_status,
                    )
                finally:
                    await reader.aclose()
                    if self.state.telemetry is not None:
                        # What is queued goes out, for 2 s at most, even on the way
                        # out; then the exporters stop (the thread ends by itself).
                        with trio.CancelScope(shield=True), trio.move_on_after(3):
                            await trio.to_thread.run_sync(
                                self.state.telemetry.shutdown, 2.0, abandon_on_cancel=True
                            )
                background.cancel_scope.cancel()

    async def serve_signals(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """SIGTERM drains (with the drain grace: what systemd and load
        balancers send), SIGINT drains without it (Ctrl-C at a terminal); a
        second signal stops at once; SIGHUP reloads."""
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                if signum == signal.SIGHUP:
                    log.info("SIGHUP: reloading the configuration")
                    self.reload()
                elif not self.state.draining:
                    log.info("%s: draining (send again to stop at once)", name)
                    self.begin_drain(grace=signum == signal.SIGTERM)
                else:
                    log.info("%s again: stopping now", name)
                    self.force_stop()
                    return


def _adopt(sock: socket.socket) -> trio.SocketListener:
    """A listening socket bound by the supervisor, as this process's listener.
    Closing it here closes only this process's descriptor: the socket stays
    open, and queued connections wait for the other workers."""
    return trio.SocketListener(trio.socket.from_stdlib_socket(sock))


def _describe_callers(state: ServerState) -> str:
    callers = state.callers.callers()
    names = ", ".join(c.name for c in callers[:20]) + (", ..." if len(callers) > 20 else "")
    return f"{len(callers)} caller(s): {names or '-'}"


def _describe_providers(cfg: Config) -> str:
    """For the log: names, where they point, and the credential mode."""
    return ", ".join(
        f"{p.name}={p.upstream.origin} ({_credential_mode(p)}{'' if p.enabled else ', disabled'})"
        for p in cfg.routing.providers
    )


def _credential_mode(p: ProviderConfig) -> str:
    if p.cloud:
        return f"{p.kind} {p.region}"
    return "subscription" if p.oauth_file else "inject" if p.upstream.credential else "passthrough"
