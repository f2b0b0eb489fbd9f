"""The identity provider's keys, and who a token is (Trio).

At start the issuer's discovery document (``/.well-known/openid-configuration``)
names its ``issuer`` and ``jwks_uri``; the key set is fetched from there,
then again every REFRESH_EVERY seconds, and at once when a token names a
key not in it (the IdP rotated its keys), at most once per MIN_REFETCH_S:
a stream of tokens with made-up key ids never becomes a stream of requests
to the IdP. Fetches run in a worker thread (``urllib``, blocking), never on
the event loop, one at a time.

A token checked once is remembered until it expires (by its SHA-256, at
most MAX_KEPT): requests after the first cost a hash and a lookup, not a
signature check. No call to the IdP is made per request.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Sequence

import orjson
import trio

from trioproxy.config.model import Caller, CallerGroup, OIDCConfig
from trioproxy.oidc.policy import Refused, policy_for
from trioproxy.oidc.tokens import Key, TokenRejected, UnknownKey, key_set, verify

log = logging.getLogger("trioproxy.callers")

REFRESH_EVERY = 3600.0  # seconds between routine key set fetches
MIN_REFETCH_S = 10.0  # at most one fetch for unknown keys in this long
RETRY_S = 5.0  # after a failed fetch at start
FETCH_TIMEOUT_S = 5.0
MAX_DOCUMENT = 1 << 20  # bytes of a discovery document or key set
MAX_KEPT = 10_000  # tokens remembered

Fetch = Callable[[str], bytes]


def fetch_url(url: str) -> bytes:
    """GET ``url`` (blocking: run in a thread)."""
    request = urllib.request.Request(url, headers={"accept": "application/json"})
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as answer:
        return bytes(answer.read(MAX_DOCUMENT + 1))[: MAX_DOCUMENT + 1]


class FetchFailed(Exception):
    pass


class Issuer:
    """The issuer's keys, kept current."""

    def __init__(self, oidc: OIDCConfig, fetch: Fetch = fetch_url) -> None:
        self.oidc = oidc
        self._fetch = fetch
        self.issuer = oidc.issuer  # as its discovery document names it
        self.keys: dict[str, Key] = {}
        self.fetches = 0  # key set fetches made (tests count them)
        self._jwks_uri = ""
        self._last = -math.inf  # monotonic time a token's unknown key last caused a fetch
        self._done = -math.inf  # ... and any fetch ended
        self._lock = trio.Lock()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Fetch the keys, then keep them current, until cancelled. Serving
        starts at once: until the first fetch succeeds, tokens are refused
        (401, the keys are not known yet)."""
        task_status.started()
        while True:
            ok = await self.refresh(force=True)
            await trio.sleep(REFRESH_EVERY if ok else RETRY_S)

    async def refresh(self, *, force: bool = False) -> bool:
        """Fetch the key set again (not within MIN_REFETCH_S of the last,
        unless ``force``); True when the keys are current. Concurrent
        callers share one fetch."""
        started = time.monotonic()
        async with self._lock:
            if self._done >= started:
                return True  # fetched while this caller waited
            if not force:
                if started - self._last < MIN_REFETCH_S:
                    return False
                self._last = time.monotonic()  # only these are rate-limited
            try:
                await trio.to_thread.run_sync(self._load)
            except FetchFailed as exc:
                log.error("identity provider %s: %s", self.oidc.issuer, exc)
                return False
            finally:
                self._done = time.monotonic()
            return True

    def _load(self) -> None:
        """Discovery (once), then the key set: in a worker thread."""
        if not self._jwks_uri:
            url = self.oidc.issuer.rstrip("/") + "/.well-known/openid-configuration"
            doc = self._json(url, "its discovery document")
            issuer, jwks_uri = doc.get("issuer"), doc.get("jwks_uri")
            if issuer != self.oidc.issuer and issuer != self.oidc.issuer.rstrip("/"):
                raise FetchFailed(
                    f"its discovery document names the issuer {issuer!r}, not "
                    f"{self.oidc.issuer!r} (auth.oidc.issuer must be the IdP's own)"
                )
            if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
                raise FetchFailed("its discovery document has no jwks_uri")
            self.issuer, self._jwks_uri = issuer, jwks_uri
        keys = key_set(self._json(self._jwks_uri, "its key set (jwks_uri)"))
        self.fetches += 1
        if not keys:
            raise FetchFailed("its key set has no signing key this proxy can use")
        if set(keys) != set(self.keys):
            log.info("identity provider %s: %d signing key(s)", self.oidc.issuer, len(keys))
        self.keys = keys

    def _json(self, url: str, what: str) -> dict[str, object]:
        try:
            raw = self._fetch(url)
        except OSError as exc:
            raise FetchFailed(f"cannot fetch {what} at {url}: {exc}") from None
        if len(raw) > MAX_DOCUMENT:
            raise FetchFailed(f"{what} at {url} is over {MAX_DOCUMENT} bytes")
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise FetchFailed(f"{what} at {url} is not JSON") from None
        if not isinstance(doc, dict):
            raise FetchFailed(f"{what} at {url} is not a JSON object")
        return doc


class SignIn:
    """Who a presented token is: the user as a caller with their groups'
    policy, or why not (TokenRejected: 401; Refused: 403)."""

    def __init__(self, issuer: Issuer, groups: Sequence[CallerGroup]) -> None:
        self.issuer = issuer
        self.groups = tuple(groups)
        self._kept: OrderedDict[bytes, tuple[Caller | Refused, float]] = OrderedDict()

    def caller(self, token: bytes, now: float) -> Caller:
        """The caller ``token`` signs in (raises TokenRejected or Refused)."""
        digest = hashlib.sha256(token).digest()
        kept = self._kept.get(digest)
        if kept is not None and now < kept[1]:
            if isinstance(kept[0], Refused):
                raise kept[0]
            return kept[0]
        oidc = self.issuer.oidc
        if not self.issuer.keys:
            raise UnknownKey(
                f"the identity provider's keys are not known yet ({oidc.issuer} did not answer)"
            )
        identity = verify(token.decode("ascii"), self.issuer.keys, oidc, self.issuer.issuer)
        until = identity.expires + oidc.leeway_s
        try:
            answer: Caller | Refused = policy_for(identity, oidc, self.groups)
        except Refused as exc:
            answer = exc
        self._kept[digest] = (answer, until)
        while len(self._kept) > MAX_KEPT:
            self._kept.popitem(last=False)
        if isinstance(answer, Refused):
            raise answer
        return answer


__all__ = ["Issuer", "Refused", "SignIn", "TokenRejected", "UnknownKey"]
