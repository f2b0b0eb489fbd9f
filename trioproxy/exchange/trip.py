"""One request's trip through the proxy: what every step of the exchange
(forward.py, attempt.py, respond.py) and every stage may read about it.

A trip keeps the configuration the request started with: a reload (SIGHUP)
changes what new requests see, never one in flight.
"""

from __future__ import annotations

import logging

from trioproxy.accounting.pricing import PriceBook
from trioproxy.accounting.record import RequestRecord
from trioproxy.config.model import Caller, Config, Route
from trioproxy.convlog.capture import Capture
from trioproxy.inbound.exchange import ClientExchange
from trioproxy.rules.transform import ParsedBody, parse_body
from trioproxy.scrub.engine import Scrubber
from trioproxy.telemetry.relay import Relay
from trioproxy.transport.watchdog import Watchdog

log = logging.getLogger("trioproxy.exchange")

MESSAGES = b"/v1/messages"


class Trip:
    __slots__ = (
        "_parsed",
        "caller",
        "capture",
        "cfg",
        "ex",
        "home",
        "messages",
        "prices",
        "record",
        "relay",
        "restore",
        "route",
        "watchdog",
    )

    def __init__(
        self, cfg: Config, ex: ClientExchange, record: RequestRecord, watchdog: Watchdog
    ) -> None:
        self.cfg = cfg
        self.ex = ex
        self.record = record
        self.watchdog = watchdog  # keeps the upstream body idle deadline
        self.caller: Caller | None = None  # who asked (None: caller auth is off)
        self.route: Route | None = None  # the [[routes]] rule the plan chose (plan.py)
        self.restore: dict[str, str] = {}  # placeholder -> original, for the answer
        self.home = ""  # the family whose thinking signatures the history carries (plan.py)
        # A Messages request: its answer carries usage (and later, demotion applies).
        self.messages = ex.head.method == b"POST" and ex.head.path == MESSAGES
        self._parsed: ParsedBody | None = None
        self.capture: Capture | None = None  # the bodies, for the conversation log
        self.prices: PriceBook | None = None  # the server's, for a USD budget's refusal (plan.py)
        self.relay: Relay | None = None  # the server's telemetry relay (telemetry.relay_to)

    def rebind(self, ex: ClientExchange) -> None:
        """A client of another format, once its request is read: from now on
        the trip sees the Messages request it stands for."""
        self.ex = ex
        self.messages = ex.head.method == b"POST" and ex.head.path == MESSAGES

    def parsed_body(self, body: bytes) -> ParsedBody | None:
        """``body`` parsed as a JSON object, once per distinct body (the
        scrubber's parse is reused); None if it is not one."""
        parsed = self._parsed
        if parsed is None or parsed.raw is not body:
            parsed = self._parsed = parse_body(body)
        return parsed

    def scrub(self, raw: bytes) -> bytes:
        """The body with credentials and identifiers replaced; the mapping
        to put them back is kept for this request only (never logged)."""
        scrub = self.cfg.scrub
        assert scrub is not None
        result = Scrubber(
            scrub.hmac_key, max_body_bytes=scrub.max_body_bytes, allow=scrub.allow
        ).scrub(raw)
        record = self.record
        record.scrub_hits = sum(result.hits.values())
        record.scrub_detail = dict(result.hits)
        if result.skipped:
            record.unscrubbed = result.skipped
            if result.skipped == "too_large":
                log.warning(
                    "%s: request body of %d bytes passed unscrubbed (scrub.max_body_bytes %d)",
                    record.request_id,
                    len(raw),
                    scrub.max_body_bytes,
                )
        if scrub.restore:
            self.restore = result.mapping
        if isinstance(result.doc, dict):
            self._parsed = ParsedBody(result.body, result.doc)
        return result.body
