"""Callers over real sockets: one limit across two instances (one state
file, or one Redis), a caller's own upstream credential with the official
SDK, and what /metrics and the access line say about callers."""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest
import trio

from tests.helpers import clean_env, h1_request, serving, start_fake, start_proxy, unless_in_ci
from tests.services import tool

SECRET = "alice-secret-0123456789"
DIGEST = hashlib.sha256(SECRET.encode()).hexdigest()
OWN = "sk-ant-oat01-carols-own-subscription-token"
JSON = orjson.dumps(
    {"model": "claude-sonnet-4-6", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
)
RATE = 5.0  # requests per second sent in the two-instance test


def key_file(tmp_path: Path) -> str:
    path = tmp_path / "provider.key"
    path.write_text("sk-ant-api03-provider-key")
    return str(path)


async def test_a_10_rpm_limit_holds_across_two_workers(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """The same with `serve --workers 2`: the kernel spreads the connections
    over both workers, which share their counts through the state file."""
    fake = await start_fake(nursery)
    toml = tmp_path / "trioproxy.toml"
    toml.write_text(
        f'[upstream]\nurl = "{fake.url}"\napi_key_file = "{key_file(tmp_path)}"\n'
        f'[[callers]]\nname = "alice"\nsecret_sha256 = ["{DIGEST}"]\nrpm = 10\n'
    )
    async with serving("--config", str(toml), "--workers", "2", env=clean_env()) as proxy:
        assert b"(2 workers)" in proxy.log
        statuses = []
        for _ in range(30):
            r = await h1_request(proxy.port, "POST", "/v1/messages", [("x-api-key", SECRET)], JSON)
            statuses.append(r.status)
            await trio.sleep(1 / RATE)
    admitted = statuses.count(200)
    assert statuses.count(429) == 30 - admitted
    assert 10 <= admitted <= 10 + RATE, statuses
    assert SECRET.encode() not in proxy.log


@pytest.mark.parametrize(
    "store",
    [
        "state-file",
        # skipped only on a developer's machine without Redis; in CI a missing
        # redis-server fails (.ci/run installs it)
        pytest.param(
            "redis",
            marks=unless_in_ci(tool("redis-server") is None, "redis-server is not installed"),
        ),
    ],
)
@pytest.mark.filterwarnings("ignore:Unclosed <MemoryObject:ResourceWarning")
async def test_a_10_rpm_limit_holds_across_two_instances(
    nursery: trio.Nursery, tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    """30 requests in 6 s, alternating between two proxies that share their
    counts (as two workers do through the state file, or two machines
    through Redis): at most 10, plus one second of traffic, get through."""
    if store == "redis":
        shared: dict[str, Any] = {"state__redis_url": request.getfixturevalue("redis").url}
    else:
        shared = {"state_dir": tempfile.mkdtemp(prefix="trioproxy-test-state-")}
    fake = await start_fake(nursery)
    callers = [{"name": "alice", "secret_sha256": [DIGEST], "rpm": 10}]
    proxies = [
        await start_proxy(
            nursery, fake.url, upstream__api_key_file=key_file(tmp_path), callers=callers, **shared
        )
        for _ in range(2)
    ]
    statuses: list[int] = []
    for i in range(30):
        r = await h1_request(
            proxies[i % 2].port, "POST", "/v1/messages", [("x-api-key", SECRET)], JSON
        )
        statuses.append(r.status)
        if r.status == 429:
            assert r.header(b"retry-after") is not None
            assert orjson.loads(r.body)["error"]["type"] == "rate_limit_error"
        await trio.sleep(1 / RATE)
    admitted = statuses.count(200)
    assert statuses.count(429) == 30 - admitted
    assert 10 <= admitted <= 10 + RATE, statuses
    assert fake.fake is not None and fake.fake.requests == admitted


async def test_a_callers_own_credential_goes_upstream_with_the_sdk(
    nursery: trio.Nursery, upstream_opts: dict[str, object]
) -> None:
    """Carol authenticates to the proxy with x-trioproxy-key; her own
    subscription token (Authorization: Bearer, as the SDK sends an
    auth_token) reaches the upstream untouched, and the proxy's header
    never does. No provider key is configured at all."""
    fake = await start_fake(nursery)
    callers = [
        {"name": "carol", "secret_sha256": [DIGEST], "upstream_credential": "own"},
    ]
    proxy = await start_proxy(nursery, fake.url, callers=callers, **upstream_opts)

    def use_sdk(headers: dict[str, str]) -> str:
        with anthropic.Anthropic(
            base_url=proxy.url, auth_token=OWN, default_headers=headers, max_retries=0
        ) as client:
            msg = client.messages.create(
                model="claude-sonnet-4-6",
                max_tokens=16,
                messages=[{"role": "user", "content": "hi"}],
            )
            return msg.content[0].type

    assert await trio.to_thread.run_sync(use_sdk, {"x-trioproxy-key": SECRET}) == "text"
    assert fake.fake is not None
    seen = dict((n.decode(), v.decode()) for n, v in fake.fake.seen[-1].headers)
    assert seen["authorization"] == f"Bearer {OWN}"
    assert "x-trioproxy-key" not in seen and SECRET not in str(seen)
    # Without the proxy key she is refused, and nothing goes upstream.
    with pytest.raises(anthropic.AuthenticationError) as info:
        await trio.to_thread.run_sync(use_sdk, {})
    assert "x-trioproxy-key" in str(info.value)
    assert fake.fake.requests == 1


async def test_metrics_and_the_access_line_name_the_caller(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = await start_fake(nursery)
    callers = [
        {
            "name": "alice",
            "secret_sha256": [DIGEST],
            "models": ["claude-sonnet-*"],
            "budget": {"usd": 5, "window": "monthly"},
        }
    ]
    proxy = await start_proxy(
        nursery, fake.url, upstream__api_key_file=key_file(tmp_path), callers=callers
    )
    headers = [
        ("x-api-key", SECRET),
        ("user-agent", "claude-cli/2.1.330 (external, cli)"),
        ("x-claude-code-session-id", "5f1c0d2e-session"),
    ]
    with caplog.at_level(logging.INFO, logger="trioproxy.access"):
        assert (await h1_request(proxy.port, "POST", "/v1/messages", headers, JSON)).status == 200
        opus = JSON.replace(b"claude-sonnet-4-6", b"claude-opus-4-6")
        r = await h1_request(proxy.port, "POST", "/v1/messages", headers, opus)
        assert r.status == 403
        metrics = (await h1_request(proxy.port, "GET", "/metrics")).body.decode()
        for _ in range(100):  # the journal writes its batches every 0.2 s
            if sum(len(r.getMessage().splitlines()) for r in access(caplog)) >= 2:
                break
            await trio.sleep(0.05)
    assert 'trioproxy_caller_limited_total{caller="alice",reason="model"} 1' in metrics
    spend = [ln for ln in metrics.splitlines() if ln.startswith("trioproxy_caller_spend_usd_total")]
    assert len(spend) == 1 and 'caller="alice"' in spend[0] and float(spend[0].split()[-1]) > 0
    budget = [
        ln for ln in metrics.splitlines() if ln.startswith("trioproxy_caller_budget_remaining")
    ]
    assert len(budget) == 1 and 'unit="usd"' in budget[0] and 4.9 < float(budget[0].split()[-1]) < 5
    lines = [orjson.loads(ln) for r in access(caplog) for ln in r.getMessage().splitlines()]
    ok, refused = lines[0], lines[-1]
    assert (ok["caller"], ok["client_addr"], ok["session_id"]) == (
        "alice",
        "127.0.0.1",
        "5f1c0d2e-session",
    )
    assert ok["user_agent"].startswith("claude-cli/") and ok["cost_usd"] > 0
    assert (refused["status"], refused["limited"], refused["caller"]) == (403, "model", "alice")
    assert SECRET not in caplog.text and DIGEST not in caplog.text


async def test_a_model_no_price_knows_is_refused_to_a_usd_budget(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Under the default pricing.unknown_model = "refuse", a caller with a
    USD budget is refused a model neither the price database nor [pricing]
    knows (a 403 naming both, never sent); priced models go through."""
    fake = await start_fake(nursery)
    callers = [
        {"name": "alice", "secret_sha256": [DIGEST], "budget": {"usd": 5, "window": "daily"}}
    ]
    proxy = await start_proxy(
        nursery, fake.url, upstream__api_key_file=key_file(tmp_path), callers=callers
    )
    unpriced = JSON.replace(b"claude-sonnet-4-6", b"house-model-7")
    caplog.set_level(logging.INFO, logger="trioproxy.access")
    r = await h1_request(proxy.port, "POST", "/v1/messages", [("x-api-key", SECRET)], unpriced)
    error = orjson.loads(r.body)["error"]
    assert r.status == 403 and error["type"] == "permission_error"
    assert "'house-model-7' has no price" in error["message"]
    assert 'pricing.unknown_model = "refuse"' in error["message"]
    assert fake.fake is not None and fake.fake.requests == 0
    r = await h1_request(proxy.port, "POST", "/v1/messages", [("x-api-key", SECRET)], JSON)
    assert r.status == 200 and fake.fake.requests == 1
    with trio.fail_after(5):
        while len(lines := [ln for r in access(caplog) for ln in r.getMessage().splitlines()]) < 2:  # noqa: ASYNC110 (the journal writes)
            await trio.sleep(0.05)
    refused, ok = (orjson.loads(ln) for ln in lines)
    assert refused["limited"] == "unpriced_model" and ok["cost_usd"] > 0


async def test_a_usd_budget_warns_once_about_a_model_let_through_unpriced(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With pricing.unknown_model = "free", such a model is served and
    costs nothing against a USD budget: the operator is told once per model
    (not per request), and not about priced models."""
    fake = await start_fake(nursery)
    callers = [
        {"name": "alice", "secret_sha256": [DIGEST], "budget": {"usd": 5, "window": "daily"}}
    ]
    proxy = await start_proxy(
        nursery,
        fake.url,
        upstream__api_key_file=key_file(tmp_path),
        callers=callers,
        pricing__unknown_model="free",
    )
    unpriced = JSON.replace(b"claude-sonnet-4-6", b"house-model-7")
    with caplog.at_level(logging.WARNING, logger="trioproxy.callers"):
        for body in (JSON, unpriced, unpriced, JSON):
            r = await h1_request(proxy.port, "POST", "/v1/messages", [("x-api-key", SECRET)], body)
            assert r.status == 200
    warned = [r.getMessage() for r in caplog.records if r.name == "trioproxy.callers"]
    assert len(warned) == 1, warned
    assert "'house-model-7' has no price" in warned[0] and "caller alice's USD budget" in warned[0]
    assert SECRET not in caplog.text


def access(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "trioproxy.access"]
