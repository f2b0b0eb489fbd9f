"""A provider of kind "vertex" over real sockets: the official Anthropic
SDK talks Messages to the proxy; google-auth runs its real service-account
flow against the fake's token endpoint (a JWT signed with the key the
fake made), and the fake Vertex AI accepts only the tokens it issued."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest
import trio

from tests.helpers import Running, h1_request, make_config
from trioproxy.fake.app import FakeUpstream
from trioproxy.fake.vertex_app import FAKE_PROJECT, VertexFake
from trioproxy.server import Server

MODEL = "claude-opus-5-5"
TOOLS: list[Any] = [
    {
        "name": "get_weather",
        "description": "the weather",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
]
BETAS = "claude-code-20250219,context-management-2025-06-27,interleaved-thinking-2025-05-14"


@pytest.fixture
def no_adc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """google-auth sees only what a test gives it: no machine's ADC."""
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    yield tmp_path


async def setup(
    nursery: trio.Nursery,
    tmp_path: Path,
    *,
    token_seconds: int = 3600,
    extra: list[dict[str, Any]] | None = None,
    provider: dict[str, Any] | None = None,
    **cfg: Any,
) -> tuple[VertexFake, Running]:
    fake = VertexFake(token_seconds=token_seconds)
    port = await nursery.start(Server(make_config()).serve_app, fake)
    key = tmp_path / "sa.json"
    fake.service_account_key(key, f"http://127.0.0.1:{port}/token")
    entry = {
        "name": "vertex",
        "kind": "vertex",
        "project": FAKE_PROJECT,
        "region": "us-east5",
        "base_url": f"http://127.0.0.1:{port}",
        "credentials_file": str(key),
        "models": {"claude-*": MODEL},
        **(provider or {}),
    }
    server = Server(make_config(providers=[*(extra or []), entry], **cfg))
    return fake, Running(server, await nursery.start(server.serve))


def client(proxy: Running, **kw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-test", max_retries=0, **kw)


async def test_sdk_json_stream_tools_and_count_tokens(nursery: trio.Nursery, no_adc: Path) -> None:
    fake, proxy = await setup(nursery, no_adc)

    def round_trip() -> tuple[Any, Any, Any, list[str], int]:
        with client(proxy, default_headers={"anthropic-beta": BETAS}) as c:
            first = c.messages.create(
                model="claude-opus-5-5",
                max_tokens=100,
                tools=TOOLS,
                messages=[{"role": "user", "content": "weather in Paris?"}],
                extra_body={"context_management": {"edits": []}},
            )
            call = next(b for b in first.content if b.type == "tool_use")
            history: list[Any] = [
                {"role": "user", "content": "weather in Paris?"},
                {"role": "assistant", "content": first.content},
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}
                    ],
                },
            ]
            kinds: list[str] = []
            with c.messages.stream(model="claude-opus-5-5", max_tokens=100, messages=history) as s:
                for ev in s:
                    kinds.append(ev.type)
                streamed = s.get_final_message()
            again = c.messages.create(model="claude-opus-5-5", max_tokens=100, messages=history)
            counted = c.messages.count_tokens(model="claude-opus-5-5", messages=history)
            return first, streamed, again, kinds, counted.input_tokens

    first, streamed, again, kinds, counted = await trio.to_thread.run_sync(round_trip)
    history_json = [{"role": "user", "content": "hi"}]
    assert first.stop_reason == "tool_use" and first.model == MODEL
    assert streamed.model_dump() == again.model_dump()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert counted > 0 and not fake.refused
    base = f"/v1/projects/{FAKE_PROJECT}/locations/us-east5/publishers/anthropic/models/"
    assert [s.target.decode() for s in fake.seen if s.target != b"/token"] == [
        base + MODEL + ":rawPredict",
        base + MODEL + ":streamRawPredict",
        base + MODEL + ":rawPredict",
        base + "count-tokens:rawPredict",
    ]
    assert fake.issued == 1  # one token, kept for every request
    sent = orjson.loads(fake.bodies[-4])
    assert sent["anthropic_version"] == "vertex-2023-10-16" and "model" not in sent
    assert "context_management" not in sent
    counted_body = orjson.loads(fake.bodies[-1])
    assert counted_body["model"] == MODEL
    headers = dict(next(s for s in fake.seen if s.target != b"/token").headers)
    assert headers[b"authorization"].startswith(b"Bearer ya29.fake-")
    assert headers[b"anthropic-beta"] == b"claude-code-20250219,interleaved-thinking-2025-05-14"
    assert b"x-api-key" not in headers
    # Claude's SSE passes byte for byte (its pings included).
    stream = orjson.dumps(
        {"model": "claude-opus-5-5", "max_tokens": 9, "stream": True, "messages": history_json}
    )
    r = await h1_request(proxy.port, "POST", "/v1/messages", [], stream)
    assert b"event: ping\n" in r.body and r.body.endswith(b'data: {"type":"message_stop"}\n\n')
    r = await h1_request(proxy.port, "GET", "/admin/providers", [])
    (row,) = orjson.loads(r.body)["providers"]
    assert row["kind"] == "vertex" and row["credentials"]["valid"] is True
    assert b"ya29" not in r.body


async def test_google_errors_in_anthropic_s_shape(nursery: trio.Nursery, no_adc: Path) -> None:
    _fake, proxy = await setup(nursery, no_adc, routing__retries=0)
    body = orjson.dumps(
        {
            "model": "claude-opus-5-5",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "x"}],
        }
    )
    r = await h1_request(proxy.port, "POST", "/v1/messages", [("x-fake-fault", "429")], body)
    doc = orjson.loads(r.body)
    assert r.status == 429 and doc["error"] == {
        "type": "rate_limit_error",
        "message": "Quota exceeded for aiplatform (fake).",
    }
    assert r.header(b"retry-after") == b"1"
    r = await h1_request(proxy.port, "POST", "/v1/messages", [("x-fake-fault", "503")], body)
    assert r.status == 529 and orjson.loads(r.body)["error"]["type"] == "overloaded_error"
    # Claude's own error passes through Vertex as it came.
    r = await h1_request(proxy.port, "POST", "/v1/messages", [("x-fake-fault", "529")], body)
    assert r.status == 529 and orjson.loads(r.body)["error"]["message"] == "Overloaded (fake)"
    stream = orjson.dumps({**orjson.loads(body), "stream": True})
    r = await h1_request(
        proxy.port, "POST", "/v1/messages", [("x-fake-fault", "drop-mid-stream=3")], stream
    )
    assert r.status == 200 and not r.complete


async def test_an_expiring_token_is_refreshed_under_load(
    nursery: trio.Nursery, no_adc: Path
) -> None:
    """Tokens that live 301 s are inside the 5-minute refresh window at
    once: every check fetches a new one through the real JWT flow, and
    requests in the meantime never fail."""
    fake, proxy = await setup(nursery, no_adc, token_seconds=301, upstream__credentials_check_s=0.3)
    body = orjson.dumps(
        {
            "model": "claude-opus-5-5",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "x"}],
        }
    )
    statuses: list[int] = []
    with trio.move_on_after(3):
        while True:
            r = await h1_request(proxy.port, "POST", "/v1/messages", [], body)
            statuses.append(r.status)
    assert statuses and set(statuses) == {200}
    assert fake.issued >= 3


async def test_failover_from_the_anthropic_api_to_vertex(
    nursery: trio.Nursery, no_adc: Path
) -> None:
    anthropic_fake = FakeUpstream(faults=b"529")
    port = await nursery.start(Server(make_config()).serve_app, anthropic_fake)
    key_file = no_adc / "anthropic.key"
    key_file.write_text("sk-ant-fake-0123456789")
    first = {
        "name": "anthropic",
        "base_url": f"http://127.0.0.1:{port}",
        "api_key_file": str(key_file),
        "family": "anthropic",
        "priority": 1,
    }
    fake, proxy = await setup(nursery, no_adc, extra=[first], provider={"priority": 2})

    def ask() -> Any:
        with client(proxy) as c:
            return c.messages.create(
                model="claude-opus-5-5", max_tokens=10, messages=[{"role": "user", "content": "x"}]
            )

    answer = await trio.to_thread.run_sync(ask)
    assert answer.content[0].text.startswith("Hello")
    assert anthropic_fake.requests >= 1 and fake.requests >= 2  # the token, then the request


def test_check_config_on_vertex_providers(tmp_path: Path) -> None:
    def check(provider: str) -> tuple[int, str, str]:
        config = tmp_path / "trioproxy.toml"
        config.write_text(f"[[providers]]\n{provider}")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "TRIOPROXY_"))}
        r = subprocess.run(
            [sys.executable, "-m", "trioproxy", "check-config", "--config", str(config)],
            env={**env, "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return r.returncode, r.stdout, r.stderr

    code, _, err = check('name = "v"\nkind = "vertex"\nregion = "us-east5"\n')
    assert code == 2 and "providers[v].project: required" in err and err.count("\n") == 1
    code, _, err = check('name = "v"\nkind = "vertex"\nproject = "my-project-1"\n')
    assert code == 2 and "providers[v].region: required" in err
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "service_account"}')
    provider = 'name = "v"\nkind = "vertex"\nproject = "my-project-1"\nregion = "global"\n'
    code, _, err = check(provider + f'credentials_file = "{bad}"\n')
    assert code == 2 and "a service account key without client_email" in err
    code, out, err = check(provider)
    assert code == 0, err
    assert "# provider v (vertex): https://aiplatform.googleapis.com" in out
    assert "the metadata server" in out
