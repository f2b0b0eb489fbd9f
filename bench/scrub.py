"""Scrubber speed on a realistic 1 MiB Claude Code request body.

    python -m bench.scrub [--runs 50] [--requests 40]

The body has what Claude Code sends: tool definitions with JSON schemas, a
long system prompt with cache_control, and a conversation of code files,
shell output, tool_use / tool_result pairs and prose (decorators, URLs,
"token" and "secret" in code, e-mail-like strings that are not e-mails), so
the cheap anchor check does not get to skip it. Then the same body with 100
secrets spread through it. Reports the median and p90 per body on one core,
and MB/s, for the hyperscan prefilter and for the ``re`` fallback.

Then the latency a client sees: the same bodies POSTed one after another
(keep-alive) through a trioproxy with scrubbing off and one with it on, in
front of the fake upstream; the proxy pinned to core 0, client and fake on
core 1.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import time

import orjson

from bench.run import LOAD_CPU, PROXY_CPU, start_fake, start_trioproxy
from trioproxy.scrub.engine import Scrubber
from trioproxy.scrub.prefilter import HyperscanScanner, ReScanner

SIZE = 1024 * 1024
CODE = '''import os.path
from dataclasses import dataclass

@dataclass
class Settings:
    """Load settings; the token comes from the environment, never the code."""
    api_url: str = "https://api.example.com/v1"
    token_env: str = "SERVICE_TOKEN"
    secret_name: str = "prod/db"

    def headers(self) -> dict[str, str]:
        token = os.environ[self.token_env]
        return {"Authorization": f"Bearer {token}", "User-Agent": "svc/1.0"}

def connect(url: str) -> None:
    # e.g. postgres://user@host/db, credentials from the vault
    print(f"connecting to {url} as {os.getlogin()}@{os.uname().nodename}")
'''
SHELL = """$ git log --oneline | head
3f2a91c Fix s.split() on empty input
9b1e0d2 Bump requests to 2.32.3 (see https://github.com/psf/requests/releases)
$ ls -la ~/.config
drwx------  5 dev dev 4096 Nov 20 10:12 gh
-rw-r--r--  1 dev dev  220 Nov 20 10:12 npmrc
$ npm test
> svc@1.0.0 test
  42 passing (1s)
"""
SECRETS = [
    "ghp_" + "a1B2c3D4e5" * 3 + "f6G7h8",
    "sk-ant-api03-" + "Q9w8E7r6T5" * 9 + "-abcAA",
    "AKIAIOSFODNN7EXAMPLE",
    "postgres://app:s3cr3tpw@db.internal:5432/app",
    "xoxb-1234567890-abcdefghijklmnop",
    "glpat-" + "x1Y2z3W4v5" * 2,
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "alice.smith@corp-example.com",
]


def realistic_body(secrets: int = 0) -> bytes:
    tools = [
        {
            "name": f"tool_{i}",
            "description": "Runs a command. " * 40,
            "input_schema": {
                "type": "object",
                "properties": {"command": {"type": "string", "description": "the command " * 10}},
                "required": ["command"],
            },
        }
        for i in range(16)
    ]
    system = [
        {
            "type": "text",
            "text": "You are Claude Code. " * 400,
            "cache_control": {"type": "ephemeral"},
        }
    ]
    messages: list[dict[str, object]] = []
    turn = 0
    placed = 0
    while len(orjson.dumps({"tools": tools, "system": system, "messages": messages})) < SIZE:
        extra = ""
        if placed < secrets:
            extra = f"\nexport VAR_{placed}={SECRETS[placed % len(SECRETS)]}\n"
            placed += 1
        messages.append(
            {"role": "user", "content": f"Please look at this (turn {turn}).\n{CODE}{extra}"}
        )
        messages.append(
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me run the tests first."},
                    {
                        "type": "tool_use",
                        "id": f"toolu_{turn:06d}",
                        "name": "bash",
                        "input": {"command": "npm test && git log --oneline | head"},
                    },
                ],
            }
        )
        extra = ""
        if placed < secrets:
            extra = f"\n{SECRETS[placed % len(SECRETS)]}\n"
            placed += 1
        messages.append(
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": f"toolu_{turn:06d}",
                        "content": SHELL + extra,
                    }
                ],
            }
        )
        turn += 1
    doc = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "stream": True,
        "tools": tools,
        "system": system,
        "messages": messages,
        "metadata": {"user_id": "user_abc_account_def_session_0f1e2d3c"},
    }
    return orjson.dumps(doc)


def dense_body() -> bytes:
    """One 1 MiB tool result that is a secret on every line (an env dump or
    a leaked credentials file): where a careless overlap check goes
    quadratic."""
    lines = []
    size = 0
    i = 0
    while size < SIZE:
        line = f"VAR_{i}={SECRETS[i % len(SECRETS)]}"
        lines.append(line)
        size += len(line) + 1
        i += 1
    content = [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "\n".join(lines)}]
    doc = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1000,
        "messages": [{"role": "user", "content": content}],
    }
    return orjson.dumps(doc)


def measure(scrubber: Scrubber, body: bytes, runs: int) -> tuple[float, float, int]:
    times = []
    hits = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        result = scrubber.scrub(body)
        times.append(time.perf_counter() - t0)
        hits = sum(result.hits.values())
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9)], hits


def proxy_latency(body: bytes, port: int, requests: int) -> float:
    """Median seconds per request, client side, over one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times = []
    headers = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
    for _ in range(requests + 3):
        t0 = time.perf_counter()
        conn.request("POST", "/v1/messages", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        times.append(time.perf_counter() - t0)
        if response.status != 200:
            raise RuntimeError(f"proxy answered {response.status}")
    conn.close()
    return statistics.median(times[3:])  # the first few warm up pools and caches


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--requests", type=int, default=40, help="per body and proxy; 0 skips")
    args = ap.parse_args()
    bodies = {
        "no secrets": realistic_body(0),
        "100 secrets": realistic_body(100),
        "dense: a secret a line": dense_body(),
    }
    os.sched_setaffinity(0, {PROXY_CPU})  # "on one core", and not the client's
    print(f"{'scanner / body':<34} {'size':>9} {'median':>9} {'p90':>9} {'MB/s':>7} {'hits':>5}")
    for scanner in (HyperscanScanner(), ReScanner()):
        scrubber = Scrubber(bytes(32), max_body_bytes=16 * SIZE, scanner=scanner)
        for label, body in bodies.items():
            med, p90, hits = measure(scrubber, body, args.runs)
            print(
                f"{scanner.name + ', ' + label:<34} {len(body):>9,} {med * 1000:>7.2f}ms "
                f"{p90 * 1000:>7.2f}ms {len(body) / med / 1e6:>7.0f} {hits:>5}",
                flush=True,
            )
    if not args.requests:
        return
    os.sched_setaffinity(0, {LOAD_CPU})  # the client beside the fake; the proxies on core 0
    print(f"\nthrough the proxy, median of {args.requests} sequential POSTs (client side)")
    fake, fake_port = start_fake(LOAD_CPU)
    upstream = f"http://127.0.0.1:{fake_port}"
    procs = [fake]
    try:
        plain, plain_port = start_trioproxy(upstream)
        procs.append(plain)
        scrubbing, scrub_port = start_trioproxy(
            upstream,
            extra_env={
                "TRIOPROXY_SCRUB_MODE": "pseudonymize",
                "TRIOPROXY_SCRUB_HMAC_KEY": "ab" * 32,
            },
        )
        procs.append(scrubbing)
        print(f"{'body':<14} {'scrub off':>10} {'scrub on':>10} {'added':>9}")
        for label, body in list(bodies.items())[:2]:
            off = proxy_latency(body, plain_port, args.requests)
            on = proxy_latency(body, scrub_port, args.requests)
            print(
                f"{label:<14} {off * 1000:>8.2f}ms {on * 1000:>8.2f}ms "
                f"{(on - off) * 1000:>+7.2f}ms",
                flush=True,
            )
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
