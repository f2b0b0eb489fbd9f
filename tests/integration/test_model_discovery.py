"""GET /v1/models is answered by the proxy from its own catalogue, in the
format the client speaks, filtered by the caller's allowlist; no upstream
is asked. Claude Code's gateway model discovery lists what it gets."""

from __future__ import annotations

import hashlib
import tempfile
from functools import partial
from pathlib import Path

import orjson
import pytest
import trio

from tests.helpers import Running, h1_request, make_config, start_fake, unless_in_ci
from tests.integration.test_claude_code import CLAUDE, claude, refuse
from trioproxy.server import Server

ALICE, BOB = "alice-secret-0123456789", "bob-secret-0123456789ab"
CALLERS = [
    {"name": "alice", "secret_sha256": [hashlib.sha256(ALICE.encode()).hexdigest()]},
    {
        "name": "bob",
        "secret_sha256": [hashlib.sha256(BOB.encode()).hexdigest()],
        "models": ["claude-haiku-*"],
    },
]
ALIASES = {"claude-team-fast": "claude-haiku-4-5", "claude-team-best": "claude-opus-5-5"}


async def proxy_with_catalogue(nursery: trio.Nursery, **cfg: object) -> tuple[Running, Running]:
    fake = await start_fake(nursery)
    key = Path(tempfile.mkdtemp(prefix="trioproxy-key-")) / "anthropic.key"
    key.write_text("sk-ant-fake-0123456789")
    provider = {
        "name": "anthropic",
        "base_url": fake.url,
        "api_key_file": str(key),
        "models": {"claude-sonnet-4-6": "claude-sonnet-4-6", "claude-*": "claude-opus-5-5"},
    }
    server = Server(make_config(providers=[provider], aliases=ALIASES, **cfg))
    return fake, Running(server, await nursery.start(server.serve))


async def test_the_catalogue_in_anthropic_s_and_openai_s_shapes(nursery: trio.Nursery) -> None:
    fake, proxy = await proxy_with_catalogue(nursery)
    assert fake.fake is not None
    anthropic = [("anthropic-version", "2023-06-01")]
    r = await h1_request(proxy.port, "GET", "/v1/models?limit=1000", anthropic)
    doc = orjson.loads(r.body)
    assert r.status == 200 and [m["id"] for m in doc["data"]] == [
        "claude-team-fast",
        "claude-team-best",
        "claude-sonnet-4-6",
    ]
    assert doc["data"][0] == {
        "type": "model",
        "id": "claude-team-fast",
        "display_name": "Claude Haiku 4.5 (claude-team-fast)",
        "created_at": "1970-01-01T00:00:00Z",
    }
    assert doc["has_more"] is False and doc["last_id"] == "claude-sonnet-4-6"
    one = await h1_request(proxy.port, "GET", "/v1/models/claude-team-best", anthropic)
    assert one.status == 200 and orjson.loads(one.body)["display_name"].startswith("Claude Opus")
    missing = await h1_request(proxy.port, "GET", "/v1/models/claude-nope", anthropic)
    assert (
        missing.status == 404 and orjson.loads(missing.body)["error"]["type"] == "not_found_error"
    )
    openai = await h1_request(proxy.port, "GET", "/v1/models")
    listed = orjson.loads(openai.body)
    assert listed["object"] == "list" and listed["data"][0]["object"] == "model"
    gone = await h1_request(proxy.port, "GET", "/v1/models/claude-nope")
    error = orjson.loads(gone.body)["error"]
    assert gone.status == 404 and error["code"] == "model_not_found"
    assert fake.fake.requests == 0  # never an upstream's list


async def test_a_caller_sees_only_what_it_may_use(nursery: trio.Nursery) -> None:
    _fake, proxy = await proxy_with_catalogue(nursery, callers=CALLERS)
    anthropic = [("anthropic-version", "2023-06-01")]

    async def ids(secret: str) -> list[str]:
        r = await h1_request(proxy.port, "GET", "/v1/models", [*anthropic, ("x-api-key", secret)])
        assert r.status == 200
        return [m["id"] for m in orjson.loads(r.body)["data"]]

    assert await ids(ALICE) == ["claude-team-fast", "claude-team-best", "claude-sonnet-4-6"]
    assert await ids(BOB) == ["claude-team-fast"]  # it serves claude-haiku-4-5
    r = await h1_request(proxy.port, "GET", "/v1/models", anthropic)
    assert r.status == 401


@unless_in_ci(not CLAUDE.exists(), "Claude Code is not installed (make js-clients)")
@pytest.mark.timeout(150)
async def test_claude_code_lists_the_gateway_s_models(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """With CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1 Claude Code asks the
    proxy for its models and caches what it got."""
    _fake, proxy = await proxy_with_catalogue(nursery, callers=CALLERS)
    listeners = await nursery.start(partial(trio.serve_tcp, refuse, 0, host="127.0.0.1"))
    refuser = listeners[0].socket.getsockname()[1]
    home = tmp_path / "home"
    home.mkdir()
    for secret, expected in ((ALICE, set(ALIASES)), (BOB, {"claude-team-fast"})):
        result = await claude(
            proxy.url,
            refuser,
            api_key=secret,
            extra={"CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1", "HOME": str(home)},
            # bob may use only what serves claude-haiku-*: its alias
            args=("--model", "claude-team-fast") if secret == BOB else (),
        )
        assert result["is_error"] is False, orjson.dumps(result).decode()
        cache = home / ".claude" / "cache" / "gateway-models.json"
        with trio.fail_after(10):
            while not cache.exists():  # noqa: ASYNC110 (Claude Code writes it)
                await trio.sleep(0.1)
        text = cache.read_text()
        for alias in expected:
            assert alias in text
        if secret == BOB:
            assert "claude-team-best" not in text and "claude-sonnet-4-6" not in text
        cache.unlink()
