"""One worker: the proxy on listening sockets a supervisor bound, and the
control channel to that supervisor (see channel.py for the messages)."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import trio

from trioproxy.admin.snapshot import snapshot
from trioproxy.alerts.events import worker_restarted
from trioproxy.config import Config
from trioproxy.server import Server
from trioproxy.workers.channel import (
    GATHER,
    GATHERED,
    READY,
    REPLACED,
    REPORT,
    RETIRE,
    RETIRED,
    ROUTE,
    TELL_OTHERS,
    WorkerFds,
)
from trioproxy.workers.link import Link

log = logging.getLogger("trioproxy.worker")

GATHER_TIMEOUT = 2.0  # seconds to wait for the merged view before answering with our own
HEARTBEAT = 1.0  # seconds between unasked reports: what a crash can lose of the counters


def _inherit(fd: int) -> socket.socket:
    sock = socket.socket(fileno=fd)
    sock.set_inheritable(False)  # our own children (none today) do not get it
    return sock


class SupervisedPeers:
    """``ServerState.peers`` of a worker: the supervisor asks every worker
    for its snapshot and answers with the merge."""

    def __init__(self, link: Link) -> None:
        self._link = link
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[trio.Event, list[dict[str, Any]]]] = {}

    async def gather(self) -> dict[str, Any] | None:
        gid = next(self._ids)
        done, box = self._waiting[gid] = (trio.Event(), [])
        try:
            await self._link.send({GATHER: gid})
            with trio.move_on_after(GATHER_TIMEOUT):
                await done.wait()
        except OSError:
            pass
        finally:
            del self._waiting[gid]
        return box[0] if box else None

    def answered(self, gid: int, snap: dict[str, Any]) -> None:
        entry = self._waiting.get(gid)
        if entry is not None:
            entry[1].append(snap)
            entry[0].set()

    async def tell_others(self, message: dict[str, Any]) -> None:
        try:
            await self._link.send({TELL_OTHERS: message})
        except OSError:
            log.warning("could not reach the supervisor to tell the other workers")


async def run_worker(config: Config, loader: Callable[[], Config], fds: WorkerFds) -> int:
    """Serve until drained: on SIGTERM/SIGINT (from the supervisor), on
    "retire" (a newer worker took this one's place), or when the supervisor
    is gone. The exit code is 1 after a forced stop, else 0."""
    server = Server(
        config,
        loader=loader,
        inherited=([_inherit(fd) for fd in fds.listen], [_inherit(fd) for fd in fds.admin]),
        announce=fds.slot == 0,
    )
    link = Link(trio.socket.from_stdlib_socket(_inherit(fds.control)))
    peers = server.state.peers = SupervisedPeers(link)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve_signals)

            async def _serve(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
                await server.serve(task_status=task_status)
                nursery.cancel_scope.cancel()

            await nursery.start(_serve)
            try:
                await link.send({READY: os.getpid()})
            except OSError:
                server.retire()  # the supervisor is already gone
            nursery.start_soon(_follow, link, server, peers)
            nursery.start_soon(_heartbeat, link, server)
        # The last word: what this worker counted, kept by the supervisor.
        with trio.move_on_after(1), contextlib.suppress(OSError):
            await link.send({REPORT: None, "snapshot": snapshot(server.state)})
    finally:
        link.close()
    return 1 if server.forced else 0


async def _heartbeat(link: Link, server: Server) -> None:
    while True:
        await trio.sleep(HEARTBEAT)
        with contextlib.suppress(OSError):
            await link.send({REPORT: None, "snapshot": snapshot(server.state)})


async def _follow(link: Link, server: Server, peers: SupervisedPeers) -> None:
    """Obey the supervisor; when it is gone (end of file, a broken channel),
    retire: nobody would restart this worker, and it must not keep the port."""
    try:
        async for msg in link.messages():
            if msg.get(RETIRE):
                log.info("retiring: replaced by a newer worker")
                server.retire()
                await server.stopped_accepting.wait()
                await link.send({RETIRED: os.getpid()})
            elif REPORT in msg:
                await link.send({REPORT: msg[REPORT], "snapshot": snapshot(server.state)})
            elif GATHERED in msg:
                peers.answered(msg[GATHERED], msg["snapshot"])
            elif ROUTE in msg:
                await _switch(server, msg[ROUTE])
            elif REPLACED in msg:
                what = str(msg[REPLACED])[:300]
                server.state.alerts.offer(worker_restarted(what, socket.gethostname(), os.getpid()))
    except (OSError, ValueError) as exc:
        log.warning("control channel broken (%s): retiring", exc)
    else:
        if not server.state.draining:
            log.warning("the supervisor is gone: retiring")
    server.retire()


async def _switch(server: Server, route: dict[str, Any]) -> None:
    """Another worker served POST /admin/route: the same switch here."""
    router = server.state.router
    if router is None:
        return
    try:
        router.switch(route["mode"], route.get("provider"))
    except (KeyError, ValueError) as exc:
        log.warning("routing switch from another worker not applied: %s", exc)
        return
    log.info("routing switched by another worker: %s", route)
