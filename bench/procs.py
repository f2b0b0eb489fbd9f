"""Starting and measuring the processes the bench compares: the origins,
nginx, the floor relays and trioproxy, each pinned to its core."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROXY_CPU, LOAD_CPU = 0, 1
TOOLS = {"wrk": "wrk", "h2load": "nghttp2-client", "nginx": "nginx-light", "taskset": "util-linux"}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def ensure_tools() -> None:
    missing = [pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None]
    if missing:
        say(f"installing {' '.join(missing)} (apt-get)")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", *missing],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[Any], what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start listening")


def family(pids: list[int]) -> list[int]:
    """The processes and all their descendants, now: trioproxy serve is a
    supervisor whose workers do the work."""
    out: list[int] = []
    todo = list(pids)
    while todo:
        pid = todo.pop()
        out.append(pid)
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError):  # a thread or process that just ended
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes and their descendants (all threads),
    in seconds."""
    total = 0
    for pid in family(pids):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a worker that exited
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def rss_kib(pids: list[int]) -> int:
    """Resident memory of the processes and their descendants."""
    total = 0
    for pid in family(pids):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


@contextmanager
def sighup_after(seconds: float, pid: int) -> Iterator[None]:
    """SIGHUP to ``pid`` ``seconds`` from now, from a timer thread (the load
    generator runs in this one); not sent if the block ends first."""
    timer = threading.Timer(seconds, os.kill, (pid, signal.SIGHUP))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def python_process(
    args: list[str], cpu: int | str, env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """``cpu``: a core, or a taskset list ("0,1")."""
    out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        ["taskset", "-c", str(cpu), sys.executable, *args],
        env=env,
        cwd=HERE.parent,
        stdout=out,
        stderr=out,
    )


def start_trioproxy(
    name: str,
    upstream: str,
    work: Path,
    extra_env: dict[str, str] | None = None,
    cpus: str = str(PROXY_CPU),
    config: Path | None = None,
) -> tuple[subprocess.Popen[bytes], int]:
    """One trioproxy as a user runs it (a supervisor and its workers, one
    unless ``TRIOPROXY_WORKERS`` says otherwise): access lines on (INFO, to a
    file), usage ledger on, its own state directory; on the ``cpus`` cores."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIOPROXY_")}
    env.update(
        TRIOPROXY_LOG_LEVEL="info",
        TRIOPROXY_STATE_DIR=str(work / f"state-{name}"),
        TRIOPROXY_DRAIN_GRACE="0",  # the bench stops it when done: no load balancer to tell
        **(extra_env or {}),
    )
    proc = python_process(
        [
            "-m",
            "trioproxy",
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            # A configuration with [[providers]] names each provider's URL itself.
            *(["--config", str(config)] if config else ["--upstream", upstream]),
        ],
        cpus,
        env,
        work / f"{name}.log",
    )
    wait_listening(port, proc, f"trioproxy ({name})")
    return proc, port


def start_fake(work: Path, kind: str = "") -> tuple[subprocess.Popen[bytes], int]:
    """The fake upstream (``kind``: "bedrock", the fake Bedrock runtime)."""
    port = free_port()
    env = {**os.environ, "TRIOPROXY_LOG_LEVEL": "warning"}
    proc = python_process(
        [
            "-m",
            "trioproxy",
            "fake-upstream",
            "--listen",
            f"127.0.0.1:{port}",
            *([f"--{kind}"] if kind else []),
        ],
        LOAD_CPU,
        env,
        work / f"fake{'-' + kind if kind else ''}.log",
    )
    wait_listening(port, proc, f"fake {kind or 'anthropic'} upstream")
    return proc, port


def start_tls_fake(work: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    ca = work / "tlsfake-ca.pem"
    proc = python_process(["-m", "bench.tlsfake", str(port), str(ca)], LOAD_CPU, None, None)
    wait_listening(port, proc, "TLS fake upstream")
    return proc, port, ca


def start_floor(
    upstream_port: int, *, module: str = "bench.floor", extra: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[bytes], int]:
    """A floor relay: the byte relay (``bench.floor``), or one that also does
    the protocol work a proxy cannot skip (``bench.floor_h11``: HTTP/1.1 both
    ways; ``bench.floor_h2``: HTTP/2 in, HTTP/1.1 out; ``bench.floor_h2up``:
    HTTP/1.1 in, HTTP/2 over TLS out, ``extra`` naming the CA file)."""
    port = free_port()
    proc = python_process(["-m", module, str(port), str(upstream_port), *extra], PROXY_CPU)
    wait_listening(port, proc, module)
    return proc, port
