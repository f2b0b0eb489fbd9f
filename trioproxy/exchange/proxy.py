"""The proxy application: one request, from its head to its access line.

In order: a CORS preflight from a listed origin is answered (before auth,
never forwarded, never counted); the proxy's own endpoints are served;
anything else is a caller's request: authenticated, forwarded
(forward.py), and accounted for: metrics and quotas at once, the access
line and the ledger row through the journal (written off the loop), and a
diagnostic line when the forward failed. Errors the proxy makes are mapped
to Anthropic's shape here, once (errors.py).
"""

from __future__ import annotations

import logging
import time

from trioproxy.accounting.record import RequestRecord
from trioproxy.admin.endpoints import is_own, serve_own
from trioproxy.config.model import Config
from trioproxy.errors import ProxyError, error_response
from trioproxy.exchange.cors import CorsExchange
from trioproxy.exchange.forward import Forwarding
from trioproxy.exchange.trip import Trip
from trioproxy.inbound.exchange import ClientExchange, respond
from trioproxy.pipeline.access import check_caller
from trioproxy.pipeline.cors import allowed_origin, is_preflight, preflight_answer
from trioproxy.routing.router import Router, usage_tokens
from trioproxy.state import ServerState
from trioproxy.upstream.pool import UpstreamPool

diag = logging.getLogger("trioproxy.diag")  # one line per failed forward


class Proxy:
    """The proxy application: own endpoints, else forward upstream."""

    def __init__(self, state: ServerState, pools: dict[str, UpstreamPool], router: Router) -> None:
        self.state = state
        self.pools = pools
        self.router = router

    async def __call__(self, ex: ClientExchange) -> None:
        state = self.state
        cfg = state.config  # this request's snapshot
        if cfg.cors_allow_origins:
            origin = allowed_origin(ex.head, cfg.cors_allow_origins)
            if origin is not None:
                if is_preflight(ex.head):  # before auth; never forwarded, never counted
                    await respond(ex, preflight_answer(ex.head, origin), b"")
                    return
                ex = CorsExchange(ex, origin)
        head = ex.head
        if is_own(head):
            await serve_own(ex, state)
            return
        record = RequestRecord(
            ex.request_id, head.method.decode("latin-1"), head.path.decode("latin-1"), ex.protocol
        )
        record.peer = ex.peer
        target = head.target
        if b"?" in target:
            record.query = target.partition(b"?")[2].decode("latin-1")
        beta = head.header(b"anthropic-beta")
        if beta:
            record.anthropic_beta = beta.decode("latin-1")[:1000]
        trip = Trip(cfg, ex, record, state.listening.watchdog)
        try:
            record.caller = check_caller(head, cfg.auth) or ""
            await Forwarding(trip, self.pools, self.router).run()
        except ProxyError as exc:
            record.status, record.error = exc.status, exc.detail
            await _fail(ex, exc)
        except BaseException:
            record.client_disconnected = True  # cancelled: the client went away (or shutdown)
            raise
        finally:
            self._account(record, cfg)

    def _account(self, record: RequestRecord, cfg: Config) -> None:
        record.duration_s = time.monotonic() - record.started_monotonic
        if record.provider:
            # Abandoned streams count too: the provider served those tokens.
            self.router.record_usage(record.provider, usage_tokens(record.usage))
        state = self.state
        state.metrics.observe(record)
        state.journal.add(record, cfg)  # the access line and the ledger row, off the loop
        if record.forward_failed or record.status >= 500:  # ours or the upstream's 5xx
            diag.warning("%s", record.diagnostic())


async def _fail(ex: ClientExchange, exc: ProxyError) -> None:
    """The proxy's own answer, in Anthropic's shape; a response already
    under way is cut instead (never a body that looks complete)."""
    if ex.response_started:
        await ex.abort()
        return
    head, body = error_response(exc, ex.request_id)
    await respond(ex, head, body)
