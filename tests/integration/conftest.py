from __future__ import annotations

import gc
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import PostgresServer, RedisServer, postgres_bin


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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One Postgres cluster for the session (initdb takes a second or two);
    each test gets a database of its own (``postgres_url``). Debian's
    postgresql package: `.ci/run` installs it."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.fail("Postgres is not installed (apt-get install postgresql)")
    server = PostgresServer(bindir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A fresh database in the session's cluster."""
    name = "t_" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:16]
    return postgres_server.create_database(name)
