"""[[routes]] over real sockets: a rule sends a kind of request to its
provider with its model, its fallbacks take over when that provider fails,
and the access line and /metrics name the rule."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest
import trio

from tests.helpers import Running, h1_request, make_config, start_fake
from trioproxy.server import Server

BODY = {
    "model": "claude-haiku-4-5",
    "max_tokens": 20,
    "messages": [{"role": "user", "content": "hi"}],
}


async def test_a_rule_routes_with_its_model_and_falls_back(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    main, cheap, spare = [await start_fake(nursery) for _ in range(3)]
    assert main.fake is not None and cheap.fake is not None and spare.fake is not None
    server = Server(
        make_config(
            providers=[
                {"name": "main", "base_url": main.url, "priority": 1},
                {"name": "cheap", "base_url": cheap.url, "priority": 2},
                {"name": "spare", "base_url": spare.url, "priority": 3},
            ],
            routes=[
                {
                    "name": "housekeeping",
                    "match": {"model": "claude-haiku-*"},
                    "provider": "cheap",
                    "model": "qwen-small",
                    "fallbacks": ["spare"],
                }
            ],
            routing__retries=0,
        )
    )
    proxy = Running(server, await nursery.start(server.serve))
    with caplog.at_level(logging.INFO, logger="trioproxy.access"):
        r = await h1_request(proxy.port, "POST", "/v1/messages", [], orjson.dumps(BODY))
        assert r.status == 200
        assert (main.fake.requests, cheap.fake.requests) == (0, 1)
        assert orjson.loads(cheap.fake.last_body)["model"] == "qwen-small"
        # Another model: no rule, routed as before (main first).
        other = {**BODY, "model": "claude-sonnet-4-6"}
        assert (
            await h1_request(proxy.port, "POST", "/v1/messages", [], orjson.dumps(other))
        ).status == 200
        assert main.fake.requests == 1
        # The rule's provider fails: its fallback serves, with its own model mapping.
        cheap.fake.default_faults = b"500"
        r = await h1_request(proxy.port, "POST", "/v1/messages", [], orjson.dumps(BODY))
        assert r.status == 200 and spare.fake.requests == 1 and main.fake.requests == 1
        assert orjson.loads(spare.fake.last_body)["model"] == "claude-haiku-4-5"
        metrics = (await h1_request(proxy.port, "GET", "/metrics")).body.decode()
        for _ in range(100):
            if (
                sum(
                    len(x.getMessage().splitlines())
                    for x in caplog.records
                    if x.name == "trioproxy.access"
                )
                >= 3
            ):
                break
            await trio.sleep(0.05)
    assert 'trioproxy_route_requests_total{route="housekeeping"} 2' in metrics
    lines = [
        orjson.loads(ln)
        for x in caplog.records
        if x.name == "trioproxy.access"
        for ln in x.getMessage().splitlines()
    ]
    assert [ln["route"] for ln in lines] == ["housekeeping", "", "housekeeping"]
    assert lines[2]["providers_tried"] == "cheap,spare"
