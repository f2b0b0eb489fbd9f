"""A provider of kind "bedrock" over real sockets: the official Anthropic
SDK talks Messages to the proxy; the fake Bedrock runtime behind it checks
every request's SigV4 signature (botocore, as AWS does) and body as
Bedrock would, and answers in event-stream frames. Credentials come from
botocore's own chain (the environment, a profile's credential_process)."""

from __future__ import annotations

import logging
import os
import stat
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
from trioproxy.fake.bedrock_app import BedrockFake
from trioproxy.fake.sigv4 import issued
from trioproxy.server import Server

ROOT = str(Path(__file__).resolve().parents[2])  # for the credential_process script
KEY = "AKIAFAKE00000000TEST"
MODEL_ID = "us.anthropic.claude-opus-5-5-v1:0"
TOOLS: list[Any] = [
    {
        "name": "get_weather",
        "description": "the weather",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
]
CLAUDE_CODE_BETAS = (
    "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,"
    "effort-2025-11-24"
)


@pytest.fixture
def aws_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """botocore's chain sees only what a test gives it: no files of this
    machine's, no instance metadata; static keys the fake issued."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", issued(KEY)[0])
    yield tmp_path


async def setup(
    nursery: trio.Nursery, *, extra: list[dict[str, Any]] | None = None, **cfg: Any
) -> tuple[BedrockFake, Running]:
    fake = BedrockFake()
    port = await nursery.start(Server(make_config()).serve_app, fake)
    provider = {
        "name": "bedrock",
        "kind": "bedrock",
        "region": "us-east-1",
        "base_url": f"http://127.0.0.1:{port}",
        "models": {"claude-*": MODEL_ID},
        **cfg.pop("provider", {}),
    }
    server = Server(make_config(providers=[*(extra or []), provider], **cfg))
    proxy = Running(server, await nursery.start(server.serve))
    return fake, proxy


def client(proxy: Running, **kw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-test", max_retries=0, **kw)


async def test_sdk_json_stream_tools_and_count_tokens(nursery: trio.Nursery, aws_env: Path) -> None:
    fake, proxy = await setup(nursery)

    def round_trip() -> tuple[Any, Any, Any, list[str], int]:
        with client(proxy, default_headers={"anthropic-beta": CLAUDE_CODE_BETAS}) as c:
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
    assert first.stop_reason == "tool_use" and first.model == MODEL_ID
    assert streamed.stop_reason == "end_turn" and streamed.content[0].text.startswith("Hello")
    # The stream through the event-stream translation is the same Message as the JSON answer.
    assert streamed.model_dump() == again.model_dump()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert counted > 0
    # What Bedrock got: signed requests (the fake refused none), the model
    # in the path, its own body fields, none of what it rejects.
    assert not fake.refused and set(fake.signed_by) == {KEY}
    targets = [s.target for s in fake.seen]
    quoted = b"/model/us.anthropic.claude-opus-5-5-v1%3A0/"
    assert targets == [
        quoted + b"invoke",
        quoted + b"invoke-with-response-stream",
        quoted + b"invoke",
        quoted + b"count-tokens",
    ]
    sent = orjson.loads(fake.bodies[0])
    assert sent["anthropic_version"] == "bedrock-2023-05-31"
    assert sent["anthropic_beta"] == ["claude-code-20250219", "interleaved-thinking-2025-05-14"]
    assert "context_management" not in sent and "model" not in sent
    headers = dict(fake.seen[0].headers)
    assert b"x-api-key" not in headers and b"anthropic-beta" not in headers
    assert headers[b"authorization"].startswith(b"AWS4-HMAC-SHA256 Credential=" + KEY.encode())
    # What /admin/providers says of it: kind, region, credentials (never a key).
    r = await h1_request(proxy.port, "GET", "/admin/providers", [])
    (row,) = orjson.loads(r.body)["providers"]
    assert row["kind"] == "bedrock" and row["region"] == "us-east-1"
    assert row["credentials"]["valid"] is True and row["credentials"]["expires_at"] is None
    assert KEY.encode() not in r.body and issued(KEY)[0].encode() not in r.body


async def test_errors_in_anthropic_s_shape(nursery: trio.Nursery, aws_env: Path) -> None:
    fake, proxy = await setup(nursery, routing__retries=0)
    body = orjson.dumps(
        {
            "model": "claude-opus-5-5",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "x"}],
        }
    )
    r = await h1_request(proxy.port, "POST", "/v1/messages", [("x-fake-fault", "429")], body)
    doc = orjson.loads(r.body)
    assert r.status == 429 and doc["error"]["type"] == "rate_limit_error"
    assert doc["error"]["message"] == "Too many requests, please wait (fake)."
    assert r.header(b"retry-after") == b"1"
    r = await h1_request(proxy.port, "POST", "/v1/messages", [("x-fake-fault", "503")], body)
    assert r.status == 529 and orjson.loads(r.body)["error"]["type"] == "overloaded_error"
    stream = orjson.dumps({**orjson.loads(body), "stream": True})
    faults = [("x-fake-fault", "error-mid-stream=3")]
    r = await h1_request(proxy.port, "POST", "/v1/messages", faults, stream)
    assert r.status == 200 and r.header(b"content-type").startswith(b"text/event-stream")
    last = r.body.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
    assert last.startswith(b"event: error\ndata: ")
    error = orjson.loads(last.split(b"data: ", 1)[1])["error"]
    assert error["type"] == "rate_limit_error" and "Too many tokens" in error["message"]
    # A stream cut mid-way reaches the client as a cut, not a clean end.
    r = await h1_request(
        proxy.port, "POST", "/v1/messages", [("x-fake-fault", "drop-mid-stream=3")], stream
    )
    assert r.status == 200 and not r.complete
    # Paths Bedrock has no equivalent for are the proxy's own 404.
    before = fake.requests
    r = await h1_request(proxy.port, "GET", "/api/hello", [])
    assert r.status == 404 and fake.requests == before


async def test_a_wrong_secret_is_one_clear_error_logged_once_never_the_secret(
    nursery: trio.Nursery, aws_env: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    wrong = "w" * 40
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    _fake, proxy = await setup(nursery, routing__retries=0)
    body = orjson.dumps(
        {
            "model": "claude-opus-5-5",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "x"}],
        }
    )
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            r = await h1_request(proxy.port, "POST", "/v1/messages", [], body)
            doc = orjson.loads(r.body)
            assert r.status == 403 and doc["error"]["type"] == "permission_error"
            assert "signature we calculated does not match" in doc["error"]["message"]
    assert wrong not in caplog.text and issued(KEY)[0] not in caplog.text
    refusals = [r for r in caplog.records if "refused its AWS credentials" in r.getMessage()]
    assert len(refusals) == 1 and "InvalidSignatureException" in refusals[0].getMessage()
    r = await h1_request(proxy.port, "GET", "/admin/providers", [])
    (row,) = orjson.loads(r.body)["providers"]
    assert row["credentials"]["refused"] == "HTTP 403 InvalidSignatureException"


async def test_failover_from_the_anthropic_api_to_bedrock(
    nursery: trio.Nursery, aws_env: Path
) -> None:
    anthropic_fake = FakeUpstream(faults=b"529")
    port = await nursery.start(Server(make_config()).serve_app, anthropic_fake)
    key_file = aws_env / "anthropic.key"
    key_file.write_text("sk-ant-fake-0123456789")
    first = {
        "name": "anthropic",
        "base_url": f"http://127.0.0.1:{port}",
        "api_key_file": str(key_file),
        "family": "anthropic",
        "priority": 1,
    }
    fake, proxy = await setup(nursery, extra=[first], provider={"priority": 2})

    def ask() -> Any:
        with client(proxy) as c:
            return c.messages.create(
                model="claude-opus-5-5", max_tokens=10, messages=[{"role": "user", "content": "x"}]
            )

    answer = await trio.to_thread.run_sync(ask)
    assert answer.content[0].text.startswith("Hello")
    assert anthropic_fake.requests >= 1 and fake.requests == 1


CREDENTIAL_PROCESS = """\
import datetime, json, sys
sys.path.insert(0, {root!r})
from trioproxy.fake.sigv4 import issued
n = int(open({counter!r}).read() or 0) + 1
open({counter!r}, "w").write(str(n))
key = "ASIAFAKE%012d" % n
secret, token = issued(key)
expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=5)
print(json.dumps({{"Version": 1, "AccessKeyId": key, "SecretAccessKey": secret,
                   "SessionToken": token, "Expiration": expires.isoformat()}}))
"""


async def test_expiring_credentials_refresh_under_load(
    nursery: trio.Nursery, aws_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A profile whose credential_process gives keys that expire in five
    minutes (inside botocore's mandatory refresh window: every check mints
    new ones): under continuous requests, keys rotate and none fails."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    counter = aws_env / "minted"
    counter.write_text("0")
    script = aws_env / "mint.py"
    script.write_text(CREDENTIAL_PROCESS.format(root=ROOT, counter=str(counter)))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    (aws_env / "aws-config").write_text(
        f"[profile rotating]\ncredential_process = {sys.executable} {script}\n"
    )
    fake, proxy = await setup(
        nursery, provider={"aws_profile": "rotating"}, upstream__credentials_check_s=0.3
    )
    body = orjson.dumps(
        {
            "model": "claude-opus-5-5",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "x"}],
        }
    )
    statuses: list[int] = []
    with trio.move_on_after(4):
        while True:
            r = await h1_request(proxy.port, "POST", "/v1/messages", [], body)
            statuses.append(r.status)
    assert statuses and set(statuses) == {200}
    assert len(set(fake.signed_by)) >= 3 and not fake.refused
    assert int(counter.read_text()) >= 3


def _check_config(tmp_path: Path, provider: str, **env: str) -> tuple[int, str, str]:
    import subprocess

    config = tmp_path / "trioproxy.toml"
    config.write_text(f"[[providers]]\n{provider}")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TRIOPROXY_"))}
    r = subprocess.run(
        [sys.executable, "-m", "trioproxy", "check-config", "--config", str(config)],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return r.returncode, r.stdout, r.stderr


def test_check_config_on_bedrock_providers(tmp_path: Path) -> None:
    files = {
        "AWS_CONFIG_FILE": str(tmp_path / "none-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none-credentials"),
    }
    code, _, err = _check_config(tmp_path, 'name = "b"\nkind = "bedrock"\n', **files)
    assert code == 2 and err.strip().count("\n") == 0
    assert "providers[b].region: required" in err
    provider = 'name = "b"\nkind = "bedrock"\nregion = "eu-west-3"\n'
    code, _, err = _check_config(tmp_path, provider, AWS_EC2_METADATA_DISABLED="true", **files)
    assert code == 2 and err.strip().count("\n") == 0
    assert err.startswith("trioproxy: providers[b]: no AWS credentials")
    code, _, err = _check_config(
        tmp_path, provider + 'aws_profile = "nope"\n', AWS_EC2_METADATA_DISABLED="true", **files
    )
    assert code == 2 and "AWS profile 'nope' is in neither shared file" in err
    secret = "s3cr3t" * 6
    code, out, err = _check_config(
        tmp_path, provider, AWS_ACCESS_KEY_ID="AKIAFAKE1", AWS_SECRET_ACCESS_KEY=secret, **files
    )
    assert code == 0, err
    assert "# provider b (bedrock): https://bedrock-runtime.eu-west-3.amazonaws.com" in out
    assert "credentials from AWS: the environment" in out and secret not in out + err
    code, _, err = _check_config(tmp_path, provider + 'api_key_env = "K"\n', **files)
    assert code == 2 and "providers[b].api_key_env: a bedrock provider signs" in err


async def test_the_proxy_pings_during_bedrock_s_silences(
    nursery: trio.Nursery, aws_env: Path
) -> None:
    """Bedrock sends no ping events: during its silences the proxy's
    keep-alive pings go to the client, between whole events."""
    _fake, proxy = await setup(nursery, stream_keepalive_s=0.2)
    body = orjson.dumps(
        {
            "model": "claude-opus-5-5",
            "max_tokens": 10,
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        }
    )
    faults = [("x-fake-fault", "event-delay=0.7")]
    r = await h1_request(proxy.port, "POST", "/v1/messages", faults, body)
    assert r.status == 200 and r.complete
    events = [block.split(b"\n", 1)[0] for block in r.body.split(b"\n\n") if block]
    assert events.count(b"event: ping") >= 3
    assert events[0] == b"event: message_start" and events[-1] == b"event: message_stop"
