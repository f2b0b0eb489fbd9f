"""One worker: the proxy on listening sockets a supervisor bound, and the
control channel to that supervisor."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

import trio

from trioproxy.config import Config
from trioproxy.server import Server
from trioproxy.workers.channel import READY, RETIRE, RETIRED, LineDecoder, WorkerFds, encode

log = logging.getLogger("trioproxy.worker")

RECV = 64 * 1024  # bytes; one read of the control channel


def _inherit(fd: int) -> socket.socket:
    sock = socket.socket(fileno=fd)
    sock.set_inheritable(False)  # our own children (none today) do not get it
    return sock


async def run_worker(config: Config, loader: Callable[[], Config], fds: WorkerFds) -> int:
    """Serve until drained: on SIGTERM/SIGINT (from the supervisor), on
    "retire" (a newer worker took this one's place), or when the supervisor
    is gone. The exit code is 1 after a forced stop, else 0."""
    server = Server(
        config,
        loader=loader,
        inherited=([_inherit(fd) for fd in fds.listen], [_inherit(fd) for fd in fds.admin]),
    )
    control = trio.socket.from_stdlib_socket(_inherit(fds.control))
    with control:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve_signals)

            async def _serve(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
                await server.serve(task_status=task_status)
                nursery.cancel_scope.cancel()

            await nursery.start(_serve)
            try:
                await control.send(encode({READY: os.getpid()}))
            except OSError:
                server.retire()  # the supervisor is already gone
            nursery.start_soon(_follow, control, server)
    return 1 if server.forced else 0


async def _follow(control: trio.socket.SocketType, server: Server) -> None:
    """Obey the supervisor; when it is gone (end of file, a broken channel),
    retire: nobody would restart this worker, and it must not keep the port."""
    decoder = LineDecoder()
    try:
        while data := await control.recv(RECV):
            for msg in decoder.feed(data):
                if msg.get(RETIRE):
                    log.info("retiring: replaced by a newer worker")
                    server.retire()
                    await server.stopped_accepting.wait()
                    await control.send(encode({RETIRED: os.getpid()}))
    except (OSError, ValueError) as exc:
        log.warning("control channel broken (%s): retiring", exc)
    else:
        if not server.state.draining:
            log.warning("the supervisor is gone: retiring")
    server.retire()
