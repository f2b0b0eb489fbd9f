"""Pictures of /dashboard with traffic flowing and of the conversation
log's viewer, for the documentation (bench/pictures.py).

    python -m bench.dashboard [--seconds 90] [--out bench/results/dashboard.png]
                              [--viewer-out bench/results/viewer.png]
                              [--list-out FILE] [--audit-out FILE]

Starts two fake upstreams as providers (one with a token quota), a proxy
with three callers (one, "ci", with limits: rpm, a model allowlist and a
daily budget), sends mixed traffic (streaming and not, a few faults)
for a while, then has headless Chromium (Debian package) take the picture.
With the conversation log on, a Claude Code-like session (thinking, a tool
round trip) goes through the official SDK, and the viewer shows it.
With --list-out, the viewer's list before a conversation is opened; with
--audit-out, its audit trail after a few administrative changes (a caller
added, the routing switched and back). Progress is printed every 10 s.
(bench/pictures.py makes the documentation's pictures with it.)
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.procs import free_port, wait_listening
from tests.browser import Browser, find_chromium
from tests.integration.test_viewer import SESSION, converse

CALLERS = {
    "alice": "alice-0123456789abcdef",
    "bob": "bob-0123456789abcdef",
    "ci": "ci-0123456789abcdef",
}
CI = CALLERS["ci"]
MODELS = ["claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5"]


def start(cmd: list[str], env: dict[str, str], port: int, what: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port, proc, what)
    return proc


def traffic(port: int, stop: threading.Event, rate: float) -> None:
    rnd = random.Random(7)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while not stop.is_set():
        caller = rnd.choices(list(CALLERS), weights=[5, 3, 2])[0]
        stream = rnd.random() < 0.7
        body = (
            f'{{"model":"{rnd.choice(MODELS)}","max_tokens":{rnd.randint(20, 400)},'
            f'"stream":{"true" if stream else "false"},'
            f'"messages":[{{"role":"user","content":"{"word " * rnd.randint(5, 300)}"}}]}}'
        )
        headers = {"x-api-key": CALLERS[caller], "content-type": "application/json"}
        if rnd.random() < 0.04:
            headers["x-fake-fault"] = rnd.choice(["400", "error-mid-stream=2"])
        try:
            conn.request("POST", "/v1/messages", body=body, headers=headers)
            conn.getresponse().read()
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        stop.wait(rnd.expovariate(rate))


def admin_post(port: int, path: str, body: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", path, body=body, headers={"content-type": "application/json"})
    answer = conn.getresponse()
    answer.read()
    conn.close()
    if answer.status >= 300:
        raise RuntimeError(f"POST {path}: {answer.status}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=90)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "dashboard.png"))
    ap.add_argument("--viewer-out", default=str(Path(__file__).parent / "results" / "viewer.png"))
    ap.add_argument("--list-out", default="")
    ap.add_argument("--audit-out", default="")
    args = ap.parse_args(argv)
    exe = find_chromium()
    if exe is None:
        print("chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 2
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIOPROXY_")}
    env["TRIOPROXY_LOG_LEVEL"] = "warning"
    env["TRIOPROXY_DRAIN_GRACE"] = "0"  # stop at once when done (no load balancer to warn)
    procs: list[subprocess.Popen[bytes]] = []
    work = tempfile.mkdtemp(prefix="trioproxy-dash-")
    try:
        fakes = []
        for _ in range(2):
            port = free_port()
            cmd = [
                sys.executable,
                "-m",
                "trioproxy",
                "fake-upstream",
                "--listen",
                f"127.0.0.1:{port}",
            ]
            procs.append(start(cmd, env, port, "fake upstream"))
            fakes.append(port)
        (Path(work) / "callers.toml").write_text("")
        config = Path(work) / "trioproxy.toml"
        config.write_text(
            f'state_dir = "{work}"\n'
            'log_bodies = "all"\n'
            # Callers added through /admin/callers (the audit trail's picture) go here.
            f'auth.callers_file = "{work}/callers.toml"\n'
            "[[providers]]\n"
            f'name = "anthropic"\nbase_url = "http://127.0.0.1:{fakes[0]}"\n'
            'api_key_env = "DASH_KEY"\npriority = 1\n'
            '[providers.quota]\ntokens = 400000\nwindow = "daily"\n'
            "[[providers]]\n"
            f'name = "backup"\nbase_url = "http://127.0.0.1:{fakes[1]}"\n'
            'api_key_env = "DASH_KEY"\npriority = 2\n'
            "[[callers]]\n"
            f'name = "ci"\nsecret_sha256 = ["{hashlib.sha256(CI.encode()).hexdigest()}"]\n'
            'rpm = 240\nmodels = ["claude-sonnet-*", "claude-haiku-*"]\n'
            'budget = { usd = 1, window = "daily" }\n'
        )
        port = free_port()
        secrets = ",".join(f"{n}:{s}" for n, s in CALLERS.items() if n != "ci")
        proxy_env = {**env, "DASH_KEY": "sk-fake", "TRIOPROXY_AUTH_SECRETS": secrets}
        cmd = [
            sys.executable,
            "-m",
            "trioproxy",
            "serve",
            "--config",
            str(config),
            "--listen",
            f"127.0.0.1:{port}",
        ]
        procs.append(start(cmd, proxy_env, port, "trioproxy"))
        stop = threading.Event()
        workers = [threading.Thread(target=traffic, args=(port, stop, 4.0)) for _ in range(4)]
        for w in workers:
            w.start()
        browser = Browser(exe, width=1280, height=1180)
        try:
            browser.open(f"http://127.0.0.1:{port}/dashboard")
            t0 = time.monotonic()
            while (left := args.seconds - (time.monotonic() - t0)) > 0:
                time.sleep(min(10.0, left))
                seen = browser.evaluate("+document.body.dataset.snapshots || 0")
                print(f"[dashboard] {time.monotonic() - t0:5.0f} s, {seen} snapshots", flush=True)
            browser.screenshot(Path(args.out))
            converse(f"http://127.0.0.1:{port}", CALLERS["alice"])
            time.sleep(1.0)  # the journal writes within a fraction of a second
            browser.open(f"http://127.0.0.1:{port}/admin/requests?session={SESSION}")
            browser.wait_for("document.querySelectorAll('#rows tr').length === 2")
            if args.list_out:
                browser.open(f"http://127.0.0.1:{port}/admin/requests")
                browser.wait_for("document.querySelectorAll('#rows tr').length > 10")
                browser.screenshot(Path(args.list_out))
                browser.open(f"http://127.0.0.1:{port}/admin/requests?session={SESSION}")
                browser.wait_for("document.querySelectorAll('#rows tr').length === 2")
            browser.evaluate("document.querySelector('#rows tr').click()")
            browser.wait_for("document.querySelectorAll('#conversation .turn').length === 2")
            browser.screenshot(Path(args.viewer_out))
            if args.audit_out:
                admin_post(port, "/admin/callers", '{"name": "dana", "rpm": 30}')
                admin_post(port, "/admin/route", '{"mode": "single", "provider": "anthropic"}')
                admin_post(port, "/admin/route", '{"mode": "failover"}')
                browser.open(f"http://127.0.0.1:{port}/admin/requests#audit")
                browser.wait_for("document.querySelectorAll('#audit-rows tr').length >= 3")
                browser.screenshot(Path(args.audit_out))
        finally:
            browser.close()
            stop.set()
            for w in workers:
                w.join()
        print(f"wrote {args.out} and {args.viewer_out}")
        return 0
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    sys.exit(main())
