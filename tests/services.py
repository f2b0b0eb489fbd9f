"""Real services the tests start for themselves: redis-server, HAProxy."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """A redis-server of the test's own, on a free port, persisting to its
    directory (so a restart keeps what it had, as a production Redis does)."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.dir = directory
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(100):
            if (
                subprocess.run(
                    ["redis-cli", "-p", str(self.port), "ping"], capture_output=True
                ).stdout.strip()
                == b"PONG"
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # saves the append-only file
            self.proc.wait(10)


HAPROXY_CFG = """
global
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    timeout http-keep-alive 10s
    option redispatch
    retries 3
    retry-on conn-failure empty-response
frontend claude
    bind 127.0.0.1:{port}
    default_backend trioproxy
backend trioproxy
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    default-server inter 200ms fall 1 rise 2
{servers}
"""


class HAProxy:
    """HAProxy in front of trioproxy instances, as the README lays it out:
    round robin, /health checked every 200 ms, a refused connection tried
    again on another instance."""

    def __init__(self, directory: Path, backends: list[int]) -> None:
        self.port = free_port()
        servers = "\n".join(
            f"    server t{i} 127.0.0.1:{p} check" for i, p in enumerate(backends, 1)
        )
        self.cfg = directory / "haproxy.cfg"
        self.cfg.write_text(HAPROXY_CFG.format(port=self.port, servers=servers))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        check = subprocess.run(["haproxy", "-c", "-f", str(self.cfg)], capture_output=True)
        if check.returncode != 0:
            raise RuntimeError(check.stdout.decode() + check.stderr.decode())
        self.proc = subprocess.Popen(
            ["haproxy", "-db", "-f", str(self.cfg)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("haproxy did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
