"""The server's side of the audit trail (Trio): changes are queued by
whatever made them (an admin endpoint, a reload) and written by a task
of their own in a worker thread, so no admin answer and no signal handler
waits on the database."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import trio

from trioproxy.audit.changes import Change
from trioproxy.audit.trail import Opener, write

log = logging.getLogger("trioproxy.audit")

QUEUE = 1000


class Auditor:
    def __init__(self, opener: Opener) -> None:
        self._opener = opener
        self._send, self._receive = trio.open_memory_channel[Sequence[Change]](QUEUE)
        self.written = 0  # changes written (tests wait on it)

    def add(self, changes: Sequence[Change]) -> None:
        if not changes:
            return
        try:
            self._send.send_nowait(changes)
        except trio.WouldBlock:
            for c in changes:
                log.error(
                    "audit trail: %s of %r by %s not recorded (queue full)",
                    c.action,
                    c.subject,
                    c.who,
                )

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for changes in self._receive:
            if await trio.to_thread.run_sync(write, self._opener, changes):
                self.written += len(changes)
