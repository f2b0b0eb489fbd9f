"""trioproxy benchmarks: no proxy, nginx, the Trio floor relays and trioproxy,
side by side in one run.

Run with ``make bench`` (or ``python -m bench.run [--duration S] [--only A,G]``).
The proxy under test is pinned to core 0; the load generator and the origin
share core 1 (this machine has two). Installs wrk, h2load (nghttp2-client) and
nginx from Debian packages when they are missing. Writes results/latest.json,
results/latest.md and results/latest.png. See bench/README.md for the set-up.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.loads import Holder, run_h2load, run_paced, run_wrk
from bench.nginx import (
    Nginx,
    origin_config,
    proxy_config,
    start_nginx,
    write_origin_cert,
    write_sse_file,
)
from bench.procs import (
    LOAD_CPU,
    PROXY_CPU,
    cpu_seconds,
    ensure_tools,
    free_port,
    rss_kib,
    say,
    sighup_after,
    start_fake,
    start_floor,
    start_tls_fake,
    start_trioproxy,
)
from trioproxy.fake.sigv4 import issued

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SCRUB_KEY = "ab" * 32
# The trioproxy rows: how it reaches the upstream, and whether it scrubs.
VARIANTS = ("trioproxy", "trioproxy h2c-up", "trioproxy h2-tls-up", "trioproxy scrub")
WORKERS = "trioproxy 2 workers"  # A only: both cores
RELOADED = "trioproxy 2 workers reloaded"  # A only: WORKERS with two SIGHUPs during the run
LOGGED = "trioproxy log=all"  # A and G: the conversation log keeping every request
# A and D: what a team runs: callers with limits (a callers file), the
# provider key injected, scrubbing on, the conversation log keeping all.
PRODUCTION = "trioproxy production"
BEDROCK = "trioproxy bedrock"  # G through a Bedrock provider: event stream to SSE
BEDROCK_REFRESHING = "trioproxy bedrock refreshing"  # its credentials refreshed all the time
REFRESH_EVERY_S = 0.5  # R: a credential check (and so a refresh) this often
MINT_DELAY_S = 0.2  # R: the credential_process takes this long (an SSO or STS call, say)
BENCH_AWS_KEY = "AKIAFAKEBENCH0000001"
BENCH_KEY = b"bench-key"  # the x-api-key the load generators send (bench/loads.py)
FLOOR_H2UP = "floor+h11 h2-tls-up"  # A only: floor + h11 with an h2-over-TLS upstream


@dataclass
class Target:
    name: str
    port: int
    pids: list[int]  # whose CPU is measured (empty: nobody's, the origin itself)


def log_rows(port: int) -> dict[str, float]:
    """trioproxy_log_rows_total by outcome, from the proxy's /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("trioproxy_log_rows_total{"):
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            out[outcome] = float(line.rsplit(" ", 1)[1])
    return out


def settled_log_rows(port: int, before: dict[str, float]) -> dict[str, int]:
    """The rows the run added, once the counts stop moving (at most 30 s)."""
    last: dict[str, float] = {}
    for _ in range(60):
        now = log_rows(port)
        if now == last:
            break
        last = now
        time.sleep(0.5)
    return {k: round(v - before.get(k, 0.0)) for k, v in last.items()}


class Bench:
    def __init__(self, seconds: float, only: set[str]) -> None:
        self.seconds = seconds
        self.only = only
        self.results: dict[str, Any] = {
            "machine": {"cores": 2, "proxy_core": PROXY_CPU, "load_core": LOAD_CPU},
            "scenarios": {},
        }
        self.work = Path(tempfile.mkdtemp(prefix="trioproxy-bench-"))
        self.work.chmod(0o755)  # nginx workers run unprivileged
        self.procs: list[subprocess.Popen[Any]] = []
        self.nginxes: list[Nginx] = []
        self._cache: dict[str, Target] = {}
        self._h2: dict[str, int] = {}  # nginx proxies' h2c ports

    def close(self) -> None:
        for ng in self.nginxes:
            ng.stop()
        for p in self.procs:
            p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()

    # -- the things under test (started once, on first use) -------------------
    def _once(self, key: str, make: Callable[[], Target]) -> Target:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def origin(self) -> Nginx:
        def make() -> Target:
            write_sse_file(self.work, 150 * 1024)
            self.origin_ca = write_origin_cert(self.work)
            ports = free_port(), free_port(), free_port()
            ng = start_nginx(
                "origin", origin_config(*ports, self.work), self.work, ports[0], ports[1], LOAD_CPU
            )
            ng.tlsport = ports[2]
            self.nginxes.append(ng)
            self._origin = ng
            return Target("direct", ng.port, [])

        self._once("origin", make)
        return self._origin

    def fake(self) -> int:
        def make() -> Target:
            proc, port = start_fake(self.work)
            self.procs.append(proc)
            return Target("direct", port, [])

        return self._once("fake", make).port

    def rotating_profile(self) -> Path:
        """An AWS config whose profile's credential_process takes
        MINT_DELAY_S and gives keys expiring in five minutes: inside
        botocore's mandatory refresh window, so every check refreshes."""
        script = self.work / "mint.py"
        script.write_text(
            "import datetime, json, sys, time\n"
            f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
            "from trioproxy.fake.sigv4 import issued\n"
            f"time.sleep({MINT_DELAY_S})\n"
            "key = 'ASIAFAKE%012d' % (int(time.time() * 1000) % 10**12)\n"
            "secret, token = issued(key)\n"
            "end = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=5)\n"
            "print(json.dumps({'Version': 1, 'AccessKeyId': key, 'SecretAccessKey': secret,"
            " 'SessionToken': token, 'Expiration': end.isoformat()}))\n"
        )
        config = self.work / "aws-config"
        config.write_text(f"[profile rotating]\ncredential_process = {sys.executable} {script}\n")
        return config

    def refresh_scenario(self) -> None:
        """R: B's load (concurrency 1, 1 KB Messages JSON) through a Bedrock
        provider with static credentials, and with credentials refreshed
        every REFRESH_EVERY_S by a credential_process that takes
        MINT_DELAY_S: the refresh must not show in the latency (p99 within
        1 ms). Alternated twice."""
        if "R" not in self.only:
            return
        rows: dict[str, Any] = {}
        targets = [self.trioproxy(BEDROCK, "fake"), self.trioproxy(BEDROCK_REFRESHING, "fake")]
        for rnd in (1, 2):
            for t in targets:
                say(f"R credentials refreshed under load, round {rnd}: {t.name}")
                run_wrk(t.port, path="/v1/messages", method="POST", body=1024, conns=1, seconds=1)
                r = self.measured(
                    t,
                    lambda p: run_wrk(
                        p,
                        path="/v1/messages",
                        method="POST",
                        body=1024,
                        conns=1,
                        seconds=self.seconds,
                    ),
                )
                say(
                    f"   p50 {r['p50_us'] / 1000:.2f} ms  p99 {r['p99_us'] / 1000:.2f} ms  errors {r['errors']} non-2xx {r['non2xx']}"
                )
                rows[f"{t.name} {rnd}"] = r
        self._record(
            "R", "B through a Bedrock provider, credentials static or refreshed all the time", rows
        )

    def bedrock_fake(self) -> int:
        def make() -> Target:
            proc, port = start_fake(self.work, "bedrock")
            self.procs.append(proc)
            return Target("bedrock", port, [])

        return self._once("bedrock-fake", make).port

    def tls_fake(self) -> tuple[int, Path]:
        def make() -> Target:
            proc, port, ca = start_tls_fake(self.work)
            self.procs.append(proc)
            self.tls_fake_ca = ca
            return Target("direct", port, [])

        return self._once("tlsfake", make).port, self.tls_fake_ca

    def nginx(self, upstream: str) -> Target:
        """nginx as a reverse proxy (1 worker) to the origin or the fake."""

        def make() -> Target:
            up = self.origin().port if upstream == "origin" else self.fake()
            port, h2 = free_port(), free_port()
            ng = start_nginx(
                f"proxy-{upstream}", proxy_config(port, h2, up), self.work, port, h2, PROXY_CPU
            )
            self.nginxes.append(ng)
            self._h2[f"nginx-{upstream}"] = h2
            return Target("nginx", port, ng.worker_pids())

        return self._once(f"nginx-{upstream}", make)

    def hop(self) -> int:
        """An nginx hop in front of the fake (proxy_buffering off, HTTP/1.1
        keep-alive), on the load core as part of the origin: G's harder
        shape, as an independent run measured it (each paced event passes
        nginx before the proxy under test)."""

        def make() -> Target:
            port, h2 = free_port(), free_port()
            ng = start_nginx(
                "hop-fake", proxy_config(port, h2, self.fake()), self.work, port, h2, LOAD_CPU
            )
            self.nginxes.append(ng)
            return Target("hop", port, [])

        return self._once("hop-fake", make).port

    def floor(self, upstream_port: int, *, h11: bool = False, h2: bool = False) -> Target:
        """The floor relay; with ``h11`` plus h11's parsing and framing both
        ways; with ``h2`` (scenario E) plus h2 inbound and h11 upstream. Both
        parsing floors sit in one column, "floor+h11"."""
        name = "floor+h11" if h11 or h2 else "floor"
        module = "bench.floor_h2" if h2 else "bench.floor_h11" if h11 else "bench.floor"

        def make() -> Target:
            proc, port = start_floor(upstream_port, module=module)
            self.procs.append(proc)
            return Target(name, port, [proc.pid])

        return self._once(f"{module}-{upstream_port}", make)

    def floor_h2up(self) -> Target:
        """The floor with h11 inbound and an h2-over-TLS upstream (the nginx
        origin's TLS port): A's h2-TLS row without trioproxy."""

        def make() -> Target:
            origin = self.origin()
            proc, port = start_floor(
                origin.tlsport, module="bench.floor_h2up", extra=(str(self.origin_ca),)
            )
            self.procs.append(proc)
            return Target(FLOOR_H2UP, port, [proc.pid])

        return self._once(FLOOR_H2UP, make)

    def trioproxy(self, variant: str, upstream: str) -> Target:
        """A trioproxy process for ``variant`` in front of the nginx origin
        (``upstream="origin"``) or the fake (``"fake"``)."""

        def make() -> Target:
            env: dict[str, str] = {}
            if variant == "trioproxy h2-tls-up":
                if upstream == "origin":
                    url, ca = f"https://127.0.0.1:{self.origin().tlsport}", self.origin_ca
                else:
                    port, ca = self.tls_fake()
                    url = f"https://127.0.0.1:{port}"
                env["TRIOPROXY_UPSTREAM_CA_BUNDLE"] = str(ca)
            elif upstream == "hop":
                url = f"http://127.0.0.1:{self.hop()}"
                env["TRIOPROXY_UPSTREAM_H2_PRIOR_KNOWLEDGE"] = "0"
            elif upstream == "origin":
                origin = self.origin()
                h2c = variant == "trioproxy h2c-up"
                url = f"http://127.0.0.1:{origin.h2port if h2c else origin.port}"
                env["TRIOPROXY_UPSTREAM_H2_PRIOR_KNOWLEDGE"] = "1" if h2c else "0"
            else:
                url = f"http://127.0.0.1:{self.fake()}"
                env["TRIOPROXY_UPSTREAM_H2_PRIOR_KNOWLEDGE"] = (
                    "1" if variant == "trioproxy h2c-up" else "0"
                )
                # F holds 10,000 streams over HTTP/1.1: one upstream connection each.
                env["TRIOPROXY_UPSTREAM_MAX_CONNECTIONS"] = "20000"
            cpus = str(PROXY_CPU)
            if variant.startswith("trioproxy 2 workers"):
                env["TRIOPROXY_WORKERS"] = "2"
                cpus = f"{PROXY_CPU},{LOAD_CPU}"  # both cores: the load and origin share one
            if variant == LOGGED:
                env["TRIOPROXY_LOG_BODIES"] = "all"
            if variant == PRODUCTION:
                callers = self.work / "callers.toml"
                digest = hashlib.sha256(BENCH_KEY).hexdigest()
                callers.write_text(
                    f'[[callers]]\nname = "bench"\nsecret_sha256 = ["{digest}"]\n'
                    "rpm = 100000000\ntpm = 100000000000\nmax_concurrent = 100000\n"
                    'budget = { tokens = 1000000000000, window = "monthly" }\n'
                )
                env |= {
                    "TRIOPROXY_AUTH_CALLERS_FILE": str(callers),
                    "TRIOPROXY_UPSTREAM_API_KEY": "sk-ant-bench-provider-key",
                    "TRIOPROXY_SCRUB_MODE": "pseudonymize",
                    "TRIOPROXY_SCRUB_HMAC_KEY": SCRUB_KEY,
                    "TRIOPROXY_LOG_BODIES": "all",
                }
            if variant == "trioproxy scrub":
                env |= {
                    "TRIOPROXY_SCRUB_MODE": "pseudonymize",
                    "TRIOPROXY_SCRUB_HMAC_KEY": SCRUB_KEY,
                }
            config = None
            if variant in (BEDROCK, BEDROCK_REFRESHING):
                refreshing = variant == BEDROCK_REFRESHING
                config = self.work / f"{variant.replace(' ', '_')}.toml"
                config.write_text(
                    '[[providers]]\nname = "bedrock"\nkind = "bedrock"\nregion = "us-east-1"\n'
                    f'base_url = "http://127.0.0.1:{self.bedrock_fake()}"\n'
                    'models = { default = "us.anthropic.claude-sonnet-4-6-v1:0" }\n'
                    + ('aws_profile = "rotating"\n' if refreshing else "")
                )
                env["AWS_EC2_METADATA_DISABLED"] = "true"
                if refreshing:
                    env |= {
                        "AWS_CONFIG_FILE": str(self.rotating_profile()),
                        "AWS_SHARED_CREDENTIALS_FILE": str(self.work / "no-credentials"),
                        "TRIOPROXY_UPSTREAM_CREDENTIALS_CHECK_S": str(REFRESH_EVERY_S),
                    }
                else:  # keys the fake issued, from the environment as a real one's
                    env |= {
                        "AWS_ACCESS_KEY_ID": BENCH_AWS_KEY,
                        "AWS_SECRET_ACCESS_KEY": issued(BENCH_AWS_KEY)[0],
                    }
            name = f"{variant.replace(' ', '_')}-{upstream}"
            proc, port = start_trioproxy(name, url, self.work, env, cpus, config)
            self.procs.append(proc)
            return Target(variant, port, [proc.pid])

        return self._once(f"{variant}-{upstream}", make)

    # -- measuring -----------------------------------------------------------------
    def measured(self, target: Target, fn: Callable[[int], dict[str, Any]]) -> dict[str, Any]:
        before = cpu_seconds(target.pids) if target.pids else 0.0
        logged = log_rows(target.port) if target.name == PRODUCTION else None
        r = fn(target.port)
        if logged is not None:
            # The writer's backlog is the run's work too: wait for it, then
            # count what the conversation log wrote and what it dropped.
            r["log_rows"] = settled_log_rows(target.port, logged)
        if target.pids:
            cpu = cpu_seconds(target.pids) - before
            r["proxy_cpu_s"] = cpu
            r["per_cpu_s"] = r["requests"] / cpu if cpu > 0 else None
            r["cpu_us_each"] = cpu * 1e6 / r["requests"] if r["requests"] else None
        return r

    def _record(self, key: str, title: str, rows: dict[str, Any]) -> None:
        self.results["scenarios"][key] = {"title": title, "rows": rows}

    def http_targets(self, *, variants: tuple[str, ...] = ("trioproxy",)) -> list[Target]:
        origin = self.origin()
        direct = Target("direct", origin.port, [])
        return [
            direct,
            self.nginx("origin"),
            self.floor(origin.port),
            self.floor(origin.port, h11=True),
            *(self.trioproxy(v, "origin") for v in variants),
        ]

    def wrk_scenario(
        self,
        key: str,
        title: str,
        *,
        path: str,
        method: str,
        body: int,
        conns: int,
        variants: tuple[str, ...] = ("trioproxy",),
    ) -> None:
        if key not in self.only:
            return
        rows = {}
        targets = self.http_targets(variants=variants)
        if key == "A":
            targets.append(self.floor_h2up())
        for t in targets:
            say(f"{key} {title}: {t.name} ({conns} connections, {self.seconds:g} s)")
            run_wrk(t.port, path=path, method=method, body=body, conns=conns, seconds=1)  # warm-up
            r = self.measured(
                t,
                lambda p: run_wrk(
                    p, path=path, method=method, body=body, conns=conns, seconds=self.seconds
                ),
            )
            say(
                f"   {r['rps']:,.0f} req/s  p50 {r['p50_us'] / 1000:.2f} ms  p99 {r['p99_us'] / 1000:.2f} ms"
                + (f"  {r['per_cpu_s']:,.0f} req/CPU-s" if r.get("per_cpu_s") else "")
                + f"  errors {r['errors']} non-2xx {r['non2xx']}"
            )
            rows[t.name] = r
        if key == "A":
            rows[RELOADED] = self.reloaded(path=path, method=method, body=body, conns=conns)
        self._record(key, title, rows)

    def reloaded(self, *, path: str, method: str, body: int, conns: int) -> dict[str, Any]:
        """The 2-worker proxy under the same load, reloaded (SIGHUP) at a
        third and two thirds of the run: every worker replaced twice. What
        counts is that nothing failed."""
        t = self.trioproxy(RELOADED, "origin")
        say(f"A with two reloads: {t.name} ({conns} connections, {self.seconds:g} s)")

        def load(port: int) -> dict[str, Any]:
            supervisor = t.pids[0]
            with (
                sighup_after(self.seconds / 3, supervisor),
                sighup_after(2 * self.seconds / 3, supervisor),
            ):
                return run_wrk(
                    port, path=path, method=method, body=body, conns=conns, seconds=self.seconds
                )

        r = self.measured(t, load)
        # The replaced workers' CPU left with them: a per-CPU figure would flatter.
        r["per_cpu_s"] = r["cpu_us_each"] = None
        say(
            f"   {r['rps']:,.0f} req/s  errors {r['errors']} non-2xx {r['non2xx']}"
            f"  ({r['requests']:,} requests, 2 reloads)"
        )
        return r

    def h2_scenario(self) -> None:
        if "E" not in self.only:
            return
        body = self.work / "body.json"
        body.write_text(
            '{"model":"claude-opus-4-7","max_tokens":64,"messages":[{"role":"user","content":"'
            + "a" * 900
            + '"}]}'
        )
        origin = self.origin()
        nginx = self.nginx("origin")
        targets = [
            Target("direct", origin.h2port, []),
            Target("nginx", self._h2["nginx-origin"], nginx.pids),
            self.floor(origin.h2port),
            self.floor(origin.port, h2=True),  # h2 in, h11 out: trioproxy's own path in E
            self.trioproxy("trioproxy", "origin"),
        ]
        n = int(max(10_000, 4_000 * self.seconds))
        rows = {}
        for t in targets:
            say(f"E h2c inbound (h2load -c16 -m10, {n} requests): {t.name}")
            r = self.measured(
                t,
                lambda p: run_h2load(
                    p, path="/v1/messages", body_file=body, n=n, clients=16, streams=10
                ),
            )
            say(
                f"   {r['rps']:,.0f} req/s  succeeded {r['succeeded']} failed {r['failed']}"
                + (f"  {r['per_cpu_s']:,.0f} req/CPU-s" if r.get("per_cpu_s") else "")
            )
            rows[t.name] = r
        self._record("E", "h2c inbound, h2load -c16 -m10, ~1 KB POST", rows)

    def paced_scenario(self) -> None:
        if "G" not in self.only:
            return
        fake = self.fake()
        targets = [
            Target("direct", fake, []),
            self.nginx("fake"),
            self.floor(fake),
            self.floor(fake, h11=True),
            *(self.trioproxy(v, "fake") for v in (*VARIANTS, LOGGED, BEDROCK)),
        ]
        self._paced("G", "paced SSE, 40 streams x 50 events/s of ~170-byte deltas", targets)
        hop = self.hop()
        hopped = [
            Target("direct", hop, []),
            self.floor(hop),
            self.floor(hop, h11=True),
            self.trioproxy("trioproxy", "hop"),
        ]
        self._paced("H", "G with an nginx hop before the fake (the origin's side)", hopped)

    def _paced(self, key: str, title: str, targets: list[Target]) -> None:
        """G's load (40 streams x 50 events/s) against each of ``targets``."""
        rows = {}
        for t in targets:
            say(f"{key} {title} ({self.seconds:g} s): {t.name}")
            r = self.measured(t, lambda p: run_paced(p, streams=40, seconds=self.seconds))
            say(
                f"   {r['events']:,} events ({r['errors']} errors)"
                + (f"  {r['cpu_us_each']:.1f} us CPU per event" if r.get("cpu_us_each") else "")
            )
            rows[t.name] = r
        self._record(key, title, rows)

    def idle_scenario(self, counts: list[int]) -> None:
        if "F" not in self.only:
            return
        fake = self.fake()
        targets = [
            self.nginx("fake"),
            self.floor(fake),
            self.trioproxy("trioproxy", "fake"),
            self.trioproxy("trioproxy h2c-up", "fake"),
        ]
        rows: dict[str, Any] = {}
        for t in targets:
            for count in counts:
                base = rss_kib(t.pids)
                say(f"F idle held streams: {t.name}, {count} (RSS before {base / 1024:.1f} MiB)")
                holder = Holder(t.port, count)
                if holder.failed:
                    say(f"   {holder.failed} streams failed to open: {holder.first_error}")
                after = rss_kib(t.pids)
                holder.release()
                per = (after - base) / holder.held if holder.held else None
                say(f"   held {holder.held}" + (f"; {per:.1f} KiB per stream" if per else ""))
                rows[f"{t.name} {count}"] = {
                    "held": holder.held,
                    "failed": holder.failed,
                    "rss_before_kib": base,
                    "rss_after_kib": after,
                    "kib_per_stream": per,
                }
        self._record("F", "idle held SSE streams: proxy RSS per stream", rows)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    ap.add_argument("--only", default="A,B,C,D,E,F,G,R")
    ap.add_argument("--idle", default="2000,10000", help="stream counts for F")
    ap.add_argument("--out", default=str(RESULTS / "latest"), help="results path, no suffix")
    args = ap.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ensure_tools()
    bench = Bench(args.duration, set(args.only.split(",")))
    started = time.time()
    try:
        bench.wrk_scenario(
            "A",
            "small JSON POST ~1 KB, Claude Code's headers, 64 keep-alive connections",
            path="/v1/messages",
            method="POST",
            body=1024,
            conns=64,
            variants=(*VARIANTS, LOGGED, PRODUCTION, WORKERS),
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
            variants=("trioproxy", PRODUCTION),
        )
        bench.h2_scenario()
        bench.paced_scenario()
        bench.refresh_scenario()
        bench.idle_scenario([int(x) for x in args.idle.split(",") if x])
    finally:
        bench.close()
    bench.results["command"] = "python -m bench.run " + " ".join(sys.argv[1:])
    bench.results["date"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime(started))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(bench.results, indent=2))
    from bench.report import render

    md = render(bench.results, out.with_suffix(".png"))
    out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
