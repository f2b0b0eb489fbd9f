"""An HTTP/2 upstream that dies under load: the proxy and the fake upstream
as real processes, the upstream killed with SIGKILL while 48 clients (HTTP/1.1
and HTTP/2) are in flight, twenty times over.

Every client gets an answer: a complete response, a stream cut the way the
upstream's was cut, or a 502/504 in Anthropic's shape. None waits forever,
none gets a connection closed without a status line, nothing stays counted
in flight, and the proxy still exits at once on SIGTERM."""

from __future__ import annotations

import random
import signal
import socket

import orjson
import pytest
import trio

from tests.helpers import (
    H1Client,
    H2Client,
    clean_env,
    h1_request,
    read_until,
    serving,
    spawn_trioproxy,
    stop,
)

ROUNDS = 20
H1_CLIENTS = 32
H2_STREAMS = 16  # on one HTTP/2 connection: 48 requests in flight in all
HEADERS_TIMEOUT = 3.0  # seconds (timeouts.response_headers)
ANSWER_WITHIN = HEADERS_TIMEOUT + 5.0  # the header timeout, plus retries and backoff


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def body(kind: int) -> tuple[bytes, list[tuple[str, str]]]:
    """A streaming request, a JSON one, or one whose headers come late."""
    doc: dict[str, object] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 20,
        "messages": [{"role": "user", "content": "hi"}],
    }
    if kind == 0:
        doc["stream"] = True
        return orjson.dumps(doc), [("x-fake-fault", "event-delay=0.03")]
    if kind == 1:
        return orjson.dumps(doc), []
    return orjson.dumps(doc), [("x-fake-fault", "slow-headers=0.2")]


def acceptable(status: int, complete: bool, data: bytes, kind: int) -> bool:
    if status == 200:
        # Complete, or cut the way the upstream's was cut. A stream's head goes
        # to the client as it comes (its first event may be 30 ms later), so
        # a kill in between is a cut with no body, as a direct client sees it.
        # A sized answer's head waits for its first bytes: cut after them.
        return complete or bool(data) or kind == 0
    if status in (502, 504):
        return orjson.loads(data)["type"] == "error"
    return False


@pytest.mark.timeout(120)  # twenty rounds take about 55 s: the default 60 s bound is too tight
async def test_killed_h2_upstream_never_leaves_a_request_hanging(
    nursery: trio.Nursery,
) -> None:
    rng = random.Random(20261130)
    up_port = free_port()
    env = clean_env(
        TRIOPROXY_UPSTREAM=f"http://127.0.0.1:{up_port}",
        TRIOPROXY_UPSTREAM_H2_PRIOR_KNOWLEDGE="1",
        TRIOPROXY_RESPONSE_HEADERS_TIMEOUT=str(HEADERS_TIMEOUT),
        TRIOPROXY_USAGE_LEDGER="0",
    )
    fake: trio.Process | None = None
    async with serving(env=env) as proxy:
        port = proxy.port
        outcomes: list[tuple[str, int, bool]] = []
        try:
            for round_no in range(ROUNDS):
                fake = await spawn_trioproxy(
                    "fake-upstream", "--listen", f"127.0.0.1:{up_port}", env=clean_env()
                )
                assert fake.stderr is not None
                with trio.fail_after(20):
                    await read_until(fake.stderr, rb"listening on", bytearray())
                kill_after = rng.choice([0.0, 0.005, 0.02, 0.05, 0.1, 0.2, 0.3])
                await one_round(nursery, port, fake, kill_after, outcomes, round_no)
        finally:
            if fake is not None:
                await stop(fake)
        assert len(outcomes) == ROUNDS * (H1_CLIENTS + H2_STREAMS)
        assert any(s == 200 for _, s, _ in outcomes) and any(s == 502 for _, s, _ in outcomes)
        with trio.fail_after(5):
            while True:  # the last exchanges settle (access lines, counters)
                live = orjson.loads((await h1_request(port, "GET", "/livez")).body)
                if live["in_flight"] == 1:  # this /livez request itself
                    break
                await trio.sleep(0.05)
        t0 = trio.current_time()
        proxy.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(5):
            assert await proxy.proc.wait() == 0
        assert trio.current_time() - t0 < 1.0
        log = bytes(proxy.log)
        assert b" ERROR " not in log and b"Traceback" not in log, log.decode()[-3000:]


async def one_round(
    nursery: trio.Nursery,
    port: int,
    fake: trio.Process,
    kill_after: float,
    outcomes: list[tuple[str, int, bool]],
    round_no: int,
) -> None:
    """48 requests in flight, the upstream killed ``kill_after`` seconds in."""
    h2 = await H2Client.connect(nursery, port)

    async def one_h1(kind: int) -> None:
        data, headers = body(kind)
        async with await H1Client.connect(port) as c:
            await c.send_request("POST", "/v1/messages", headers, data)
            r = await c.read_response()
        outcomes.append(("h1", r.status, r.complete))
        assert acceptable(r.status, r.complete, r.body, kind), (round_no, kind, r)

    async def one_h2(kind: int) -> None:
        data, headers = body(kind)
        r = await h2.request("POST", "/v1/messages", headers, data)
        outcomes.append(("h2", r.status, r.ended))
        # A reset before any header is a request left without an answer.
        assert r.status, (round_no, kind, r.reset)
        assert acceptable(r.status, r.ended, bytes(r.body), kind), (round_no, kind, r)

    with trio.fail_after(ANSWER_WITHIN):
        async with trio.open_nursery() as clients:
            for i in range(H1_CLIENTS):
                clients.start_soon(one_h1, i % 3)
            for i in range(H2_STREAMS):
                clients.start_soon(one_h2, i % 3)
            await trio.sleep(kill_after)
            fake.send_signal(signal.SIGKILL)
    await fake.wait()
    await h2.aclose()
