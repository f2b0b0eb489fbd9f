"""`trioproxy serve --workers N`: a supervisor and its worker processes, as
real processes with real signals."""

from __future__ import annotations

import os
import re
import signal
import socket
from pathlib import Path

import orjson
import pytest
import trio

from tests.helpers import (
    H1Client,
    H1Response,
    H2Client,
    clean_env,
    h1_request,
    serving,
    start_fake,
    stream_through_sigterm,
)

JSON = orjson.dumps({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
STREAM = orjson.dumps(
    {"model": "m", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "x"}]}
)
STARTED = rb"worker (\d) started \(pid (\d+)\)"


def children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        out |= {int(c) for c in (task / "children").read_text().split()}
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def until(predicate: object, what: str, seconds: float = 10) -> None:
    """Poll ``predicate`` until true: another process's state in /proc has
    no event to wait on."""
    with trio.fail_after(seconds):
        while not predicate():  # type: ignore[operator]  # noqa: ASYNC110
            await trio.sleep(0.05)


async def test_workers_serve_a_killed_one_is_replaced_and_sigterm_drains(
    nursery: trio.Nursery,
) -> None:
    fake = await start_fake(nursery)
    env = clean_env(TRIOPROXY_DRAIN_GRACE="1")
    async with serving("--upstream", fake.url, "--workers", "2", env=env) as proxy:
        assert re.search(rb"listening on .*\(2 workers\)", bytes(proxy.log))
        # The configuration's summary once, from worker 0, not once per worker.
        assert re.findall(rb"\[worker (\d)\]: providers: ", bytes(proxy.log)) == [b"0"]
        assert re.findall(rb"\[worker (\d)\]: caller auth is off", bytes(proxy.log)) == [b"0"]
        workers = children(proxy.proc.pid)
        assert len(workers) == 2
        for _ in range(20):
            assert (await h1_request(proxy.port, "POST", "/v1/messages", [], JSON)).status == 200

        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        # The other worker keeps serving while the supervisor replaces this one.
        for _ in range(20):
            assert (await h1_request(proxy.port, "POST", "/v1/messages", [], JSON)).status == 200
        with trio.fail_after(10):
            await proxy.logged(rb"worker \d \(pid %d\) was killed by SIGKILL" % victim)
            await proxy.logged(rb"starting a new one in 0.5 s")
        await until(lambda: len(children(proxy.proc.pid) - {victim}) == 2, "a replacement")
        replacement = children(proxy.proc.pid) - workers
        assert len(replacement) == 1 and victim not in children(proxy.proc.pid)
        with trio.fail_after(10):
            await proxy.logged(rb"worker \d started \(pid %d\)" % next(iter(replacement)))

        # SIGTERM: a stream in flight finishes, then every process exits 0.
        await stream_through_sigterm(proxy, STREAM)
        with trio.fail_after(15):
            assert await proxy.proc.wait() == 0
        assert not any(alive(pid) for pid in replacement | (workers - {victim}))


SITE = """
import os, sys
if "--worker-fds" in sys.argv:
    with open({mark!r}, "a") as f:
        f.write(f"{{os.getpid()}} {version}\\n")
"""


async def test_sighup_replaces_workers_under_load_without_losing_a_request(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """The rolling reload: fresh processes (they run the code on disk now),
    each accepting before the one it replaces stops, streams in flight
    finishing on the old ones, and no request failing or refused meanwhile."""
    site, mark = tmp_path / "site", tmp_path / "mark"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITE.format(mark=str(mark), version="v1"))
    notify_path = tmp_path / "notify.sock"
    rx = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await rx.bind(str(notify_path))
    env = clean_env(PYTHONPATH=str(site), NOTIFY_SOCKET=str(notify_path), TRIOPROXY_DRAIN_GRACE="1")
    fake = await start_fake(nursery)
    failures: list[str] = []
    sent = 0

    async def load(port: int) -> None:
        nonlocal sent
        while True:
            try:  # a new connection each time: a refused one would show
                resp = await h1_request(port, "POST", "/v1/messages", [], JSON)
                if resp.status != 200:
                    failures.append(f"status {resp.status}")
            except OSError as exc:
                failures.append(repr(exc))
            sent += 1

    async def keepalive(port: int) -> None:
        nonlocal sent
        while True:  # one client on one keep-alive connection, reconnecting when told to
            async with await H1Client.connect(port) as c:
                while True:
                    await c.send_request("POST", "/v1/messages", [], JSON)
                    resp = await c.read_response()
                    sent += 1
                    if resp.status != 200:
                        failures.append(f"keep-alive status {resp.status}")
                    if (b"connection", b"close") in resp.headers:
                        break

    with rx:
        async with serving("--upstream", fake.url, "--workers", "2", env=env) as proxy:
            with trio.fail_after(10):
                assert (await rx.recv(1000)).startswith(b"READY=1")
            async with await H1Client.connect(proxy.port) as stream, trio.open_nursery() as n:
                await stream.send_request(
                    "POST", "/v1/messages", [("x-fake-fault", "event-delay=0.1")], STREAM
                )
                assert await stream.receive_some()  # in flight on a first-generation worker
                n.start_soon(load, proxy.port)
                n.start_soon(keepalive, proxy.port)
                for version in ("v2", "v3"):
                    (site / "sitecustomize.py").write_text(
                        SITE.format(mark=str(mark), version=version)
                    )
                    proxy.proc.send_signal(signal.SIGHUP)
                    with trio.fail_after(30):
                        assert (await rx.recv(1000)).startswith(b"RELOADING=1")
                        ready = await rx.recv(1000)
                    assert ready.startswith(b"READY=1\nSTATUS=configuration reloaded"), ready
                with trio.fail_after(20):
                    resp = await stream.read_response()
                n.cancel_scope.cancel()
            assert resp.complete and resp.body.endswith(b'data: {"type":"message_stop"}\n\n')
            assert sent > 50 and failures == []
            written = {int(p): v for p, v in (ln.split() for ln in mark.read_text().splitlines())}
            assert sorted(written.values()) == ["v1"] * 2 + ["v2"] * 2 + ["v3"] * 2
            newest = {pid for pid, v in written.items() if v == "v3"}
            assert newest <= children(proxy.proc.pid)  # the code on disk at the last reload
            await until(lambda: children(proxy.proc.pid) == newest, "older workers gone", 15)


async def test_workers_leave_when_the_supervisor_is_killed(nursery: trio.Nursery) -> None:
    """No orphan keeps the port: a restarted proxy can bind it again."""
    fake = await start_fake(nursery)
    env = clean_env(TRIOPROXY_DRAIN_GRACE="1")
    async with serving("--upstream", fake.url, "--workers", "2", env=env) as proxy:
        workers = children(proxy.proc.pid)
        assert (await h1_request(proxy.port, "POST", "/v1/messages", [], JSON)).status == 200
        proxy.proc.kill()
        await proxy.proc.wait()
        await until(lambda: not any(alive(p) for p in workers), "workers gone", 15)
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", proxy.port)) != 0


async def test_metrics_add_up_across_workers_and_reloads(nursery: trio.Nursery) -> None:
    """Counts from every worker add up, also those of workers replaced by a
    reload; a routing switch reaches every worker."""
    fake = await start_fake(nursery)
    env = clean_env(TRIOPROXY_DRAIN_GRACE="1")
    async with serving("--upstream", fake.url, "--workers", "2", env=env) as proxy:
        a, b = sorted(children(proxy.proc.pid))

        async def send(n: int) -> None:
            for _ in range(n):
                resp = await h1_request(proxy.port, "POST", "/v1/messages", [], JSON)
                assert resp.status == 200

        # Which worker accepts is the kernel's choice: stop one at a time to know.
        for paused, n in ((a, 10), (b, 20)):
            os.kill(paused, signal.SIGSTOP)
            try:
                await send(n)
            finally:
                os.kill(paused, signal.SIGCONT)
        view = orjson.loads((await h1_request(proxy.port, "GET", "/metrics.json")).body)
        assert view["workers"] == 2
        assert sum(r["count"] for r in view["requests"]) == 30
        assert {w["pid"]: w["requests"] for w in view["by_worker"]} == {a: 20, b: 10}
        text = (await h1_request(proxy.port, "GET", "/metrics")).body.decode()
        totals = re.findall(r'^trioproxy_requests_total\{[^}]*code="200"[^}]*\} (\d+)$', text, re.M)
        assert sum(map(int, totals)) == 30
        assert re.search(r"^trioproxy_workers 2$", text, re.M)

        proxy.proc.send_signal(signal.SIGHUP)
        with trio.fail_after(20):
            await proxy.logged(rb"configuration reloaded: 2 worker")
        await until(lambda: not ({a, b} & children(proxy.proc.pid)), "old workers gone", 15)
        await send(5)
        view = orjson.loads((await h1_request(proxy.port, "GET", "/metrics.json")).body)
        assert sum(r["count"] for r in view["requests"]) == 35  # the old workers' 30 kept
        assert view["duration_s"]["count"] == 35

        resp = await h1_request(
            proxy.port, "POST", "/admin/route", [], b'{"mode": "single", "provider": "default"}'
        )
        assert resp.status == 200
        for worker in children(proxy.proc.pid):  # each in turn answers alone
            others = children(proxy.proc.pid) - {worker}
            for pid in others:
                os.kill(pid, signal.SIGSTOP)
            try:
                providers = await h1_request(proxy.port, "GET", "/admin/providers")
            finally:
                for pid in others:
                    os.kill(pid, signal.SIGCONT)
            assert orjson.loads(providers.body)["mode"] == "single", worker


async def test_workers_share_a_quota(nursery: trio.Nursery, tmp_path: Path) -> None:
    """What one worker learns, the others know within about a second: a
    quota spent through one stops the other from using that provider
    (breakers, cooldowns, affinity and the mode go the same way: see
    tests/unit/test_store.py)."""
    a, b = await start_fake(nursery), await start_fake(nursery)
    toml = tmp_path / "trioproxy.toml"
    toml.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f'[[providers]]\nname = "a"\nbase_url = "{a.url}"\npriority = 1\n'
        'quota = { tokens = 30, window = "daily", threshold = 0.9 }\n'
        f'[[providers]]\nname = "b"\nbase_url = "{b.url}"\npriority = 2\n'
    )
    env = clean_env(TRIOPROXY_DRAIN_GRACE="1")
    async with serving("--config", str(toml), "--workers", "2", env=env) as proxy:
        one, two = sorted(children(proxy.proc.pid))
        assert a.fake is not None and b.fake is not None

        async def alone(worker: int, method: str, path: str, body: bytes | None) -> H1Response:
            """One request that only ``worker`` can accept."""
            others = children(proxy.proc.pid) - {worker}
            for pid in others:
                os.kill(pid, signal.SIGSTOP)
            try:
                return await h1_request(proxy.port, method, path, [], body)
            finally:
                for pid in others:
                    os.kill(pid, signal.SIGCONT)

        def state_of_a(resp: H1Response) -> str:
            doc = orjson.loads(resp.body)
            return str(next(p["state"] for p in doc["routing"]["providers"] if p["name"] == "a"))

        assert (await alone(one, "POST", "/v1/messages", JSON)).status == 200
        assert (a.fake.requests, b.fake.requests) == (1, 0)  # worker one spent a's quota
        # Worker two's own view (it answers /metrics.json alone, so the merge
        # leads with its routing). Usually a second; but a worker paused by
        # SIGSTOP in the middle of a sync holds the file's write lock, and the
        # other then waits for it (up to the store's 5 s busy timeout): the
        # bound here is that, the one-second figure is test_redis_store's.
        with trio.fail_after(12):
            while True:
                if state_of_a(await alone(two, "GET", "/metrics.json", None)) == "over_quota":
                    break
                await trio.sleep(0.2)  # another process's view: nothing to wait on
        assert (await alone(two, "POST", "/v1/messages", JSON)).status == 200
        assert (a.fake.requests, b.fake.requests) == (1, 1)  # worker two knows a is over quota
        view = orjson.loads((await h1_request(proxy.port, "GET", "/livez")).body)
        assert view["state_store"] == "ok" and view["workers"] == 2


LONG_STREAM = ("x-fake-fault", "event-delay=0.2,delta-chars=10,text-bytes=1000")  # ~20 s


@pytest.mark.timeout(150)  # a minute of traffic, then the streams' last 20 s
async def test_three_reloads_in_a_minute_of_mixed_traffic_lose_nothing(
    nursery: trio.Nursery,
) -> None:
    """HTTP/1.1 and HTTP/2 clients, small requests and 20 s streams, for 60 s
    while SIGHUP comes three times: every request succeeds, every stream
    completes, no connection is refused. An HTTP/2 stream the server refused
    after its GOAWAY (REFUSED_STREAM: never processed) is sent again on a new
    connection, as clients do."""
    fake = await start_fake(nursery)
    env = clean_env(TRIOPROXY_DRAIN_GRACE="2")
    problems: list[str] = []
    counts = {"h1": 0, "h1-keepalive": 0, "h2": 0, "streams": 0}
    refused = 0

    async with serving("--upstream", fake.url, "--workers", "2", env=env) as proxy:
        port = proxy.port

        async def h1_small() -> None:
            while True:
                try:
                    resp = await h1_request(port, "POST", "/v1/messages", [], JSON)
                except OSError as exc:
                    problems.append(f"h1: {exc!r}")
                    continue
                if resp.status != 200:
                    problems.append(f"h1 status {resp.status}")
                counts["h1"] += 1
                await trio.sleep(0.02)

        async def h1_keepalive() -> None:
            while True:
                async with await H1Client.connect(port) as c:
                    while True:
                        await c.send_request("POST", "/v1/messages", [], JSON)
                        resp = await c.read_response()
                        if resp.status != 200:
                            problems.append(f"keep-alive status {resp.status}")
                        counts["h1-keepalive"] += 1
                        if (b"connection", b"close") in resp.headers:
                            break
                        await trio.sleep(0.02)

        async def h2_small() -> None:
            nonlocal refused
            while True:
                client: H2Client | None = None
                try:
                    async with trio.open_nursery() as conn_nursery:
                        client = await H2Client.connect(conn_nursery, port)
                        while not client.goaway_seen.is_set():
                            r = await client.request("POST", "/v1/messages", [], JSON)
                            if r.reset == 7:  # REFUSED_STREAM after a GOAWAY: never processed
                                refused += 1
                                break
                            if r.status != 200 or not r.ended:
                                problems.append(f"h2 status {r.status} reset {r.reset}")
                            counts["h2"] += 1
                            await trio.sleep(0.02)
                        conn_nursery.cancel_scope.cancel()  # the reader first, then the socket
                finally:
                    if client is not None:
                        await trio.aclose_forcefully(client.stream)

        async def long_stream(started: trio.Event) -> None:
            async with await H1Client.connect(port) as c:
                await c.send_request("POST", "/v1/messages", [LONG_STREAM], STREAM)
                started.set()
                with trio.fail_after(60):
                    resp = await c.read_response()
            if not (resp.complete and resp.body.endswith(b'data: {"type":"message_stop"}\n\n')):
                problems.append(f"stream incomplete: {len(resp.body)} bytes")
            counts["streams"] += 1

        async with trio.open_nursery() as streams, trio.open_nursery() as load:
            for job in (h1_small, h1_keepalive, h2_small):
                load.start_soon(job)
            for second in range(60):
                if second % 10 == 0 and second <= 40:  # a 20 s stream every 10 s
                    started = trio.Event()
                    streams.start_soon(long_stream, started)
                    await started.wait()
                if second in (12, 27, 42):
                    proxy.proc.send_signal(signal.SIGHUP)
                await trio.sleep(1)
            load.cancel_scope.cancel()
        with trio.fail_after(10):
            await proxy.logged(rb"(?s)(configuration reloaded.*){3}")
    assert problems == []
    assert counts["streams"] == 5
    assert min(counts["h1"], counts["h1-keepalive"], counts["h2"]) > 100, counts
