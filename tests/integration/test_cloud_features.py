"""What trioproxy adds works on requests to Claude on a cloud as on any
other: scrubbing (the secret never reaches the cloud, and is put back in
the answer), callers' limits, demotion (a JSON request asked as a stream,
Bedrock's event stream rebuilt into one Message), and the conversation log
(the answer kept as Anthropic's SSE, so the viewer rebuilds its Message)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
import zstandard

from tests.helpers import Running, h1_request, make_config
from trioproxy.convlog.views import detail
from trioproxy.db.base import LogQuery
from trioproxy.db.open import open_database
from trioproxy.fake.bedrock_app import BedrockFake
from trioproxy.fake.sigv4 import issued
from trioproxy.fake.vertex_app import FAKE_PROJECT, VertexFake
from trioproxy.server import Server

GH = "ghp_" + "a1B2c3D4e5" * 3 + "f6G7h8"
SECRET = "alice-secret-0123456789"
ALICE = [("x-api-key", SECRET)]


@pytest.fixture
def cloud_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in [n for n in os.environ if n.startswith(("AWS_", "GOOGLE_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKE0000FEATURES")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", issued("AKIAFAKE0000FEATURES")[0])
    yield tmp_path


async def setup(
    nursery: trio.Nursery, tmp_path: Path, cloud: str, **cfg: Any
) -> tuple[BedrockFake | VertexFake, Running]:
    fake: BedrockFake | VertexFake
    if cloud == "bedrock":
        fake = BedrockFake(tools=False)
        port = await nursery.start(Server(make_config()).serve_app, fake)
        provider: dict[str, Any] = {"region": "us-east-1"}
    else:
        fake = VertexFake(tools=False)
        port = await nursery.start(Server(make_config()).serve_app, fake)
        key = tmp_path / "sa.json"
        fake.service_account_key(key, f"http://127.0.0.1:{port}/token")
        provider = {"project": FAKE_PROJECT, "region": "us-east5", "credentials_file": str(key)}
    provider |= {
        "name": cloud,
        "kind": cloud,
        "base_url": f"http://127.0.0.1:{port}",
        "models": {"default": "claude-opus-5-5"},
        **cfg.pop("provider", {}),
    }
    server = Server(make_config(providers=[provider], state_dir=str(tmp_path), **cfg))
    return fake, Running(server, await nursery.start(server.serve))


def body(content: str, **extra: Any) -> bytes:
    return orjson.dumps(
        {
            "model": "claude-opus-5-5",
            "max_tokens": 50,
            "messages": [{"role": "user", "content": content}],
            **extra,
        }
    )


@pytest.mark.parametrize("cloud", ["bedrock", "vertex"])
async def test_scrubbing_and_a_caller_s_limit(
    nursery: trio.Nursery, cloud_env: Path, cloud: str
) -> None:
    fake, proxy = await setup(
        nursery,
        cloud_env,
        cloud,
        scrub__mode="pseudonymize",
        scrub__hmac_key="ab" * 32,
        callers=[
            {
                "name": "alice",
                "secret_sha256": [hashlib.sha256(SECRET.encode()).hexdigest()],
                "rpm": 2,
            }
        ],
    )
    echo = f"repeat after me: my token is {GH}"
    r = await h1_request(proxy.port, "POST", "/v1/messages", ALICE, body(echo, stream=True))
    assert r.status == 200 and r.header(b"content-type").startswith(b"text/event-stream")
    assert GH.encode() in r.body  # the placeholder put back in the streamed answer
    assert GH.encode() not in fake.bodies[-1] and b"ghp_" not in fake.bodies[-1]
    r = await h1_request(proxy.port, "POST", "/v1/messages", ALICE, body("x"))
    assert r.status == 200
    before = len(fake.bodies)
    r = await h1_request(proxy.port, "POST", "/v1/messages", ALICE, body("x"))
    assert r.status == 429 and len(fake.bodies) == before  # alice's rpm: never sent


@pytest.mark.parametrize("cloud", ["bedrock", "vertex"])
async def test_demotion_and_the_conversation_log(
    nursery: trio.Nursery, cloud_env: Path, cloud: str
) -> None:
    fake, proxy = await setup(
        nursery, cloud_env, cloud, log_bodies="all", provider={"demote_nonstreaming": True}
    )
    r = await h1_request(proxy.port, "POST", "/v1/messages", [], body("hello"))
    assert r.status == 200 and r.header(b"content-type") == b"application/json"
    message = orjson.loads(r.body)
    assert message["type"] == "message" and message["content"][0]["text"].startswith("Hello")
    asked = fake.seen[-1]
    assert asked.target.endswith(
        b"/invoke-with-response-stream" if cloud == "bedrock" else b":streamRawPredict"
    )
    journal = proxy.server.state.journal
    with trio.fail_after(10):
        while journal.log_written < 1:  # noqa: ASYNC110 (a worker thread writes)
            await trio.sleep(0.05)
    db = open_database("", str(cloud_env), readonly=True)
    try:
        (row,) = [db.get_log(r["request_id"]) for r in db.list_log(LogQuery())]
    finally:
        db.close()
    assert row is not None and row["provider"] == cloud and row["output_tokens"] > 0
    doc = detail(row, zstandard.ZstdDecompressor())
    # The answer is kept as Anthropic's SSE (not Bedrock's binary frames):
    # the viewer rebuilds the Message the client got.
    assert doc["message"] is not None
    assert doc["message"]["content"] == message["content"]
    assert "Hello from trioproxy" in row["search"]


async def test_failover_anthropic_then_bedrock_then_vertex(
    nursery: trio.Nursery, cloud_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The Anthropic API answers 529: the request is served by Bedrock;
    when Bedrock is unavailable too, by Vertex. The client sees the same
    answer each time; only the access line's provider tells them apart."""
    import logging

    from tests.integration.test_auth import access_lines
    from trioproxy.fake.app import FakeUpstream

    caplog.set_level(logging.INFO, logger="trioproxy.access")
    anthropic_fake = FakeUpstream(faults=b"529", tools=False)
    anthropic_port = await nursery.start(Server(make_config()).serve_app, anthropic_fake)
    key_file = cloud_env / "anthropic.key"
    key_file.write_text("sk-ant-fake-0123456789")
    bedrock = BedrockFake(tools=False)
    bedrock_port = await nursery.start(Server(make_config()).serve_app, bedrock)
    vertex = VertexFake(tools=False)
    vertex_port = await nursery.start(Server(make_config()).serve_app, vertex)
    sa = cloud_env / "sa.json"
    vertex.service_account_key(sa, f"http://127.0.0.1:{vertex_port}/token")
    same_model = {"default": "claude-opus-5-5"}
    providers = [
        {
            "name": "anthropic",
            "base_url": f"http://127.0.0.1:{anthropic_port}",
            "api_key_file": str(key_file),
            "family": "anthropic",
            "priority": 1,
        },
        {
            "name": "bedrock",
            "kind": "bedrock",
            "region": "us-east-1",
            "base_url": f"http://127.0.0.1:{bedrock_port}",
            "models": same_model,
            "priority": 2,
        },
        {
            "name": "vertex",
            "kind": "vertex",
            "project": FAKE_PROJECT,
            "region": "global",
            "base_url": f"http://127.0.0.1:{vertex_port}",
            "credentials_file": str(sa),
            "models": same_model,
            "priority": 3,
        },
    ]
    server = Server(make_config(providers=providers, routing__retries=0))
    proxy = Running(server, await nursery.start(server.serve))
    request = body("hello", stream=True)
    first = await h1_request(proxy.port, "POST", "/v1/messages", [], request)
    bedrock.default_faults = b"503"  # Bedrock is unavailable from now on
    second = await h1_request(proxy.port, "POST", "/v1/messages", [], request)
    assert first.status == second.status == 200

    def events(raw: bytes) -> list[tuple[str, Any]]:
        out = []
        for block in raw.split(b"\n\n"):
            if b"data: " in block:
                doc = orjson.loads(block.split(b"data: ", 1)[1])
                doc.pop("message", None)  # the message's id is each cloud's own
                out.append((doc.get("type"), doc))
        return [e for e in out if e[0] != "ping"]

    assert events(first.body) == events(second.body)
    with trio.fail_after(10):
        while len(lines := access_lines(caplog)) < 2:  # noqa: ASYNC110 (the journal writes)
            await trio.sleep(0.05)
    assert [line["provider"] for line in lines] == ["bedrock", "vertex"]
    assert [line["providers_tried"] for line in lines] == [
        "anthropic,bedrock",
        "anthropic,bedrock,vertex",
    ]
