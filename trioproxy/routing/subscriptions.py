"""Subscription providers at run time: each one's token, read from its
credentials file again whenever the file changes (its inode, size and
modification time, looked at every WATCH_EVERY seconds), and whether it
can be used now.

A token past its expiry, or a file that went missing or bad, makes the
provider unusable: the router skips it (``Router.unusable``), it is shown
in /admin/providers, and it is logged once per change of reason. It is
never sent. The proxy never refreshes a token: whoever owns the file
(Claude Code) does, and the next look picks the new one up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio

from trioproxy._util import FileStamp, file_stamp
from trioproxy.config.callers import format_time
from trioproxy.config.model import Credential, RoutingConfig
from trioproxy.config.oauth import OAuthToken, read_oauth_file

log = logging.getLogger("trioproxy.oauth")

WATCH_EVERY = 0.5  # seconds between looks at the credentials files


@dataclass
class _Watched:
    path: str
    stamp: FileStamp = None
    token: OAuthToken | None = None
    problem: str = ""  # why the file gave no token


class Subscriptions:
    def __init__(self, routing: RoutingConfig, *, wall: Callable[[], float] = time.time) -> None:
        self.wall = wall
        self._files: dict[str, _Watched] = {}
        self._said: dict[str, str] = {}  # provider -> the reason last logged
        self.reconfigure(routing)

    def reconfigure(self, routing: RoutingConfig) -> None:
        files: dict[str, _Watched] = {}
        for p in routing.providers:
            if p.oauth_file:
                old = self._files.get(p.name)
                files[p.name] = (
                    old if old is not None and old.path == p.oauth_file else _Watched(p.oauth_file)
                )
        self._files = files
        self.refresh()

    def credential(self, name: str) -> Credential | None:
        """The header to send for provider ``name`` now; None when its
        token cannot be used (expired, unreadable)."""
        w = self._files.get(name)
        if w is None or w.token is None or w.token.expired(self.wall()):
            return None
        return Credential(b"authorization", b"Bearer " + w.token.access)

    def unusable(self) -> dict[str, str]:
        """Provider -> why it cannot be used now."""
        now = self.wall()
        out: dict[str, str] = {}
        for name, w in self._files.items():
            if w.token is None:
                out[name] = w.problem
            elif w.token.expired(now):
                assert w.token.expires_at is not None
                out[name] = (
                    f"its subscription token expired at {format_time(w.token.expires_at)}; "
                    f"sign in again with Claude Code to rewrite {w.path}"
                )
        return out

    def expiring(self, within: float) -> dict[str, float]:
        """Provider -> when its token expires, for tokens not expired yet
        that will be within ``within`` seconds (Claude Code did not refresh
        the file)."""
        now = self.wall()
        return {
            name: w.token.expires_at
            for name, w in self._files.items()
            if w.token is not None
            and w.token.expires_at is not None
            and now < w.token.expires_at <= now + within
        }

    def refresh(self) -> bool:
        """Read the files that changed (synchronous: small files, from a
        thread while serving). True when any was read."""
        read = False
        for w in self._files.values():
            stamp = file_stamp(w.path)
            if stamp == w.stamp and (w.token is not None or w.problem):
                continue
            w.stamp = stamp
            read = True
            try:
                w.token, w.problem = read_oauth_file(w.path), ""
            except ValueError as exc:
                w.token, w.problem = None, f"its credentials file: {exc}"
        return read

    def report(self) -> dict[str, str]:
        """What is unusable now, logging each provider's change once."""
        now_unusable = self.unusable()
        for name, why in now_unusable.items():
            if self._said.get(name) != why:
                log.error("provider %s is not used: %s", name, why)
        for name in set(self._said) - set(now_unusable):
            log.warning("provider %s: its subscription token is usable again", name)
        self._said = dict(now_unusable)
        return now_unusable

    def _refresh_if_changed(self) -> None:
        if any(file_stamp(w.path) != w.stamp for w in self._files.values()):
            self.refresh()

    async def serve(
        self,
        apply: Callable[[dict[str, str]], None],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Watch the files until cancelled; ``apply`` gets what is unusable
        after every look (the router's ``unusable``)."""
        apply(self.report())
        task_status.started()
        while True:
            await trio.sleep(WATCH_EVERY)
            if self._files:
                # In a thread, even the stats: a slow disk must not stall the loop.
                await trio.to_thread.run_sync(self._refresh_if_changed)
                apply(self.report())
