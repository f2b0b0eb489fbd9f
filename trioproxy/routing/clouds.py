"""Cloud providers' credentials at run time: each Bedrock provider's AWS
credentials (upstream/aws.py) and each Vertex provider's Google token
(upstream/gcp.py), resolved and refreshed in worker threads, and whether
it can be used now.

A provider without usable credentials (none found, a refresh that failed
past their expiry) is skipped by the router (``Router.unusable``), shown in
/admin/providers with the reason, and logged once per change of reason,
never with a secret. The request path only reads what was resolved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from trioproxy.config.model import ProviderConfig, RoutingConfig
from trioproxy.proto.events import ResponseHead
from trioproxy.upstream.aws import AwsCredentials, Signer
from trioproxy.upstream.gcp import GoogleCredentials

log = logging.getLogger("trioproxy.aws")


Credentials = AwsCredentials | GoogleCredentials
_WORDS = {"bedrock": "AWS credentials", "vertex": "Google credentials"}


def _made_for(provider: ProviderConfig) -> Credentials | None:
    if provider.kind == "bedrock":
        return AwsCredentials(provider.aws_profile)
    if provider.kind == "vertex":
        return GoogleCredentials(provider.credentials_file)
    return None


class Clouds:
    def __init__(self, routing: RoutingConfig) -> None:
        self.check_every = routing.credentials_check_s
        self._creds: dict[str, Credentials] = {}
        self._kinds: dict[str, str] = {}
        self._said: dict[str, str] = {}  # provider -> the reason last logged
        self._refused: dict[str, str] = {}  # provider -> the cloud's last refusal, logged
        self._changed = trio.Event()  # a reload named credentials not resolved yet
        self.reconfigure(routing)

    def reconfigure(self, routing: RoutingConfig) -> None:
        """A reload keeps what was resolved for a provider whose source is
        unchanged; a new one is resolved by the next check (``serve``)."""
        if routing.credentials_check_s != self.check_every:
            self.check_every = routing.credentials_check_s
            self._changed.set()
        creds: dict[str, Credentials] = {}
        for p in routing.providers:
            old = self._creds.get(p.name)
            if old is None or not old.same_source(p):
                old = _made_for(p)
                if old is None:
                    continue
                self._changed.set()
            creds[p.name] = old
            self._kinds[p.name] = p.kind
        self._creds = creds

    def refused(self, name: str, head: ResponseHead) -> None:
        """The cloud refused a request's credentials (401, 403): logged once
        per provider and kind of refusal, and shown in /admin/providers,
        never with a secret. The provider stays in routing: an access
        denied may be for one model only."""
        if name not in self._creds:
            return
        kind = (head.header(b"x-amzn-errortype") or b"").decode("latin-1").split(":")[0]
        why = f"HTTP {head.status}" + (f" {kind}" if kind else "")
        if self._refused.get(name) != why:
            self._refused[name] = why
            log.error(
                "provider %s: the cloud refused its %s (%s): check them",
                name,
                _WORDS[self._kinds[name]],
                why,
            )

    @property
    def empty(self) -> bool:
        return not self._creds

    def signer(self, provider: ProviderConfig) -> Signer | None:
        """How to add the cloud's credential to a request to ``provider``
        now (None: it has none, which the plan already knew)."""
        creds = self._creds.get(provider.name)
        return None if creds is None else creds.signer(provider)

    def unusable(self) -> dict[str, str]:
        """Provider -> why it cannot be used now."""
        return {
            name: f"its {_WORDS[self._kinds[name]]}: {c.problem or 'not resolved yet'}"
            for name, c in self._creds.items()
            if not c.usable
        }

    def state(self, name: str) -> dict[str, object] | None:
        creds = self._creds.get(name)
        if creds is None:
            return None
        return {**creds.state(), "refused": self._refused.get(name, "")}

    def resolve_all(self) -> None:
        """Blocking (botocore, google-auth): in a worker thread."""
        for creds in list(self._creds.values()):
            creds.resolve()

    def report(self) -> dict[str, str]:
        """What is unusable now, each change logged once (a failed refresh
        of credentials still valid is logged too, as a warning)."""
        now = self.unusable()
        for name, creds in self._creds.items():
            if creds.refreshed_at is None and not creds.problem:
                continue  # not asked yet (a reload): the next check says
            why = now.get(name) or (f"refresh failed: {creds.problem}" if creds.problem else "")
            if why and self._said.get(name) != why:
                if name in now:
                    log.error("provider %s is not used: %s", name, why)
                else:
                    log.warning("provider %s: its %s %s", name, _WORDS[self._kinds[name]], why)
            elif not why and self._said.get(name):
                log.warning("provider %s: its %s are usable again", name, _WORDS[self._kinds[name]])
            self._said[name] = why
        return now

    async def serve(
        self,
        apply: Callable[[dict[str, str]], None],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Resolve, then check again every ``check_every`` seconds, until
        cancelled; ``apply`` gets what is unusable after every check. A
        check that is cancelled finishes in its thread (botocore cannot be
        interrupted) and its result is dropped."""
        if self._creds:
            await trio.to_thread.run_sync(self.resolve_all)
        apply(self.report())
        task_status.started()
        while True:
            with trio.move_on_after(self.check_every):
                await self._changed.wait()
            self._changed = trio.Event()
            if self._creds:
                await trio.to_thread.run_sync(self.resolve_all)
                apply(self.report())
