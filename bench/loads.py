"""The load generators: wrk (HTTP/1.1), h2load (HTTP/2), the paced SSE
client (scenario G) and the idle-stream holder (scenario F), each pinned to
the load core, each returning a dict of figures."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.procs import HERE, LOAD_CPU

# What Claude Code sends on every request (besides host, content-length and
# content-type): 20 header fields in all, so parsing costs what it does in use.
CLAUDE_CODE_HEADERS = (
    ("x-api-key", "bench-key"),
    ("anthropic-version", "2023-06-01"),
    (
        "anthropic-beta",
        "claude-code-20250219,interleaved-thinking-2025-05-14,"
        "fine-grained-tool-streaming-2025-05-14,context-management-2025-06-27",
    ),
    ("user-agent", "claude-cli/2.1.330 (external, cli)"),
    ("x-app", "cli"),
    ("x-claude-code-session-id", "6f1c2d3e-aaaa-bbbb-cccc-0123456789ab"),
    ("x-stainless-arch", "x64"),
    ("x-stainless-lang", "js"),
    ("x-stainless-os", "Linux"),
    ("x-stainless-package-version", "0.60.0"),
    ("x-stainless-retry-count", "0"),
    ("x-stainless-runtime", "node"),
    ("x-stainless-runtime-version", "v22.19.0"),
    ("x-stainless-timeout", "600"),
    ("accept", "application/json"),
    ("accept-encoding", "gzip, deflate, br, zstd"),
)


def run_wrk(
    port: int, *, path: str, method: str, body: int, conns: int, seconds: float
) -> dict[str, Any]:
    env = {
        **os.environ,
        "BENCH_PATH": path,
        "BENCH_METHOD": method,
        "BENCH_BODY_BYTES": str(body),
        "BENCH_HEADERS": "\n".join(
            f"{k}: {v}" for k, v in (*CLAUDE_CODE_HEADERS, ("connection", "keep-alive"))
        ),
    }
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
    r: dict[str, Any] = json.loads(m.group(1))
    secs = r["duration_us"] / 1e6
    r["rps"] = r["requests"] / secs
    r["mb_s"] = (r["bytes"] + r["requests"] * body) / secs / 1e6
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
        *(arg for k, v in CLAUDE_CODE_HEADERS for arg in ("-H", f"{k}: {v}")),
        f"http://127.0.0.1:{port}{path}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    done = re.search(
        r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", out
    )
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if not rps or not done:
        raise RuntimeError(f"h2load output not understood:\n{out}")
    return {
        "rps": float(rps.group(1)),
        "succeeded": int(done.group(2)),
        "failed": int(done.group(3)),
        "non2xx": sum(int(codes.group(i)) for i in (2, 3, 4)) if codes else 0,
        "requests": n,
    }


def run_paced(port: int, *, streams: int, seconds: float) -> dict[str, Any]:
    cmd = [
        "taskset",
        "-c",
        str(LOAD_CPU),
        sys.executable,
        "-m",
        "bench.paced",
        str(port),
        "--streams",
        str(streams),
        "--seconds",
        str(seconds),
    ]
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=seconds * 3 + 60, cwd=HERE.parent
    ).stdout
    m = re.search(r"PACED_JSON (\{.*\})", out)
    if not m:
        raise RuntimeError(f"paced client gave no summary:\n{out}")
    r: dict[str, Any] = json.loads(m.group(1))
    r["requests"] = r["events"]  # the unit of scenario G
    return r


class Holder:
    """Scenario F: ``count`` streaming requests held open through ``port``."""

    def __init__(self, port: int, count: int) -> None:
        self.proc = subprocess.Popen(
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
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        parts = line.split(maxsplit=4)
        self.held = int(parts[1]) if line.startswith("HELD") else 0
        self.failed = int(parts[3]) if line.startswith("HELD") else count
        self.first_error = parts[4].strip() if len(parts) > 4 else ("" if self.held else line)

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=120)
