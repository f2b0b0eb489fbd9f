"""Who the callers are right now: ``auth.secrets``, ``[[callers]]`` and the
callers file, indexed by the SHA-256 of each secret.

The callers file is watched (its size, modification time and inode, every
WATCH_EVERY seconds) and read again when it changes, so ``trioproxy
callers`` and ``/admin/callers`` take effect within a second without a
restart; ``/admin/callers`` also applies its own write at once. A file
that does not parse leaves the callers as they were (logged). A reload
(SIGHUP) replaces the configuration's part.
"""

from __future__ import annotations

import logging

import trio

from trioproxy._util import FileStamp, file_stamp
from trioproxy.config.callers import check_unique, digest, from_secrets, read_callers_file
from trioproxy.config.model import AuthConfig, Caller

log = logging.getLogger("trioproxy.callers")

WATCH_EVERY = 0.5  # seconds between looks at the callers file


class Directory:
    def __init__(self, auth: AuthConfig) -> None:
        self._auth = auth
        self._from_file: tuple[Caller, ...] = ()
        self._stamp: FileStamp = None
        self._warned: set[str] = set()
        self.index: dict[bytes, Caller] = {}
        self.by_name: dict[str, Caller] = {}
        self._load_file(initial=True)

    @property
    def enabled(self) -> bool:
        return self._auth.enabled

    @property
    def path(self) -> str:
        return self._auth.callers_file

    def lookup(self, secret: bytes) -> Caller | None:
        return self.index.get(digest(secret))

    def callers(self) -> list[Caller]:
        return list(self.by_name.values())

    def source(self, name: str) -> str:
        """Where a caller is defined: only the file's are managed at run time."""
        if any(c.name == name for c in self._from_file):
            return "file"
        if any(s.name == name for s in self._auth.secrets):
            return "auth.secrets"
        return "config"

    def reconfigure(self, auth: AuthConfig) -> None:
        self._auth = auth
        self._stamp = None
        self._load_file(initial=True)

    def refresh(self) -> bool:
        """Read the file again if it changed; True when the callers changed."""
        return self._load_file(initial=False)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch the callers file until cancelled."""
        task_status.started()
        while True:
            await trio.sleep(WATCH_EVERY)
            if self.path:
                # In a thread, even the stat: a file on a slow or network
                # disk must not stall the event loop.
                await trio.to_thread.run_sync(self.refresh)

    def _load_file(self, *, initial: bool) -> bool:
        path = self.path
        stamp = file_stamp(path) if path else None
        if not initial and stamp == self._stamp:
            return False
        static = (*from_secrets(self._auth.secrets), *self._auth.callers)
        try:
            from_file = read_callers_file(path) if path else ()
            check_unique((*static, *from_file), "callers")
        except ValueError as exc:
            if not initial:
                log.error("callers file not applied; the callers stay as they were: %s", exc)
                self._stamp = stamp
                return False
            log.error("callers file not applied: %s", exc)
            from_file = ()
        self._stamp = stamp
        before = set(self.by_name)
        self._from_file = from_file
        by_name: dict[str, Caller] = {}
        index: dict[bytes, Caller] = {}
        for c in (*static, *from_file):
            if c.name in by_name:
                continue  # a duplicate the error above already reported
            by_name[c.name] = c
            for d in c.digests:
                index.setdefault(d, c)
            if c.plaintext and c.name not in self._warned:
                self._warned.add(c.name)
                log.warning(
                    "caller %s: secrets in plain text; store secret_sha256 instead "
                    "(trioproxy callers rotate %s writes one)",
                    c.name,
                    c.name,
                )
        changed = by_name != self.by_name
        self.by_name, self.index = by_name, index
        if changed and not initial:
            added, gone = set(by_name) - before, before - set(by_name)
            log.info(
                "callers file applied: %d caller(s)%s%s",
                len(by_name),
                f"; added {', '.join(sorted(added))}" if added else "",
                f"; removed {', '.join(sorted(gone))}" if gone else "",
            )
        return changed
