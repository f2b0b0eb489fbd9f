"""Clients that speak Bedrock's format to the proxy: Claude Code in Bedrock
mode (CLAUDE_CODE_USE_BEDROCK=1, ANTHROPIC_BEDROCK_BASE_URL at the proxy,
AWS_BEARER_TOKEN_BEDROCK the caller's secret), and raw requests as the AWS
SDKs send them; answered in Bedrock's format whatever provider serves."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
import zstandard
from botocore.eventstream import EventStreamBuffer

from tests.helpers import Running, h1_request, make_config, unless_in_ci
from tests.integration.test_auth import access_lines
from tests.integration.test_claude_code import CLAUDE, claude, refuse
from trioproxy.convlog.views import conversation, detail
from trioproxy.db.base import LogQuery
from trioproxy.fake.app import FakeUpstream
from trioproxy.fake.bedrock_app import BedrockFake
from trioproxy.fake.sigv4 import issued
from trioproxy.fake.vertex_app import FAKE_PROJECT, VertexFake
from trioproxy.server import Server

SECRET = "team-secret-0123456789abcdef"
CALLERS = [{"name": "team", "secret_sha256": [hashlib.sha256(SECRET.encode()).hexdigest()]}]
BEARER = [("authorization", f"Bearer {SECRET}")]
MODELS = {"claude-opus-5-5": "claude-opus-5-5", "claude-haiku-4-5": "claude-haiku-4-5"}


async def proxy_for(
    nursery: trio.Nursery,
    kind: str,
    monkeypatch: pytest.MonkeyPatch,
    call: tuple[str, dict[str, Any]] | None = None,
    **cfg: Any,
) -> tuple[FakeUpstream, Running]:
    key = Path(tempfile.mkdtemp(prefix="trioproxy-key-")) / "anthropic.key"
    key.write_text("sk-ant-fake-0123456789")
    fake: FakeUpstream
    if kind == "bedrock":
        for name in [n for n in os.environ if n.startswith("AWS_")]:
            monkeypatch.delenv(name)
        monkeypatch.setenv("AWS_CONFIG_FILE", str(key.parent / "none"))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(key.parent / "none"))
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKE0000CLIENTS")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", issued("AKIAFAKE0000CLIENTS")[0])
        fake = BedrockFake(tools=False, call=call)
        port = await nursery.start(Server(make_config()).serve_app, fake)
        provider: dict[str, Any] = {"kind": "bedrock", "region": "us-east-1", "models": MODELS}
    elif kind == "vertex":
        vertex = VertexFake(tools=False, call=call)
        fake = vertex
        port = await nursery.start(Server(make_config()).serve_app, vertex)
        sa = key.parent / "sa.json"
        vertex.service_account_key(sa, f"http://127.0.0.1:{port}/token")
        provider = {
            "kind": "vertex",
            "project": FAKE_PROJECT,
            "region": "global",
            "credentials_file": str(sa),
            "models": MODELS,
        }
    else:
        fake = FakeUpstream(tools=False, call=call)
        port = await nursery.start(Server(make_config()).serve_app, fake)
        provider = {"api_key_file": str(key), "models": MODELS}
    provider |= {"name": kind, "base_url": f"http://127.0.0.1:{port}"}
    server = Server(make_config(providers=[provider], **({"callers": CALLERS} | cfg)))
    return fake, Running(server, await nursery.start(server.serve))


def frames(raw: bytes) -> list[tuple[dict[str, Any], bytes]]:
    """What botocore's own parser reads in an answer."""
    buffer = EventStreamBuffer()
    buffer.add_data(raw)
    return [(dict(m.headers), m.payload) for m in buffer]


BODY = orjson.dumps(
    {
        "anthropic_version": "bedrock-2023-05-31",
        "anthropic_beta": ["interleaved-thinking-2025-05-14"],
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi"}],
    }
)
PATH = "/model/us.anthropic.claude-opus-5-5-v1%3A0"


@pytest.mark.parametrize("kind", ["anthropic", "bedrock"])
async def test_invoke_stream_count_and_errors_in_bedrock_s_format(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    fake, proxy = await proxy_for(nursery, kind, monkeypatch)
    r = await h1_request(proxy.port, "POST", f"{PATH}/invoke", BEARER, BODY)
    message = orjson.loads(r.body)
    assert r.status == 200 and message["type"] == "message"
    assert message["content"][0]["text"].startswith("Hello")
    r = await h1_request(proxy.port, "POST", f"{PATH}/invoke-with-response-stream", BEARER, BODY)
    assert r.status == 200 and r.header(b"content-type") == b"application/vnd.amazon.eventstream"
    got = frames(r.body)
    assert got and all(h[":event-type"] == "chunk" for h, _ in got)
    events = [orjson.loads(base64.b64decode(orjson.loads(p)["bytes"])) for _, p in got]
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
    assert events[0]["message"]["content"] == [] and "ping" not in {e["type"] for e in events}
    if isinstance(fake, BedrockFake):  # Bedrock's own frames, as they came
        assert r.body == b"".join(fake.frames[:-1]) and b'"p":' in r.body
        r = await h1_request(
            proxy.port,
            "POST",
            f"{PATH}/invoke-with-response-stream",
            [*BEARER, ("x-fake-fault", "error-mid-stream=3")],
            BODY,
        )
        assert r.status == 200 and r.body == b"".join([*fake.frames[:3], fake.frames[-1]])
        assert frames(r.body)[-1][0][":exception-type"] == "throttlingException"
    counted = orjson.dumps({"input": {"invokeModel": {"body": base64.b64encode(BODY).decode()}}})
    r = await h1_request(proxy.port, "POST", f"{PATH}/count-tokens", BEARER, counted)
    assert r.status == 200 and orjson.loads(r.body)["inputTokens"] > 0
    # What the provider got: a Messages request for the API's model name.
    if kind == "anthropic":
        asked = orjson.loads(fake.last_body)
        assert asked["model"] == "claude-opus-5-5" and "anthropic_version" not in asked
        assert dict(fake.seen[0].headers)[b"anthropic-beta"] == b"interleaved-thinking-2025-05-14"
    else:
        assert isinstance(fake, BedrockFake) and not fake.refused
        assert fake.seen[0].target == b"/model/claude-opus-5-5/invoke"
    # Errors in AWS's shape, their words kept.
    r = await h1_request(
        proxy.port, "POST", f"{PATH}/invoke", [*BEARER, ("x-fake-fault", "429")], BODY
    )
    assert r.status == 429 and r.header(b"x-amzn-errortype") == b"ThrottlingException:"
    assert "message" in orjson.loads(r.body)
    r = await h1_request(proxy.port, "POST", f"{PATH}/invoke", [], BODY)
    assert r.status == 403 and r.header(b"x-amzn-errortype") == b"UnrecognizedClientException:"
    # The profiles a Bedrock client looks its model up in.
    r = await h1_request(proxy.port, "GET", "/inference-profiles?type=SYSTEM_DEFINED", BEARER)
    ids = [p["inferenceProfileId"] for p in orjson.loads(r.body)["inferenceProfileSummaries"]]
    assert "us.anthropic.claude-opus-5-5" in ids and "global.anthropic.claude-haiku-4-5" in ids
    r = await h1_request(
        proxy.port, "GET", "/inference-profiles/eu.anthropic.claude-opus-5-5", BEARER
    )
    assert r.status == 200 and orjson.loads(r.body)["status"] == "ACTIVE"
    r = await h1_request(proxy.port, "GET", "/inference-profiles/us.anthropic.nope", BEARER)
    assert r.status == 404 and r.header(b"x-amzn-errortype") == b"ResourceNotFoundException:"


async def claude_code_turn(
    nursery: trio.Nursery,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    kind: str,
    turn: str,
    env: Callable[[str], dict[str, str]],
) -> FakeUpstream:
    """The real Claude Code, one `-p` turn through a proxy in front of a
    ``kind`` provider (``env``: its mode's variables, for the proxy's URL).
    ``turn`` "tool-thinking": thinking on, and the model Reads a file whose
    words Claude Code sends back (a tool round trip); the proxy keeps its
    conversation log and counts the caller's use against a limit."""
    cwd = tmp_path / "work"
    cwd.mkdir()
    notes = cwd / "notes.txt"
    notes.write_text("the launch code is 4217\n")
    call = ("Read", {"file_path": str(notes)}) if turn == "tool-thinking" else None
    cfg: dict[str, Any] = {"log_bodies": "all", "state_dir": str(tmp_path / "state")}
    if turn == "tool-thinking":
        cfg["callers"] = [{**CALLERS[0], "rpm": 1000, "tpm": 10_000_000}]
    fake, proxy = await proxy_for(nursery, kind, monkeypatch, call, **cfg)
    listeners = await nursery.start(partial(trio.serve_tcp, refuse, 0, host="127.0.0.1"))
    refuser = listeners[0].socket.getsockname()[1]
    extra = env(proxy.url) | ({"MAX_THINKING_TOKENS": "4000"} if turn == "tool-thinking" else {})
    result = await claude(proxy.url, refuser, api_key="unused", extra=extra, cwd=str(cwd))
    assert result["is_error"] is False, result
    assert result["result"].startswith("Hello from trioproxy")
    if turn == "tool-thinking":
        assert result["num_turns"] >= 2
        await tool_and_thinking_checked(proxy, fake)
    return fake


async def tool_and_thinking_checked(proxy: Running, fake: FakeUpstream) -> None:
    """What a tool-and-thinking turn leaves: the provider got a thinking
    request and the file's words in a tool_result; the conversation log
    holds both requests under the caller, the tool call in the first
    answer; the caller's limits counted its requests and tokens."""
    asked = [orjson.loads(b) for b in fake.bodies if b.startswith(b"{")]
    assert any(isinstance(a.get("thinking"), dict) for a in asked)
    assert "4217" in orjson.dumps([a["messages"] for a in asked]).decode()
    state = proxy.server.state
    reader = state.log_reader
    assert reader is not None
    unzstd = zstandard.ZstdDecompressor()
    sent = ""
    with trio.fail_after(10):
        while "tool_result" not in sent:  # the journal writes in batches, in a thread
            await trio.sleep(0.05)
            rows = await reader.run(lambda db: db.list_log(LogQuery()))
            if not rows:
                continue
            session = rows[0]["session"]
            full = await reader.run(lambda db, s=session: db.session_log(s))
            turns = conversation([detail(r, unzstd) for r in full])["turns"]
            sent = orjson.dumps([t["messages"] for t in turns]).decode()
    assert "4217" in sent and {r["caller"] for r in rows} == {"team"}
    answered = [b["type"] for t in turns for b in (t["answer"] or {}).get("content", [])]
    assert "tool_use" in answered and "thinking" in answered, answered
    (team,) = state.callers.callers()
    use = state.book.usage(team)
    assert use["requests_last_minute"] >= 2 and use["tokens_last_minute"] > 0  # type: ignore[operator]


TURNS = ["text", "tool-thinking"]


def bedrock_mode(url: str) -> dict[str, str]:
    return {
        "CLAUDE_CODE_USE_BEDROCK": "1",
        "ANTHROPIC_BEDROCK_BASE_URL": url,
        "AWS_BEARER_TOKEN_BEDROCK": SECRET,
        "AWS_REGION": "us-east-1",
    }


@unless_in_ci(not CLAUDE.exists(), "Claude Code is not installed (make js-clients)")
@pytest.mark.timeout(150)
@pytest.mark.parametrize("turn", TURNS)
@pytest.mark.parametrize("kind", ["anthropic", "bedrock", "vertex"])
async def test_claude_code_in_bedrock_mode(
    nursery: trio.Nursery,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    kind: str,
    turn: str,
) -> None:
    caplog.set_level(logging.INFO, logger="trioproxy.access")
    fake = await claude_code_turn(nursery, monkeypatch, tmp_path, kind, turn, bedrock_mode)
    streamed = "/model/us.anthropic.claude-opus-5-5/invoke-with-response-stream"
    lines: list[dict[str, Any]] = []
    with trio.fail_after(10):  # the journal writes in batches
        while not any(x["path"] == streamed for x in lines):
            await trio.sleep(0.05)
            lines = access_lines(caplog)
    # Its profile lookup, its probes of other models, its turn: all served.
    assert lines[0]["path"] == "/inference-profiles"
    assert all(x["caller"] == "team" and x["status"] == 200 for x in lines)
    assert {x["provider"] for x in lines if x["method"] == "POST"} == {kind}
    assert next(x for x in lines if x["path"] == streamed)["stream"] is True
    assert fake.requests >= 1


VERTEX = "/v1/projects/my-project/locations/us-east5/publishers/anthropic/models"


async def test_vertex_format_requests(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, proxy = await proxy_for(nursery, "anthropic", monkeypatch)
    body = orjson.dumps(
        {
            "anthropic_version": "vertex-2023-10-16",
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "hi"}],
        }
    )
    r = await h1_request(
        proxy.port, "POST", f"{VERTEX}/claude-opus-5-5@20261101:rawPredict", BEARER, body
    )
    assert r.status == 200 and orjson.loads(r.body)["type"] == "message"
    asked = orjson.loads(fake.last_body)
    assert asked["model"] == "claude-opus-5-5" and "anthropic_version" not in asked
    r = await h1_request(
        proxy.port, "POST", f"{VERTEX}/claude-opus-5-5:streamRawPredict", BEARER, body
    )
    assert r.status == 200 and r.body.startswith(b"event: message_start")  # SSE, as Vertex's
    assert orjson.loads(fake.last_body)["stream"] is True
    counted = orjson.dumps({**orjson.loads(body), "model": "claude-opus-5-5"})
    r = await h1_request(proxy.port, "POST", f"{VERTEX}/count-tokens:rawPredict", BEARER, counted)
    assert r.status == 200 and orjson.loads(r.body)["input_tokens"] > 0
    r = await h1_request(proxy.port, "POST", f"{VERTEX}/claude-opus-5-5:rawPredict", [], body)
    assert r.status == 401


def vertex_mode(url: str) -> dict[str, str]:
    return {
        "CLAUDE_CODE_USE_VERTEX": "1",
        "ANTHROPIC_VERTEX_BASE_URL": f"{url}/v1",
        "ANTHROPIC_VERTEX_PROJECT_ID": "my-project",
        "CLOUD_ML_REGION": "us-east5",
        "CLAUDE_CODE_SKIP_VERTEX_AUTH": "1",
        "ANTHROPIC_CUSTOM_HEADERS": f"x-trioproxy-key: {SECRET}",
    }


@unless_in_ci(not CLAUDE.exists(), "Claude Code is not installed (make js-clients)")
@pytest.mark.timeout(150)
@pytest.mark.parametrize("turn", TURNS)
@pytest.mark.parametrize("kind", ["anthropic", "bedrock", "vertex"])
async def test_claude_code_in_vertex_mode(
    nursery: trio.Nursery,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    kind: str,
    turn: str,
) -> None:
    caplog.set_level(logging.INFO, logger="trioproxy.access")
    fake = await claude_code_turn(nursery, monkeypatch, tmp_path, kind, turn, vertex_mode)
    lines: list[dict[str, Any]] = []
    with trio.fail_after(10):  # the journal writes in batches
        while not any("streamRawPredict" in x["path"] for x in lines):
            await trio.sleep(0.05)
            lines = access_lines(caplog)
    assert all(x["caller"] == "team" and x["status"] == 200 for x in lines)
    assert {x["provider"] for x in lines} == {kind} and fake.requests >= 1


async def test_unserved_paths_are_404s_in_the_format_s_shape(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, proxy = await proxy_for(nursery, "anthropic", monkeypatch)
    # Bedrock's: ResourceNotFoundException, its message as AWS puts it.
    for method, path in [
        ("POST", f"{PATH}/converse"),
        ("GET", f"{PATH}/invoke"),
        ("POST", "/inference-profiles"),
    ]:
        r = await h1_request(proxy.port, method, path, BEARER, BODY if method == "POST" else b"")
        assert r.status == 404, (method, path)
        assert r.header(b"x-amzn-errortype") == b"ResourceNotFoundException:"
        assert set(orjson.loads(r.body)) == {"message"}
    # Vertex AI's: Google's error shape.
    r = await h1_request(proxy.port, "POST", f"{VERTEX}/claude-opus-5-5:predict", BEARER, BODY)
    err = orjson.loads(r.body)["error"]
    assert r.status == 404 and err["code"] == 404 and err["status"] == "NOT_FOUND"
    # Chat Completions': OpenAI's error object.
    r = await h1_request(proxy.port, "GET", "/v1/chat/completions", BEARER)
    err = orjson.loads(r.body)["error"]
    assert (
        r.status == 404
        and err["type"] == "invalid_request_error"
        and "Invalid URL" in err["message"]
    )
    # Authentication first, in the format's shape too; nothing was forwarded.
    r = await h1_request(proxy.port, "POST", f"{PATH}/converse", [], BODY)
    assert r.status == 403 and r.header(b"x-amzn-errortype") == b"UnrecognizedClientException:"
    assert fake.requests == 0
