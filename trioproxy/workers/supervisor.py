"""The supervisor: binds the listeners once, runs the workers, restarts the
ones that die, replaces them one by one on SIGHUP, and forwards SIGTERM and
SIGINT (see the package docstring for the rules)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio

from trioproxy._util import first_of
from trioproxy.config import Config, ConfigError, load_checked
from trioproxy.transport.listen import open_listeners
from trioproxy.workers.channel import (
    GATHER,
    GATHERED,
    READY,
    REPLACED,
    REPORT,
    RETIRE,
    RETIRED,
    TELL_OTHERS,
    WorkerFds,
)
from trioproxy.workers.link import Link
from trioproxy.workers.policy import describe_exit, failures_after, restart_delay, worker_count
from trioproxy.workers.tally import Tally

log = logging.getLogger("trioproxy.supervisor")

READY_TIMEOUT = 60.0  # seconds a new worker may take to accept before it counts as failed
RETIRE_TIMEOUT = 10.0  # seconds an old worker may take to stop accepting when told to
GATHER_TIMEOUT = 1.0  # seconds the workers have to answer a gather


@dataclass(eq=False)
class Worker:
    slot: int
    proc: trio.Process
    link: Link
    started: float  # trio time
    ready: trio.Event = field(default_factory=trio.Event)
    retired: trio.Event = field(default_factory=trio.Event)  # no longer accepting
    exited: trio.Event = field(default_factory=trio.Event)
    retiring: bool = False

    def __repr__(self) -> str:
        state = "exited" if self.exited.is_set() else "ready" if self.ready.is_set() else "starting"
        return f"<Worker {self.slot} pid={self.proc.pid} {state}{' retiring' if self.retiring else ''}>"


class Supervisor:
    """``argv`` is the command line the workers run (``serve`` and its
    flags); each gets ``--worker-fds`` added."""

    def __init__(
        self,
        config: Config,
        argv: Sequence[str],
        *,
        loader: Callable[[], Config],
        notify: Callable[[str], object],
        cpus: int,
    ) -> None:
        self.config = config
        self._argv = list(argv)
        self._loader = loader
        self._notify = notify
        self._cpus = cpus
        self._listen: list[trio.SocketListener] = []
        self._admin: list[trio.SocketListener] = []
        self._slots: list[Worker | None] = []
        self._failures: dict[int, int] = {}
        self._live: set[Worker] = set()
        self._stopping = trio.Event()
        self._forced = False
        self._reload_wanted = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._tally = Tally()  # what the workers counted
        self.port: int | None = None

    def __repr__(self) -> str:
        return f"<Supervisor slots={self._slots} live={len(self._live)}>"

    # -- starting ------------------------------------------------------------------
    async def bind(self) -> None:
        """Bind every listener (ConfigError on an address in use, before
        anything starts)."""
        cfg = self.config
        self._listen = await open_listeners(cfg.listen, "listen")
        self.port = self._listen[0].socket.getsockname()[1]
        if cfg.admin_listen is not None:
            self._admin = await open_listeners(cfg.admin_listen, "admin.listen")

    async def run(self, on_ready: Callable[[int, int], object] = lambda _p, _n: None) -> int:
        """Until every worker has exited after SIGTERM/SIGINT. Calls
        ``on_ready(port, workers)`` once every worker accepts. Exit code: 1
        after a forced stop or when a worker could not start, else 0."""
        if not self._listen:
            await self.bind()
        n = worker_count(self.config.workers, self._cpus)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self._serve_signals)
            self._slots = [None] * n
            first = [await self._start(slot) for slot in range(n)]
            for w in first:
                if not await self._until_ready(w):
                    log.error("worker %d could not start; stopping", w.slot)
                    self._forced = True
                    await self._stop(signal.SIGTERM)
                    break
            else:
                assert self.port is not None
                on_ready(self.port, n)
                nursery.start_soon(self._serve_reloads)
            await self._stopping.wait()
            with trio.CancelScope(shield=True):
                while self._live:
                    await next(iter(self._live)).exited.wait()
            nursery.cancel_scope.cancel()
        await self._close_listeners()
        return 1 if self._forced else 0

    async def _start(self, slot: int) -> Worker:
        """Spawn a worker for ``slot`` (it becomes the slot's current one)."""
        assert self._nursery is not None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        fds = WorkerFds(
            slot=slot,
            listen=tuple(lst.socket.fileno() for lst in self._listen),
            admin=tuple(lst.socket.fileno() for lst in self._admin),
            control=theirs.fileno(),
        )
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)  # systemd hears from the supervisor only
        try:
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "trioproxy", *self._argv, "--worker-fds", fds.format()],
                env=env,
                pass_fds=fds.all,
                start_new_session=True,  # a terminal's Ctrl-C reaches the supervisor only
            )
        finally:
            theirs.close()
        w = Worker(slot, proc, Link(trio.socket.from_stdlib_socket(ours)), trio.current_time())
        self._slots[slot] = w
        self._live.add(w)
        self._nursery.start_soon(self._watch, w)
        log.info("worker %d started (pid %d)", slot, proc.pid)
        return w

    async def _until_ready(self, w: Worker) -> bool:
        """True once ``w`` accepts; False if it exits first or takes longer
        than READY_TIMEOUT (then it is stopped)."""
        with trio.move_on_after(READY_TIMEOUT):
            await first_of(w.ready.wait, w.exited.wait)
        if w.ready.is_set() and not w.exited.is_set():
            return True
        if not w.exited.is_set():
            log.error(
                "worker %d (pid %d) not accepting after %g s", w.slot, w.proc.pid, READY_TIMEOUT
            )
            w.retiring = True
            w.proc.kill()
        return False

    # -- watching ------------------------------------------------------------------
    async def _watch(self, w: Worker) -> None:
        """Read ``w``'s messages until it exits; then restart it if it was
        neither retiring nor told to stop."""
        read_all = trio.Event()
        async with trio.open_nursery() as n:
            n.start_soon(self._read_control, w, read_all)
            code = await w.proc.wait()
            with trio.move_on_after(1.0):  # its last report may still be in the socket
                await read_all.wait()
            n.cancel_scope.cancel()
        w.link.close()
        self._live.discard(w)
        self._tally.gone(w)
        w.exited.set()
        lived = trio.current_time() - w.started
        if w.retiring or self._stopping.is_set():
            log.info("worker %d (pid %d) %s", w.slot, w.proc.pid, describe_exit(code))
            return
        failures = self._failures[w.slot] = failures_after(self._failures.get(w.slot, 0), lived)
        delay = restart_delay(failures)
        log.warning(
            "worker %d (pid %d) %s after %.1f s; starting a new one in %g s",
            w.slot,
            w.proc.pid,
            describe_exit(code),
            lived,
            delay,
        )
        if not w.ready.is_set() and code == 2:
            log.error("worker %d stopped on a configuration error (see above)", w.slot)
        with trio.move_on_after(delay):
            await self._stopping.wait()
        if self._stopping.is_set() or self._slots[w.slot] is not w:
            return  # stopping, or a reload has replaced it meanwhile
        new = await self._start(w.slot)
        what = f"worker {w.slot} (pid {w.proc.pid}) {describe_exit(code)} after {lived:.1f} s"
        with contextlib.suppress(OSError):  # the new one posts the alert (and counts it)
            await new.link.send({REPLACED: what})

    async def _read_control(self, w: Worker, read_all: trio.Event) -> None:
        """``w``'s messages, until end of file (then ``read_all`` is set)."""
        try:
            async for msg in w.link.messages():
                if READY in msg:
                    w.ready.set()
                elif RETIRED in msg:
                    w.retired.set()
                elif REPORT in msg:
                    self._tally.reported(w, msg[REPORT], msg["snapshot"])
                elif GATHER in msg:
                    assert self._nursery is not None
                    self._nursery.start_soon(self._gather, w, msg[GATHER])
                elif TELL_OTHERS in msg:
                    for other in list(self._live):
                        if other is not w and other.ready.is_set():
                            with contextlib.suppress(OSError):
                                await other.link.send(msg[TELL_OTHERS])
        except (OSError, ValueError) as exc:
            log.warning("worker %d: control channel broken: %s", w.slot, exc)
        read_all.set()

    async def _gather(self, asker: Worker, gid: int) -> None:
        """Ask every worker for its snapshot now (GATHER_TIMEOUT at most; a
        silent one counts with its last heartbeat) and send ``asker`` the
        merge."""
        asked = [w for w in self._live if w.ready.is_set()]
        rid, round_ = self._tally.open_round(asked)
        for w in asked:
            try:
                await w.link.send({REPORT: rid})
            except OSError:
                round_.forget(w)
        with trio.move_on_after(GATHER_TIMEOUT):
            await round_.done.wait()
        merged = self._tally.result(rid, asker)
        if merged is not None:
            with contextlib.suppress(OSError):
                await asker.link.send({GATHERED: gid, "snapshot": merged})

    # -- signals -------------------------------------------------------------------
    async def _serve_signals(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """SIGTERM and SIGINT go to the workers (they drain: with the drain
        grace on SIGTERM, without on SIGINT; a second signal stops them at
        once); SIGHUP reloads."""
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                if signum == signal.SIGHUP:
                    if not self._stopping.is_set():
                        log.info("SIGHUP: reloading the configuration, then the workers")
                        self._reload_wanted.set()
                elif not self._stopping.is_set():
                    log.info(
                        "%s: draining %d worker(s) (send again to stop at once)",
                        name,
                        len(self._live),
                    )
                    await self._stop(signum)
                else:
                    log.info("%s again: stopping the workers now", name)
                    self._forced = True
                    for w in list(self._live):
                        _signal(w, signum)  # each is draining already: this stops it

    async def _stop(self, signum: int) -> None:
        self._notify("STOPPING=1\nSTATUS=draining")
        self._stopping.set()
        await self._close_listeners()  # no new worker will need them: the workers' copies remain
        for w in list(self._live):
            if not w.retiring:  # a retiring worker is draining already
                _signal(w, signum)

    # -- reloading -----------------------------------------------------------------
    async def _serve_reloads(self) -> None:
        """One reload at a time; SIGHUPs during one make one more after it."""
        while True:
            await self._reload_wanted.wait()
            self._reload_wanted = trio.Event()
            if self._stopping.is_set():
                return
            await self.reload()

    async def reload(self) -> bool:
        """Re-read the configuration; if it is valid, replace every worker by
        a fresh process, one at a time. True if applied."""
        self._notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            new = load_checked(self._loader)
        except (ConfigError, OSError) as exc:
            log.error("reload rejected; the running configuration stays in force: %s", exc)
            self._notify("READY=1\nSTATUS=reload rejected, previous configuration in force")
            return False
        if new.listen != self.config.listen or new.admin_listen != self.config.admin_listen:
            log.warning(
                "reload: listen or admin.listen changed; the listeners stay as they are "
                "until a restart"
            )
        self.config = new
        n = worker_count(new.workers, self._cpus)
        if n > len(self._slots):
            self._slots += [None] * (n - len(self._slots))
        for slot in range(len(self._slots)):
            if self._stopping.is_set():
                return False
            old = self._slots[slot]
            if slot >= n:
                self._slots[slot] = None
                if old is not None:
                    await self._retire(old)
                continue
            fresh = await self._start(slot)
            if not await self._until_ready(fresh):
                log.error(
                    "reload: the new worker %d did not start; the old workers keep serving", slot
                )
                self._slots[slot] = old
                if old is None or old.exited.is_set():
                    await self._start(slot)  # nothing left in the slot: try once more
                self._notify("READY=1\nSTATUS=reload failed: a new worker did not start")
                return False
            if old is not None:
                await self._retire(old)
        del self._slots[n:]
        log.info("configuration reloaded: %d worker(s) replaced", n)
        self._notify("READY=1\nSTATUS=configuration reloaded")
        return True

    async def _retire(self, w: Worker) -> None:
        """``w`` stops accepting and drains; its streams finish there.
        Returns once it no longer accepts (or RETIRE_TIMEOUT passed), so a
        reload reports READY only when every connection from then on
        reaches a new worker."""
        if w.exited.is_set():
            return
        w.retiring = True
        try:
            await w.link.send({RETIRE: True})
        except OSError:
            _signal(w, signal.SIGTERM)  # drains all the same, /health 503 aside
            return
        with trio.move_on_after(RETIRE_TIMEOUT):
            await first_of(w.retired.wait, w.exited.wait)

    async def _close_listeners(self) -> None:
        for lst in [*self._listen, *self._admin]:
            await lst.aclose()
        self._listen, self._admin = [], []


def _signal(w: Worker, signum: int) -> None:
    if w.proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            w.proc.send_signal(signum)
