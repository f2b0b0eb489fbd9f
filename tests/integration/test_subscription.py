"""A Claude subscription as a provider: Claude Code's credentials file is
read for its token, the token goes upstream with the OAuth beta, a token
past its expiry is never sent (the other provider serves), and a rewritten
file is picked up without a restart."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import orjson
import pytest
import trio

from tests.helpers import h1_request, make_config, start_fake
from trioproxy.config import ConfigError, load_config
from trioproxy.server import Server

JSON = orjson.dumps(
    {"model": "claude-sonnet-4-6", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
)


def write_credentials(path: Path, token: str, expires_in: float) -> None:
    """What Claude Code writes (expiresAt in milliseconds), replaced at once."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(
        orjson.dumps(
            {
                "claudeAiOauth": {
                    "accessToken": token,
                    "refreshToken": "sk-ant-ort01-refresh-never-used",
                    "expiresAt": int((time.time() + expires_in) * 1000),
                    "scopes": ["user:inference", "user:profile"],
                    "subscriptionType": "max",
                }
            }
        )
    )
    tmp.replace(path)


def headers_seen(fake: object) -> dict[bytes, bytes]:
    return dict(fake.seen[-1].headers)  # type: ignore[attr-defined]


async def provider_state(port: int, name: str) -> dict[str, object]:
    doc = orjson.loads((await h1_request(port, "GET", "/admin/providers")).body)
    return next(p for p in doc["providers"] if p["name"] == name)


async def until_unavailable(port: int, name: str, want: bool) -> None:
    """Within WATCH bound: the proxy looks at the file twice a second."""
    with trio.fail_after(3):
        while True:
            if ((await provider_state(port, name))["state"] == "unavailable") == want:
                return
            await trio.sleep(0.1)


async def serve(nursery: trio.Nursery, **cfg: object) -> int:
    port: int = await nursery.start(Server(make_config(**cfg)).serve)
    return port


async def test_a_subscription_serves_until_its_token_expires_then_again_when_rewritten(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sub, api = await start_fake(nursery), await start_fake(nursery)
    assert sub.fake is not None and api.fake is not None
    creds = tmp_path / ".credentials.json"
    write_credentials(creds, "sk-ant-oat01-first-token", 3600)
    key = tmp_path / "api.key"
    key.write_text("sk-ant-api03-team-key")
    port = await serve(
        nursery,
        auth__secrets="alice:alice-secret-0123456789",
        providers=[
            {
                "name": "subscription",
                "base_url": sub.url,
                "auth": "oauth_file",
                "oauth_credentials_file": str(creds),
                "priority": 1,
            },
            {"name": "api", "base_url": api.url, "api_key_file": str(key), "priority": 2},
        ],
    )
    caller = [
        ("x-api-key", "alice-secret-0123456789"),
        ("anthropic-beta", "interleaved-thinking-2025-05-14"),
    ]

    async def send() -> int:
        return (await h1_request(port, "POST", "/v1/messages", caller, JSON)).status

    assert await send() == 200
    seen = headers_seen(sub.fake)
    assert seen[b"authorization"] == b"Bearer sk-ant-oat01-first-token"
    assert seen[b"anthropic-beta"] == b"interleaved-thinking-2025-05-14,oauth-2025-04-20"
    assert b"x-api-key" not in seen  # the caller's secret never travels

    # The token expires (Claude Code wrote one that is already past):
    # the subscription is skipped within a second; the API key serves.
    with caplog.at_level(logging.ERROR, logger="trioproxy.oauth"):
        write_credentials(creds, "sk-ant-oat01-expired-token", -60)
        await until_unavailable(port, "subscription", True)
        before = sub.fake.requests
        for _ in range(3):
            assert await send() == 200
        assert sub.fake.requests == before and api.fake.requests == 3
        state = await provider_state(port, "subscription")
        assert "expired" in str(state["last_error"])
    said = [r for r in caplog.records if r.name == "trioproxy.oauth"]
    assert len(said) == 1 and "expired" in said[0].getMessage()  # logged once
    assert all(b"expired-token" not in v for s in sub.fake.seen for _, v in s.headers)  # never sent

    # Claude Code refreshed it: picked up again, no restart.
    write_credentials(creds, "sk-ant-oat01-refreshed-token", 3600)
    await until_unavailable(port, "subscription", False)
    assert await send() == 200
    assert headers_seen(sub.fake)[b"authorization"] == b"Bearer sk-ant-oat01-refreshed-token"


async def test_the_only_provider_expired_is_a_clear_503_and_nothing_is_sent(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    sub = await start_fake(nursery)
    assert sub.fake is not None
    creds = tmp_path / ".credentials.json"
    write_credentials(creds, "sk-ant-oat01-old", -1)
    port = await serve(
        nursery,
        providers=[
            {
                "name": "max",
                "base_url": sub.url,
                "auth": "oauth_file",
                "oauth_credentials_file": str(creds),
            }
        ],
    )
    r = await h1_request(port, "POST", "/v1/messages", [], JSON)
    doc = orjson.loads(r.body)
    assert r.status == 503 and doc["error"]["type"] == "api_error"
    assert "provider max" in doc["error"]["message"] and "expired" in doc["error"]["message"]
    assert sub.fake.requests == 0


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "cannot read"),
        (b"not json", "is not JSON"),
        (b'{"something": {}}', "no claudeAiOauth"),
        (b'{"claudeAiOauth": {"expiresAt": 1}}', "accessToken is missing"),
        (b'{"claudeAiOauth": {"accessToken": "t", "expiresAt": "soon"}}', "expiresAt"),
    ],
)
def test_check_config_checks_the_credentials_files_shape(
    tmp_path: Path, content: bytes | None, says: str
) -> None:
    creds = tmp_path / "creds.json"
    if content is not None:
        creds.write_bytes(content)
    provider = {
        "name": "max",
        "base_url": "https://api.anthropic.com",
        "auth": "oauth_file",
        "oauth_credentials_file": str(creds),
    }
    with pytest.raises(ConfigError) as info:
        load_config(env={}, overrides={"providers": [provider]})
    assert "providers[max].oauth_credentials_file" in str(info.value) and says in str(info.value)
