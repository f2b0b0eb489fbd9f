"""The real Claude Code (`claude -p`, installed by `make test` in tests/js),
offline as ../shared/CLIENTS.md describes, against a flaky fake upstream
directly and through the proxy. Its own retry and fallback logic must do
exactly the same thing both ways: the same answer, and the same sequence of
requests (streaming or not) reaching the upstream."""

from __future__ import annotations

import hashlib
import socket
import ssl
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
import trustme
import zstandard

from tests.helpers import make_config, unless_in_ci
from trioproxy.convlog.views import conversation, detail
from trioproxy.db.base import LogQuery
from trioproxy.fake.app import FakeUpstream
from trioproxy.fake.messages import DEFAULT_TEXT, Plan, Usage, message_json, stream_events
from trioproxy.fake.openai_app import OpenAIFake
from trioproxy.inbound.exchange import ClientExchange, respond
from trioproxy.proto.events import ResponseHead
from trioproxy.server import Server

CLAUDE = Path(__file__).parents[1] / "js" / "node_modules" / ".bin" / "claude"
CALLER = "sk-team-claude-code-0123456789"
pytestmark = [
    unless_in_ci(not CLAUDE.exists(), "Claude Code is not installed (make js-clients)"),
    # Above claude()'s own 90 s bound: that one kills the process; pytest's
    # would leave it running (a looping Claude Code once ran on for 34 min).
    pytest.mark.timeout(150),
]

SCENARIOS = {
    "healthy": [],
    "529-once": [b"529"],
    "429-retry-after-once": [b"429=1"],
    "cut-mid-stream-once": [b"drop-mid-stream=3"],
    "upstream-error-event-once": [b"error-mid-stream=2"],
}


async def refuse(stream: trio.SocketStream) -> None:
    """Every other host Claude Code tries (through HTTPS_PROXY) is refused at once."""
    async with stream:
        try:
            await stream.receive_some(65536)
            await stream.send_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
        except trio.BrokenResourceError:
            pass


async def claude(
    base_url: str,
    refuser: int,
    api_key: str = "sk-ant-test",
    ca: str | None = None,
    extra: dict[str, str] | None = None,
    cwd: str | None = None,
    args: tuple[str, ...] = (),
) -> dict[str, Any]:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": tempfile.mkdtemp(prefix="cc-home-"),
        "TERM": "dumb",
        "LANG": "C.UTF-8",
        "HTTPS_PROXY": f"http://127.0.0.1:{refuser}",
        "HTTP_PROXY": f"http://127.0.0.1:{refuser}",
        "NO_PROXY": "127.0.0.1,localhost,::1",
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": api_key,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        **({"NODE_EXTRA_CA_CERTS": ca} if ca else {}),
        **(extra or {}),
    }
    with trio.fail_after(90):
        done = await trio.run_process(
            [str(CLAUDE), "-p", "say hi", "--output-format", "json", *args],
            env=env,
            cwd=cwd or tempfile.mkdtemp(prefix="cc-cwd-"),
            stdin=b"",
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode in (0, 1), done.stderr[-2000:]
    result: dict[str, Any] = orjson.loads(done.stdout)
    return result


async def upstream(
    nursery: trio.Nursery, script: list[bytes], tls: ssl.SSLContext | None = None
) -> tuple[FakeUpstream, int]:
    fake = FakeUpstream(tools=False)  # answers in text: one turn, no tool loop
    fake.script.extend(script)
    port = await nursery.start(Server(make_config(), ssl_context=tls).serve_app, fake)
    return fake, port


def requests(fake: FakeUpstream) -> list[tuple[bytes, bool]]:
    return [(s.target, s.stream) for s in fake.seen]


@pytest.mark.parametrize("config", ["one-provider", "failover", "auth-inject", "scrub", "tls"])
@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_claude_code_behaves_as_it_does_direct(
    nursery: trio.Nursery, tmp_path: Path, name: str, config: str
) -> None:
    listeners = await nursery.start(partial(trio.serve_tcp, refuse, 0, host="127.0.0.1"))
    refuser = listeners[0].socket.getsockname()[1]
    server_tls: ssl.SSLContext | None = None
    ca_file: str | None = None
    if config == "tls":
        ca = trustme.CA()
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(server_tls)
        ca_file = str(tmp_path / "ca.pem")
        ca.cert_pem.write_to_path(ca_file)
    direct, direct_port = await upstream(nursery, SCENARIOS[name], server_tls)
    behind, behind_port = await upstream(nursery, SCENARIOS[name])
    settings: dict[str, Any] = {"upstream__url": f"http://127.0.0.1:{behind_port}"}
    key = "sk-ant-test"
    healthy: FakeUpstream | None = None
    if config == "failover":
        healthy, healthy_port = await upstream(nursery, [])
        settings = {
            "providers": [
                {"name": "flaky", "base_url": f"http://127.0.0.1:{behind_port}"},
                {
                    "name": "healthy",
                    "base_url": f"http://127.0.0.1:{healthy_port}",
                    "priority": 200,
                },
            ]
        }
    elif config == "auth-inject":
        settings |= {"auth__secrets": f"team:{CALLER}", "upstream__api_key": "sk-provider"}
        key = CALLER
    elif config == "scrub":
        settings |= {"scrub__mode": "pseudonymize", "scrub__hmac_key": "ef" * 32}
    proxy_port = await nursery.start(Server(make_config(**settings), ssl_context=server_tls).serve)
    scheme = "https" if server_tls else "http"
    results: dict[str, dict[str, Any]] = {}

    async def run(which: str, port: int, api_key: str) -> None:
        results[which] = await claude(f"{scheme}://127.0.0.1:{port}", refuser, api_key, ca_file)

    async with trio.open_nursery() as both:
        both.start_soon(run, "direct", direct_port, "sk-ant-test")
        both.start_soon(run, "proxy", proxy_port, key)
    for which in ("direct", "proxy"):
        assert results[which]["is_error"] is False, results[which]
    assert results["proxy"]["result"] == results["direct"]["result"]
    if healthy is not None and name in ("529-once", "429-retry-after-once"):
        # Better than direct, on purpose: the proxy failed over, Claude Code
        # never had to retry (direct, it sent the request twice).
        assert len(requests(behind)) == 1 and len(requests(healthy)) == 1
        assert len(requests(direct)) == 2
        return
    # The same retries, the same streaming or non-streaming fallback requests.
    seen = requests(behind) + (requests(healthy) if healthy is not None else [])
    assert seen == requests(direct), (seen, requests(direct))
    if config == "scrub":  # its own Co-Authored-By address is on the allowlist
        assert b"<EMAIL_HMAC" not in behind.last_body


async def test_a_made_up_error_event_changes_what_claude_code_does(nursery: trio.Nursery) -> None:
    """Why a cut stream is mirrored by default: with stream_failure =
    "error_event" the proxy turns an upstream cut into an `event: error`,
    and Claude Code falls back to a non-streaming request instead of
    retrying the stream as it does direct."""
    listeners = await nursery.start(partial(trio.serve_tcp, refuse, 0, host="127.0.0.1"))
    refuser = listeners[0].socket.getsockname()[1]
    behind, behind_port = await upstream(nursery, [b"drop-mid-stream=3"])
    proxy_port = await nursery.start(
        Server(
            make_config(
                upstream__url=f"http://127.0.0.1:{behind_port}", stream_failure="error_event"
            )
        ).serve
    )
    result = await claude(f"http://127.0.0.1:{proxy_port}", refuser)
    assert result["is_error"] is False
    assert [stream for _, stream in requests(behind)] == [True, False]  # direct: [True, True]


async def test_claude_code_with_its_own_credential_and_the_proxy_key_in_custom_headers(
    nursery: trio.Nursery,
) -> None:
    """A team member's own key (or subscription token) goes upstream; the
    proxy knows her by ANTHROPIC_CUSTOM_HEADERS="x-trioproxy-key: ...",
    which never leaves the proxy."""
    listeners = await nursery.start(partial(trio.serve_tcp, refuse, 0, host="127.0.0.1"))
    refuser = listeners[0].socket.getsockname()[1]
    behind, behind_port = await upstream(nursery, [])
    secret = "carol-proxy-secret-0123456789"
    callers = [
        {
            "name": "carol",
            "secret_sha256": [hashlib.sha256(secret.encode()).hexdigest()],
            "upstream_credential": "own",
        }
    ]
    proxy_port = await nursery.start(
        Server(make_config(upstream__url=f"http://127.0.0.1:{behind_port}", callers=callers)).serve
    )
    own = "sk-ant-api03-carols-own-key-0123456789"
    result = await claude(
        f"http://127.0.0.1:{proxy_port}",
        refuser,
        own,
        extra={"ANTHROPIC_CUSTOM_HEADERS": f"x-trioproxy-key: {secret}"},
    )
    assert result["is_error"] is False, result
    assert behind.seen
    for seen in behind.seen:
        headers = {n: v for n, v in seen.headers}
        assert headers[b"x-api-key"] == own.encode()
        assert b"x-trioproxy-key" not in headers
        assert secret.encode() not in b"".join(v for _, v in seen.headers)


@pytest.mark.parametrize("tool_round_trip", [False, True], ids=["text", "read-tool"])
async def test_claude_code_through_an_openai_provider(
    nursery: trio.Nursery, tmp_path: Path, tool_round_trip: bool
) -> None:
    """Claude Code speaks Messages to the proxy; a Chat Completions API
    answers. `-p` works; with a tool round trip the model asks to Read a
    file, Claude Code runs the tool and sends its result back, translated."""
    listeners = await nursery.start(partial(trio.serve_tcp, refuse, 0, host="127.0.0.1"))
    refuser = listeners[0].socket.getsockname()[1]
    cwd = tmp_path / "work"
    cwd.mkdir()
    secret_file = cwd / "notes.txt"
    secret_file.write_text("the launch code is 4217\n")
    call = ("Read", {"file_path": str(secret_file)}) if tool_round_trip else None
    fake = OpenAIFake(tools=False, call=call)
    fake_port = await nursery.start(Server(make_config()).serve_app, fake)
    key = tmp_path / "openai.key"
    key.write_text("sk-openai-fake-0123456789")
    provider = {
        "name": "gpt",
        "kind": "openai",
        "base_url": f"http://127.0.0.1:{fake_port}/v1",
        "api_key_file": str(key),
        "auth": "bearer",
        "models": {"default": "gpt-4o"},
    }
    proxy_port = await nursery.start(Server(make_config(providers=[provider])).serve)
    result = await claude(f"http://127.0.0.1:{proxy_port}", refuser, cwd=str(cwd))
    assert result["is_error"] is False, result
    assert result["result"].startswith("Hello from trioproxy")
    asked = [orjson.loads(b) for b in fake.bodies]
    assert all(a["model"] == "gpt-4o" for a in asked)
    if tool_round_trip:
        tool_messages = [m for a in asked for m in a["messages"] if m["role"] == "tool"]
        assert tool_messages and "4217" in tool_messages[0]["content"]
        assert result["num_turns"] >= 2


async def _read_all(ex: ClientExchange) -> bytes:
    parts = []
    while (chunk := await ex.receive_body()) is not None:
        parts.append(chunk.data)
        ex.ack(chunk.flow_controlled_length)
    return b"".join(parts)


async def _answer(ex: ClientExchange, doc: dict[str, Any], plan: Plan) -> None:
    """``plan`` as the API gives it: a stream when the request asked for one."""
    if doc.get("stream"):
        await ex.send_head(ResponseHead(200, [(b"content-type", b"text/event-stream")]))
        for event in stream_events(plan):
            await ex.send_body(event)
        await ex.end()
        return
    data = message_json(plan)
    await respond(ex, ResponseHead(200, [(b"content-type", b"application/json")]), data)


class _LaunchesAgent:
    """The main agent's model: on its first turn it launches the `reviewer`
    subagent (Claude Code's Agent tool), then answers in text."""

    def __init__(self) -> None:
        self.inner = FakeUpstream(tools=False)
        self.bodies: list[bytes] = []

    async def __call__(self, ex: ClientExchange) -> None:
        body = await _read_all(ex)
        self.bodies.append(body)
        doc = orjson.loads(body)
        offered = {t.get("name") for t in doc.get("tools", [])}
        answered = b"tool_result" in body
        if "Agent" in offered and not answered:
            tool = {
                "name": "Agent",
                "input": {
                    "description": "review",
                    "prompt": "review it",
                    "subagent_type": "reviewer",
                },
            }
            plan = Plan(
                "msg_main_1", "claude-sonnet-4-6", "", False, tool, Usage(10, 0, 0, 5), "tool_use"
            )
        else:
            plan = Plan(
                "msg_main_2", "claude-sonnet-4-6", "Reviewed.", False, None, Usage(10, 0, 0, 5)
            )
        await _answer(ex, doc, plan)


async def test_claude_code_subagent_routed_to_an_openai_provider_by_rule(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """A [[routes]] rule matching the `reviewer` subagent sends its requests
    to a Chat Completions provider; the main agent's stay on Anthropic's."""
    listeners = await nursery.start(partial(trio.serve_tcp, refuse, 0, host="127.0.0.1"))
    refuser = listeners[0].socket.getsockname()[1]
    cwd = tmp_path / "work"
    agents = cwd / ".claude" / "agents"
    agents.mkdir(parents=True)
    (agents / "reviewer.md").write_text(
        "---\nname: reviewer\ndescription: Reviews code\n---\n\n"
        "You are a meticulous code reviewer.\nLook for bugs first.\n"
    )
    main = _LaunchesAgent()
    main_port = await nursery.start(Server(make_config()).serve_app, main)
    gpt = OpenAIFake(tools=False)
    gpt_port = await nursery.start(Server(make_config()).serve_app, gpt)
    key = tmp_path / "openai.key"
    key.write_text("sk-openai-fake-0123456789")
    config = make_config(
        providers=[
            {"name": "anthropic", "base_url": f"http://127.0.0.1:{main_port}"},
            {
                "name": "gpt",
                "kind": "openai",
                "base_url": f"http://127.0.0.1:{gpt_port}/v1",
                "api_key_file": str(key),
                "auth": "bearer",
                "priority": 200,
            },
        ],
        routes=[{"match": {"subagent": "reviewer"}, "provider": "gpt", "model": "gpt-4o"}],
        routing__agents_dirs=str(agents),
    )
    proxy_port = await nursery.start(Server(config).serve)
    result = await claude(f"http://127.0.0.1:{proxy_port}", refuser, cwd=str(cwd))
    assert result["is_error"] is False, result
    routed = [orjson.loads(b) for b in gpt.bodies]
    assert result["result"] == "Reviewed."
    assert routed, "the subagent's requests reached the OpenAI provider"
    assert all(r["model"] == "gpt-4o" for r in routed)
    assert "You are a meticulous code reviewer." in routed[0]["messages"][0]["content"]
    for body in main.bodies:  # the main agent's turns stayed where they were
        assert b"You are a meticulous code reviewer." not in body


class _ReadsAFile:
    """A model that thinks, asks Claude Code to Read a file, then answers
    with what the file said."""

    def __init__(self, path: str) -> None:
        self.path = path

    async def __call__(self, ex: ClientExchange) -> None:
        body = await _read_all(ex)
        doc = orjson.loads(body)
        if b"tool_result" not in body:
            tool = {"name": "Read", "input": {"file_path": self.path}}
            plan = Plan(
                "msg_r1",
                "claude-sonnet-4-6",
                "Reading it.",
                True,
                tool,
                Usage(90, 0, 0, 9),
                "tool_use",
            )
        else:
            plan = Plan(
                "msg_r2", "claude-sonnet-4-6", "The code is 4217.", True, None, Usage(120, 0, 80, 7)
            )
        await _answer(ex, doc, plan)


async def test_claude_codes_session_in_the_conversation_log(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """The real Claude Code's requests, logged and threaded: its session id
    groups them, the second request continues the first (moved cache_control
    markers and all), and the turn shows the thinking, the Read tool_use and
    the tool_result with the file's text."""
    listeners = await nursery.start(partial(trio.serve_tcp, refuse, 0, host="127.0.0.1"))
    refuser = listeners[0].socket.getsockname()[1]
    cwd = tmp_path / "work"
    cwd.mkdir()
    notes = cwd / "notes.txt"
    notes.write_text("the launch code is 4217\n")
    fake_port = await nursery.start(Server(make_config()).serve_app, _ReadsAFile(str(notes)))
    server = Server(
        make_config(
            upstream__url=f"http://127.0.0.1:{fake_port}",
            state_dir=str(tmp_path / "state"),
            log_bodies="all",
        )
    )
    proxy_port = await nursery.start(server.serve)
    result = await claude(f"http://127.0.0.1:{proxy_port}", refuser, cwd=str(cwd))
    assert result["is_error"] is False and "4217" in result["result"], result
    journal = server.state.journal
    with trio.fail_after(10):
        while journal.log_written < 2:  # noqa: ASYNC110 (a worker thread writes)
            await trio.sleep(0.05)
    reader = server.state.log_reader
    assert reader is not None
    rows = await reader.run(lambda db: db.list_log(LogQuery()))
    sessions = {r["session"] for r in rows}
    assert len(sessions) == 1 and "" not in sessions  # x-claude-code-session-id on every request
    unzstd = zstandard.ZstdDecompressor()
    full = await reader.run(lambda db: db.session_log(rows[0]["session"]))
    talk = conversation([detail(r, unzstd) for r in full])
    turns = talk["turns"]
    assert len(turns) == 2 and turns[0]["new_thread"] and not turns[1]["new_thread"]
    first = [b["type"] for b in turns[0]["answer"]["content"]]
    assert first == ["thinking", "text", "tool_use"]
    assert turns[0]["answer"]["content"][2]["name"] == "Read"
    results = [
        b
        for m in turns[1]["messages"]
        if m["role"] == "user" and isinstance(m["content"], list)
        for b in m["content"]
        if b.get("type") == "tool_result"
    ]
    assert len(results) == 1 and "4217" in orjson.dumps(results[0]).decode()
    assert turns[1]["tokens"]["cache_read_input_tokens"] == 80  # per turn
    assert turns[0]["system"] is not None  # Claude Code's system blocks, shown once


@pytest.mark.parametrize("tools", ["default", ""], ids=["tools", "no-tools"])
async def test_claude_code_against_the_demo_finishes(
    nursery: trio.Nursery, tmp_path: Path, tools: str
) -> None:
    """`trioproxy demo`, the command a new user runs, then Claude Code
    pointed at it: the fake calls a tool once (when tools are offered) and
    answers the tool's result in text, so `claude -p` exits 0 with the
    fake's text after a few requests, never a loop."""
    listeners = await nursery.start(partial(trio.serve_tcp, refuse, 0, host="127.0.0.1"))
    refuser = listeners[0].socket.getsockname()[1]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "TRIOPROXY_STATE_DIR": str(tmp_path / "state"),
    }
    demo: trio.Process = await nursery.start(
        partial(
            trio.run_process,
            [sys.executable, "-m", "trioproxy", "demo", "--listen", f"127.0.0.1:{port}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            check=False,
        )
    )
    assert demo.stdout is not None and demo.stderr is not None
    out, err = bytearray(), bytearray()

    async def collect(stream: trio.abc.ReceiveStream, into: bytearray) -> None:
        async for chunk in stream:
            into += chunk

    try:
        nursery.start_soon(collect, demo.stderr, err)
        with trio.fail_after(30):
            while b"Point a client at it" not in out:
                chunk = await demo.stdout.receive_some(65536)
                assert chunk, (bytes(out), bytes(err))
                out += chunk
        nursery.start_soon(collect, demo.stdout, out)
        before = err.count(b'"path":"/v1/messages')
        result = await claude(f"http://127.0.0.1:{port}", refuser, args=("--tools", tools))
        await trio.sleep(0.5)  # the journal writes its access lines every 0.2 s
    finally:
        demo.terminate()
        with trio.move_on_after(10):
            await demo.wait()
    asked = err.count(b'"path":"/v1/messages') - before
    assert result["is_error"] is False and result["result"] == DEFAULT_TEXT, result
    assert 1 <= asked < 10, bytes(err)[-3000:]
    if tools:
        assert result["num_turns"] >= 2  # the tool round trip happened, then it ended


@pytest.mark.parametrize("turn", ["text", "tool-round-trip", "thinking"])
@pytest.mark.parametrize("cloud", ["bedrock", "vertex"])
async def test_claude_code_through_a_cloud_provider(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cloud: str, turn: str
) -> None:
    """Claude Code speaks Messages to the proxy; the fake Bedrock runtime or
    Vertex AI answers, checking every signature or token and every body as
    the cloud would. `-p`, a tool round trip (the model Reads a file, Claude
    Code sends its content back) and a thinking turn end as they do through
    the Anthropic API; the fields and betas the cloud rejects never reach it."""
    import os

    from trioproxy.fake.bedrock_app import BedrockFake
    from trioproxy.fake.sigv4 import issued
    from trioproxy.fake.vertex_app import FAKE_PROJECT, VertexFake

    for name in [n for n in os.environ if n.startswith(("AWS_", "GOOGLE_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKE0000CLAUDE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", issued("AKIAFAKE0000CLAUDE")[0])
    listeners = await nursery.start(partial(trio.serve_tcp, refuse, 0, host="127.0.0.1"))
    refuser = listeners[0].socket.getsockname()[1]
    cwd = tmp_path / "work"
    cwd.mkdir()
    notes = cwd / "notes.txt"
    notes.write_text("the launch code is 4217\n")
    call = ("Read", {"file_path": str(notes)}) if turn == "tool-round-trip" else None
    fake: BedrockFake | VertexFake
    if cloud == "bedrock":
        fake = BedrockFake(tools=False, call=call)
        fake_port = await nursery.start(Server(make_config()).serve_app, fake)
        provider: dict[str, Any] = {"region": "us-east-1"}
        version = "bedrock-2023-05-31"
    else:
        fake = VertexFake(tools=False, call=call)
        fake_port = await nursery.start(Server(make_config()).serve_app, fake)
        key = tmp_path / "sa.json"
        fake.service_account_key(key, f"http://127.0.0.1:{fake_port}/token")
        provider = {"project": FAKE_PROJECT, "region": "global", "credentials_file": str(key)}
        version = "vertex-2023-10-16"
    provider |= {
        "name": cloud,
        "kind": cloud,
        "base_url": f"http://127.0.0.1:{fake_port}",
        "models": {"default": "claude-opus-5-5"},
    }
    proxy_port = await nursery.start(Server(make_config(providers=[provider])).serve)
    extra = {"MAX_THINKING_TOKENS": "4000"} if turn == "thinking" else None
    result = await claude(f"http://127.0.0.1:{proxy_port}", refuser, cwd=str(cwd), extra=extra)
    assert result["is_error"] is False, result
    assert result["result"].startswith("Hello from trioproxy")
    assert not fake.refused, list(fake.refused)
    asked = [orjson.loads(b) for b in fake.bodies if b and not b.startswith(b"grant_type")]
    assert asked and all(a["anthropic_version"] == version for a in asked)
    assert not any("context_management" in a for a in asked)
    if turn == "tool-round-trip":
        results = [
            block
            for a in asked
            for m in a.get("messages", [])
            if isinstance(m.get("content"), list)
            for block in m["content"]
            if block.get("type") == "tool_result"
        ]
        assert results and "4217" in orjson.dumps(results).decode()
        assert result["num_turns"] >= 2
    if turn == "thinking":
        assert any(a.get("thinking", {}).get("type") in ("enabled", "adaptive") for a in asked)
