"""Real services the tests start for themselves: redis-server, HAProxy,
Postgres."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")  # daemons live here, often off PATH


def tool(name: str) -> str | None:
    """Where the program ``name`` is: on PATH, or in the sbin directories
    where Debian installs daemons (haproxy is /usr/sbin/haproxy, and a
    non-root PATH often lacks /usr/sbin)."""
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN_DIRS))


def wait_listening(port: int, what: str) -> None:
    """Until 127.0.0.1:``port`` accepts (at most 5 s), else RuntimeError."""
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start")


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        proc.wait(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


NGINX_ORIGIN = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  keepalive_requests {keepalive_requests};
  server {{
    listen 127.0.0.1:{port};
    location = /v1/messages {{
      default_type application/json;
      return 200 '{answer}';
    }}
  }}
}}
"""


class NginxOrigin:
    """nginx as an origin that answers POST /v1/messages with a fixed
    Message, closing each keep-alive connection after ``keepalive_requests``
    requests (nginx's default is 1,000), as a real origin recycles them."""

    ANSWER = (
        '{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-6",'
        '"content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn",'
        '"usage":{"input_tokens":1,"output_tokens":1}}'
    )

    def __init__(self, directory: Path, keepalive_requests: int) -> None:
        self.port = free_port()
        self.dir = directory
        self.dir.chmod(0o755)  # nginx's worker runs unprivileged
        self.conf = directory / "nginx.conf"
        self.conf.write_text(
            NGINX_ORIGIN.format(
                dir=directory,
                port=self.port,
                keepalive_requests=keepalive_requests,
                answer=self.ANSWER,
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        nginx = tool("nginx")
        if nginx is None:
            raise RuntimeError("nginx is not installed (.ci/run installs it)")
        self.proc = subprocess.Popen(
            [nginx, "-c", str(self.conf), "-p", str(self.dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_listening(self.port, "nginx")

    def stop(self) -> None:
        stop_process(self.proc)


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
                tool("redis-server") or "redis-server",
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
    """HAProxy in front of trioproxy instances, as docs/operating.md lays it out:
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
        haproxy = tool("haproxy")
        if haproxy is None:
            raise RuntimeError("haproxy is not installed (.ci/run installs it)")
        check = subprocess.run([haproxy, "-c", "-f", str(self.cfg)], capture_output=True)
        if check.returncode != 0:
            raise RuntimeError(check.stdout.decode() + check.stderr.decode())
        self.proc = subprocess.Popen(
            [haproxy, "-db", "-f", str(self.cfg)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_listening(self.port, "haproxy")

    def stop(self) -> None:
        stop_process(self.proc)


def postgres_bin() -> Path | None:
    """Debian keeps the server programs off PATH, by major version."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    """A Postgres cluster of the tests' own (Debian's package): initdb in a
    temporary directory, trust auth for user ``trioproxy`` on 127.0.0.1,
    durability off (a test cluster). As root it runs as the ``postgres``
    user, which initdb insists on."""

    def __init__(self, bindir: Path) -> None:
        self.bin = bindir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="trioproxy-pg-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = "postgres"
            os.chown(self.dir, pwd.getpwnam("postgres").pw_uid, -1)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://trioproxy@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """initdb (the first time) and start; again after ``halt``, on the
        same data and port."""
        data = self.dir / "data"
        if not data.exists():
            self._initdb(data)
        self._run(data)

    def _initdb(self, data: Path) -> None:
        subprocess.run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(data),
                "-U",
                "trioproxy",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            user=self._user,
        )

    def _run(self, data: Path) -> None:
        self.proc = subprocess.Popen(
            [
                str(self.bin / "postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-k",
                str(self.dir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=self._user,
        )
        import psycopg

        for _ in range(200):
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        raise RuntimeError("postgres did not start")

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def halt(self) -> None:
        """Stop the server, keeping its data (an outage)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown: connections are cut
            self.proc.wait(20)

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.dir, ignore_errors=True)
