"""nginx as the origin, over HTTP/1.1 keep-alive, closing each upstream
connection after a few requests (nginx's keepalive_requests; 1,000 by
default, 20 here so a short test recycles a hundred connections). HTTP/2
clients with many streams in flight, as h2load in scenario E: every stream
is answered, none errors, nothing is logged at ERROR. A request that was
never written to a connection the origin closed goes on a new connection."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import trio

from tests.helpers import H2Client, start_proxy, unless_in_ci
from tests.services import NginxOrigin, tool

pytestmark = unless_in_ci(tool("nginx") is None, "nginx is not installed")
BODY = orjson.dumps(
    {
        "model": "claude-sonnet-4-6",
        "max_tokens": 20,
        "messages": [{"role": "user", "content": "hi"}],
    }
)
CONNECTIONS, STREAMS, ROUNDS = 4, 10, 50  # 2,000 requests


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[NginxOrigin]:
    (tmp_path / "nginx").mkdir()
    tmp_path.chmod(0o755)  # nginx's worker runs unprivileged: it must reach its files
    nginx = NginxOrigin(tmp_path / "nginx", keepalive_requests=20)
    nginx.start()
    try:
        yield nginx
    finally:
        nginx.stop()


@pytest.mark.timeout(120)
async def test_h2_clients_through_a_recycling_nginx_origin(
    nursery: trio.Nursery, origin: NginxOrigin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    proxy = await start_proxy(nursery, origin.url)
    statuses: list[int] = []

    async def client() -> None:
        h2 = await H2Client.connect(nursery, proxy.port)
        try:
            for _ in range(ROUNDS):
                sids = [
                    await h2.start("POST", "/v1/messages", [("x-api-key", "k")], BODY)
                    for _ in range(STREAMS)
                ]
                for sid in sids:
                    r = h2.results[sid]
                    await r.done.wait()
                    statuses.append(r.status if r.ended else -1)
        finally:
            await h2.aclose()

    with trio.fail_after(100):
        async with trio.open_nursery() as clients:
            for _ in range(CONNECTIONS):
                clients.start_soon(client)
    assert statuses == [200] * (CONNECTIONS * STREAMS * ROUNDS)
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [(r.name, r.getMessage()) for r in bad]
