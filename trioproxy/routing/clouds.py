"""Cloud providers' credentials at run time (``kind = "bedrock"``): each
one's AWS credentials, resolved and refreshed in worker threads
(upstream/aws.py), and whether it can be used now.

A provider without usable credentials (none found, a refresh that failed
past their expiry) is skipped by the router (``Router.unusable``), shown in
/admin/providers with the reason, and logged once per change of reason,
never with a secret. The request path only reads what was resolved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

import trio

from trioproxy.bedrock.request import SIGNING_NAME
from trioproxy.config.model import ProviderConfig, RoutingConfig
from trioproxy.proto.events import RequestHead
from trioproxy.upstream.aws import CHECK_EVERY, AwsCredentials, sign

log = logging.getLogger("trioproxy.aws")

Signer = Callable[[RequestHead, bytes], RequestHead]


class Clouds:
    def __init__(self, routing: RoutingConfig, *, check_every: float = CHECK_EVERY) -> None:
        self.check_every = check_every
        self._aws: dict[str, AwsCredentials] = {}
        self._said: dict[str, str] = {}  # provider -> the reason last logged
        self._changed = trio.Event()  # a reload named credentials not resolved yet
        self.reconfigure(routing)

    def reconfigure(self, routing: RoutingConfig) -> None:
        """A reload keeps what was resolved for a provider whose profile is
        unchanged; a new one is resolved by the next check (``serve``)."""
        aws: dict[str, AwsCredentials] = {}
        for p in routing.providers:
            if p.kind == "bedrock":
                old = self._aws.get(p.name)
                if old is None or old.profile != p.aws_profile:
                    old = AwsCredentials(p.aws_profile)
                    self._changed.set()
                aws[p.name] = old
        self._aws = aws

    @property
    def empty(self) -> bool:
        return not self._aws

    def signer(self, provider: ProviderConfig) -> Signer | None:
        """How to sign a request to ``provider`` now (None: it needs no
        signature, or has no credentials, which the plan already knew)."""
        creds = self._aws.get(provider.name)
        if creds is None or creds.frozen is None:
            return None
        return partial(sign, credentials=creds.frozen, region=provider.region, service=SIGNING_NAME)

    def unusable(self) -> dict[str, str]:
        """Provider -> why it cannot be used now."""
        return {
            name: f"its AWS credentials: {c.problem or 'not resolved yet'}"
            for name, c in self._aws.items()
            if c.frozen is None
        }

    def state(self, name: str) -> dict[str, object] | None:
        creds = self._aws.get(name)
        return None if creds is None else creds.state()

    def resolve_all(self) -> None:
        """Blocking (botocore): in a worker thread."""
        for creds in list(self._aws.values()):
            creds.resolve()

    def report(self) -> dict[str, str]:
        """What is unusable now, each change logged once (a failed refresh
        of credentials still valid is logged too, as a warning)."""
        now = self.unusable()
        for name, creds in self._aws.items():
            if creds.refreshed_at is None and not creds.problem:
                continue  # not asked yet (a reload): the next check says
            why = now.get(name) or (f"refresh failed: {creds.problem}" if creds.problem else "")
            if why and self._said.get(name) != why:
                if name in now:
                    log.error("provider %s is not used: %s", name, why)
                else:
                    log.warning("provider %s: its AWS credentials %s", name, why)
            elif not why and self._said.get(name):
                log.warning("provider %s: its AWS credentials are usable again", name)
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
        if self._aws:
            await trio.to_thread.run_sync(self.resolve_all)
        apply(self.report())
        task_status.started()
        while True:
            with trio.move_on_after(self.check_every):
                await self._changed.wait()
            self._changed = trio.Event()
            if self._aws:
                await trio.to_thread.run_sync(self.resolve_all)
                apply(self.report())
