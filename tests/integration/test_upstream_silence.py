"""An HTTP/2 upstream that stops answering without closing (a frozen host,
a NAT that forgot the connection): the fake upstream as a real process,
frozen with SIGSTOP. The kernel keeps its connections open and even
accepts new ones, so nothing fails; only PINGs and the connect timeout
tell the proxy, long before the response-headers timeout (60 s here)."""

from __future__ import annotations

import logging
import os
import signal

import orjson
import pytest
import trio

from tests.helpers import clean_env, h1_request, read_until, spawn_trioproxy, start_proxy, stop
from tests.services import free_port

PING_INTERVAL = 2.0  # upstream.h2_ping_interval
PING_TIMEOUT = 1.0  # upstream.h2_ping_timeout
BODY = orjson.dumps(
    {
        "model": "claude-sonnet-4-6",
        "max_tokens": 20,
        "messages": [{"role": "user", "content": "hi"}],
    }
)
WAITING = 6  # requests waiting on the connection when the upstream freezes


async def frozen_fake() -> tuple[trio.Process, int]:
    port = free_port()
    proc = await spawn_trioproxy("fake-upstream", "--listen", f"127.0.0.1:{port}", env=clean_env())
    assert proc.stderr is not None
    with trio.fail_after(20):
        await read_until(proc.stderr, rb"listening on", bytearray())
    return proc, port


async def test_a_frozen_h2_upstream_is_noticed_by_its_pings(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="trioproxy")
    fake, port = await frozen_fake()
    try:
        proxy = await start_proxy(
            nursery,
            f"http://127.0.0.1:{port}",
            upstream__h2_prior_knowledge=True,
            upstream__h2_ping_interval=PING_INTERVAL,
            upstream__h2_ping_timeout=PING_TIMEOUT,
            timeouts__response_headers=60,
            routing__retries=0,
        )
        warm = await h1_request(proxy.port, "POST", "/v1/messages", [], BODY)
        assert warm.status == 200  # the h2c connection is up
        answers: list[tuple[int, float]] = []

        async def waiting() -> None:
            t0 = trio.current_time()
            r = await h1_request(
                proxy.port, "POST", "/v1/messages", [("x-fake-fault", "slow-headers=30")], BODY
            )
            answers.append((r.status, trio.current_time() - t0))

        async with trio.open_nursery() as clients:
            for _ in range(WAITING):
                clients.start_soon(waiting)
            await trio.sleep(0.3)  # all sent, all waiting for headers
            os.kill(fake.pid, signal.SIGSTOP)
        assert [s for s, _ in answers] == [502] * WAITING
        # Silence is counted from the last thing the upstream sent (the warm
        # answer, just before): each waited at most interval + timeout + 1 s.
        assert max(t for _, t in answers) <= PING_INTERVAL + PING_TIMEOUT + 1, answers
        retired = [r.getMessage() for r in caplog.records if r.name == "trioproxy.upstream.h2"]
        assert len(retired) == 1 and "retiring it" in retired[0], retired
    finally:
        os.kill(fake.pid, signal.SIGCONT)
        await stop(fake)


async def test_a_frozen_h2_upstream_is_a_failed_connect(nursery: trio.Nursery) -> None:
    """A new connection whose peer accepts TCP but never sends its HTTP/2
    SETTINGS fails within timeouts.connect: 502, not the headers timeout."""
    fake, port = await frozen_fake()
    try:
        os.kill(fake.pid, signal.SIGSTOP)
        proxy = await start_proxy(
            nursery,
            f"http://127.0.0.1:{port}",
            upstream__h2_prior_knowledge=True,
            timeouts__connect=1.5,
            timeouts__response_headers=60,
            routing__retries=0,
        )
        t0 = trio.current_time()
        r = await h1_request(proxy.port, "POST", "/v1/messages", [], BODY)
        took = trio.current_time() - t0
        assert r.status == 502 and took <= 1.5 + 1, (r.status, took, r.body)
        assert b"could not be connected to within 1.5 s" in r.body
    finally:
        os.kill(fake.pid, signal.SIGCONT)
        await stop(fake)
