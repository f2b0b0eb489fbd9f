"""The systemd unit (verify, security exposure) and the sd_notify protocol."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import trio

from tests.helpers import clean_env, h1_request, spawn_trioproxy, start_fake, stop, unless_in_ci
from trioproxy.config import load_config
from trioproxy.sdnotify import notify

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "trioproxy.service"
needs_systemd = unless_in_ci(
    shutil.which("systemd-analyze") is None, "systemd-analyze not installed (.ci/run installs it)"
)


def local_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's trioproxy (verify
    checks that the executable exists)."""
    exe = Path(sys.executable).with_name("trioproxy")
    unit = tmp_path / "trioproxy.service"
    unit.write_text(UNIT.read_text().replace("/opt/trioproxy/venv/bin/trioproxy", str(exe)))
    return unit


@needs_systemd
def test_unit_verifies_clean(tmp_path: Path) -> None:
    r = subprocess.run(
        ["systemd-analyze", "verify", str(local_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr


@needs_systemd
def test_unit_exposure_at_most_2(tmp_path: Path) -> None:
    r = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(local_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for trioproxy\.service: ([\d.]+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0, m.group(0)


def test_unit_matches_the_drain_deadline() -> None:
    text = UNIT.read_text()
    stop = int(re.search(r"^TimeoutStopSec=(\d+)", text, re.M).group(1))  # type: ignore[union-attr]
    defaults = load_config(env={}).timeouts  # the stop timeout outlasts both drain phases
    assert stop > defaults.drain_grace + defaults.drain
    for line in (
        "Type=notify",
        "KillSignal=SIGTERM",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
    ):
        assert re.search(rf"^{re.escape(line)}$", text, re.M), line


def test_notify_abstract_and_path_sockets(tmp_path: Path) -> None:
    assert notify("READY=1", env={}) is False  # not under systemd: nothing happens
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
        rx.bind("\0trioproxy-test-" + str(os.getpid()))
        assert notify("READY=1", env={"NOTIFY_SOCKET": "@trioproxy-test-" + str(os.getpid())})
        assert rx.recv(100) == b"READY=1"
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
        rx.bind(str(path))
        assert notify("STOPPING=1", env={"NOTIFY_SOCKET": str(path)})
        assert rx.recv(100) == b"STOPPING=1"


async def test_serve_notifies_ready_after_bind_and_stopping_on_sigterm(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    rx = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await rx.bind(str(sock_path))
    env = clean_env(NOTIFY_SOCKET=str(sock_path))
    async with trio.open_nursery() as nursery:
        fake = await start_fake(nursery)
        proc = await spawn_trioproxy(
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            fake.url,
            env=env,
            stderr=subprocess.DEVNULL,
        )
        try:
            with trio.fail_after(20):
                ready = (await rx.recv(1000)).decode()
            assert ready.startswith("READY=1\n")
            port = int(ready.rsplit(":", 1)[1])
            assert (await h1_request(port, "GET", "/health")).status == 200  # bound before READY
            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(10):
                assert (await rx.recv(1000)).decode().startswith("STOPPING=1")
                assert await proc.wait() == 0
        finally:
            await stop(proc)
            rx.close()
        nursery.cancel_scope.cancel()
