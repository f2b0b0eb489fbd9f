from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import RedisServer


@pytest.fixture(params=["h1", "h2c"], ids=["up-h1", "up-h2c"])
def upstream_opts(request: pytest.FixtureRequest) -> dict[str, object]:
    """Run a test against both upstream protocols: HTTP/1.1 and h2c prior knowledge."""
    return {"upstream__h2_prior_knowledge": request.param == "h2c"}


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own. coredis leaves the anyio streams of a
    broken connection to the garbage collector (a ResourceWarning the tests
    that use this filter out): collected here, so it cannot surface in some
    later test."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        gc.collect()
