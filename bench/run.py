"""trioproxy benchmarks: direct vs nginx reverse proxy vs trioproxy, side by side.

Run with ``make bench`` (or ``python -m bench.run [--duration S] [--only A,B]``).
The proxy under test is pinned to core 0; the load generator and the origin
share core 1 (this machine has two). Installs wrk, h2load (nghttp2-client) and
nginx from Debian packages when they are missing. Writes results/latest.json,
results/latest.md and results/latest.png.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.nginx import Nginx, origin_config, proxy_config, start_nginx, write_sse_file

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
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


def start_trioproxy(
    upstream: str, *, h2c_upstream: bool = False, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIOPROXY_")}
    env.update(
        TRIOPROXY_LOG_LEVEL="warning",
        TRIOPROXY_UPSTREAM_H2_PRIOR_KNOWLEDGE="1" if h2c_upstream else "0",
        **(extra_env or {}),
    )
    proc = subprocess.Popen(
        [
            "taskset",
            "-c",
            str(PROXY_CPU),
            sys.executable,
            "-m",
            "trioproxy",
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--upstream",
            upstream,
        ],
        env=env,
    )
    wait_listening(port, proc, "trioproxy")
    return proc, port


def start_fake(cpu: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            "taskset",
            "-c",
            str(cpu),
            sys.executable,
            "-m",
            "trioproxy",
            "fake-upstream",
            "--listen",
            f"127.0.0.1:{port}",
        ],
        env={**os.environ, "TRIOPROXY_LOG_LEVEL": "warning"},
    )
    wait_listening(port, proc, "fake upstream")
    return proc, port


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / CLK_TCK


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def run_wrk(
    port: int, *, path: str, method: str, body: int, conns: int, seconds: float
) -> dict[str, Any]:
    env = {**os.environ, "BENCH_PATH": path, "BENCH_METHOD": method, "BENCH_BODY_BYTES": str(body)}
    cmd = [
        "taskset",
        "-c",
        str(LOAD_CPU),
        "wrk",
        "-t1",
        f"-c{conns}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(HERE / "wrk_report.lua"),
        f"http://127.0.0.1:{port}",
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60).stdout
    m = re.search(r"BENCH_JSON (\{.*\})", out)
    if not m:
        raise RuntimeError(f"wrk gave no summary:\n{out}")
    r = json.loads(m.group(1))
    secs = r["duration_us"] / 1e6
    r["rps"] = r["requests"] / secs
    return r


def run_h2load(
    port: int, *, path: str, body_file: Path, n: int, clients: int, streams: int
) -> dict[str, Any]:
    cmd = [
        "taskset",
        "-c",
        str(LOAD_CPU),
        "h2load",
        "-n",
        str(n),
        "-c",
        str(clients),
        "-m",
        str(streams),
        "-d",
        str(body_file),
        "-H",
        "content-type: application/json",
        "-H",
        "x-api-key: bench-key",
        f"http://127.0.0.1:{port}{path}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    done = re.search(
        r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", out
    )
    if not rps or not done:
        raise RuntimeError(f"h2load output not understood:\n{out}")
    return {
        "rps": float(rps.group(1)),
        "succeeded": int(done.group(2)),
        "failed": int(done.group(3)),
        "requests": n,
    }


class Bench:
    def __init__(self, seconds: float, only: set[str]) -> None:
        self.seconds = seconds
        self.only = only
        self.results: dict[str, Any] = {
            "machine": {"cores": os.cpu_count(), "proxy_core": PROXY_CPU, "load_core": LOAD_CPU},
            "scenarios": {},
        }
        self.work = Path(tempfile.mkdtemp(prefix="trioproxy-bench-"))
        self.procs: list[subprocess.Popen[Any]] = []
        self.nginxes: list[Nginx] = []

    def close(self) -> None:
        for ng in self.nginxes:
            ng.stop()
        for p in self.procs:
            p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()

    def setup_http(self) -> None:
        write_sse_file(self.work, 150 * 1024)
        o_port, o_h2 = free_port(), free_port()
        self.origin = start_nginx(
            "origin", origin_config(o_port, o_h2, self.work), self.work, o_port, o_h2, LOAD_CPU
        )
        self.nginxes.append(self.origin)
        p_port, p_h2 = free_port(), free_port()
        self.nginx_proxy = start_nginx(
            "proxy", proxy_config(p_port, p_h2, o_port), self.work, p_port, p_h2, PROXY_CPU
        )
        self.nginxes.append(self.nginx_proxy)
        proc, port = start_trioproxy(f"http://127.0.0.1:{o_port}")
        self.procs.append(proc)
        self.trio_proc, self.trio_port = proc, port
        self.targets: dict[str, tuple[int, list[int]]] = {
            "direct": (o_port, []),
            "nginx": (p_port, self.nginx_proxy.worker_pids()),
            "trioproxy": (port, [proc.pid]),
        }

    def measured(self, pids: list[int], fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        before = cpu_seconds(pids) if pids else 0.0
        r = fn()
        if pids:
            cpu = cpu_seconds(pids) - before
            r["proxy_cpu_s"] = cpu
            r["per_cpu_s"] = r["requests"] / cpu if cpu > 0 else None
        return r

    def wrk_scenario(
        self, key: str, title: str, *, path: str, method: str, body: int, conns: int
    ) -> None:
        if key not in self.only:
            return
        rows = {}
        for name, (port, pids) in self.targets.items():
            say(f"{key} {title}: {name} ({conns} connections, {self.seconds:g} s)")
            run_wrk(port, path=path, method=method, body=body, conns=conns, seconds=1)  # warm-up
            r = self.measured(
                pids,
                lambda p=port: run_wrk(
                    p, path=path, method=method, body=body, conns=conns, seconds=self.seconds
                ),
            )
            r["mb_s"] = (r["bytes"] + r["requests"] * body) / (r["duration_us"] / 1e6) / 1e6
            say(
                f"   {r['rps']:,.0f} req/s  p50 {r['p50_us'] / 1000:.2f} ms  p99 {r['p99_us'] / 1000:.2f} ms  errors {r['errors']} non-2xx {r['non2xx']}"
            )
            rows[name] = r
        self.results["scenarios"][key] = {"title": title, "rows": rows}

    def h2_scenario(self) -> None:
        if "E" not in self.only:
            return
        body = self.work / "body.json"
        body.write_text(
            '{"model":"claude-opus-4-7","max_tokens":64,"messages":[{"role":"user","content":"'
            + "a" * 900
            + '"}]}'
        )
        rows = {}
        ports = {
            "direct": self.origin.h2port,
            "nginx": self.nginx_proxy.h2port,
            "trioproxy": self.trio_port,
        }
        n = int(max(5000, 3000 * self.seconds))
        for name, port in ports.items():
            pids = self.targets[name][1]
            say(
                f"E HTTP/2 inbound multiplexed (h2load, 4 connections x 32 streams, {n} requests): {name}"
            )
            r = self.measured(
                pids,
                lambda p=port: run_h2load(
                    p, path="/v1/messages", body_file=body, n=n, clients=4, streams=32
                ),
            )
            say(f"   {r['rps']:,.0f} req/s  succeeded {r['succeeded']} failed {r['failed']}")
            rows[name] = r
        self.results["scenarios"]["E"] = {
            "title": "HTTP/2 inbound, h2load -c4 -m32, ~1 KB POST",
            "rows": rows,
        }

    def idle_scenario(self, counts: list[int]) -> None:
        if "F" not in self.only:
            return
        fake, fake_port = start_fake(LOAD_CPU)
        self.procs.append(fake)
        tproc, tport = start_trioproxy(f"http://127.0.0.1:{fake_port}", h2c_upstream=True)
        self.procs.append(tproc)
        n_port, n_h2 = free_port(), free_port()
        ngx = start_nginx(
            "holdproxy", proxy_config(n_port, n_h2, fake_port), self.work, n_port, n_h2, PROXY_CPU
        )
        self.nginxes.append(ngx)
        rows: dict[str, Any] = {}
        for name, port, pids in (
            ("trioproxy", tport, [tproc.pid]),
            ("nginx", n_port, ngx.worker_pids()),
        ):
            for count in counts:
                base = rss_kib(pids)
                say(
                    f"F idle held streams: {name}, {count} streams (RSS before {base / 1024:.1f} MiB)"
                )
                holder = subprocess.Popen(
                    [
                        "taskset",
                        "-c",
                        str(LOAD_CPU),
                        sys.executable,
                        "-m",
                        "bench.hold",
                        str(port),
                        str(count),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    cwd=HERE.parent,
                    text=True,
                )
                assert holder.stdout is not None and holder.stdin is not None
                line = holder.stdout.readline()
                parts = line.split(maxsplit=4)
                held = int(parts[1]) if line.startswith("HELD") else 0
                failed = int(parts[3]) if line.startswith("HELD") else count
                if failed:
                    say(
                        f"   {failed} streams failed to open: {parts[4].strip() if len(parts) > 4 else line!r}"
                    )
                after = rss_kib(pids)
                holder.stdin.close()
                holder.wait(timeout=120)
                per = (after - base) / held if held else None
                say(
                    f"   held {held}; RSS {after / 1024:.1f} MiB; {per:.1f} KiB per stream"
                    if per
                    else f"   held {held}"
                )
                rows[f"{name} {count}"] = {
                    "held": held,
                    "rss_before_kib": base,
                    "rss_after_kib": after,
                    "kib_per_stream": per,
                }
        self.results["scenarios"]["F"] = {
            "title": "Idle held SSE streams: proxy RSS per stream",
            "rows": rows,
        }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    ap.add_argument("--only", default="A,B,C,D,E,F")
    ap.add_argument("--idle", default="2000,10000", help="stream counts for F")
    args = ap.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ensure_tools()
    only = set(args.only.split(","))
    bench = Bench(args.duration, only)
    started = time.time()
    try:
        bench.setup_http()
        bench.wrk_scenario(
            "A",
            "small JSON POST ~1 KB, 64 keep-alive connections",
            path="/v1/messages",
            method="POST",
            body=1024,
            conns=64,
        )
        bench.wrk_scenario(
            "B",
            "added latency at concurrency 1",
            path="/v1/messages",
            method="POST",
            body=1024,
            conns=1,
        )
        bench.wrk_scenario(
            "C",
            "512 KB request bodies, 16 connections",
            path="/upload",
            method="POST",
            body=512 * 1024,
            conns=16,
        )
        bench.wrk_scenario(
            "D",
            "150 KB SSE responses, 16 connections",
            path="/static/stream.sse",
            method="GET",
            body=0,
            conns=16,
        )
        bench.h2_scenario()
        bench.idle_scenario([int(x) for x in args.idle.split(",") if x])
    finally:
        bench.close()
    bench.results["command"] = "python -m bench.run " + " ".join(sys.argv[1:])
    bench.results["date"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime(started))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(bench.results, indent=2))
    from bench.report import render

    md = render(bench.results, RESULTS / "latest.png")
    (RESULTS / "latest.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
