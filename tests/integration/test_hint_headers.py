"""Claude Code's hint headers (CLAUDE_CODE_GATEWAY_HINT_HEADERS=1): routes
on what a request is (request_class, agent_type), and the access line, the
ledger and the conversation log say it."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import orjson
import pytest
import trio

from tests.helpers import Running, h1_request, make_config, unless_in_ci
from tests.integration.test_auth import access_lines
from tests.integration.test_claude_code import CLAUDE, claude, refuse
from trioproxy.db.base import LogQuery
from trioproxy.db.open import open_database
from trioproxy.fake.app import FakeUpstream
from trioproxy.server import Server

ROUTES = [
    {
        "name": "aux",
        "match": {"request_class": "auxiliary"},
        "provider": "cheap",
        "model": "claude-haiku-4-5",
    },
    {"name": "explore", "match": {"agent_type": "Explore"}, "provider": "cheap"},
]


async def two_providers(
    nursery: trio.Nursery, tmp_path: Path
) -> tuple[FakeUpstream, FakeUpstream, Running]:
    main, cheap = FakeUpstream(tools=False), FakeUpstream(tools=False)
    main_port = await nursery.start(Server(make_config()).serve_app, main)
    cheap_port = await nursery.start(Server(make_config()).serve_app, cheap)
    providers = [
        {"name": "main", "base_url": f"http://127.0.0.1:{main_port}"},
        {"name": "cheap", "base_url": f"http://127.0.0.1:{cheap_port}"},
    ]
    server = Server(
        make_config(providers=providers, routes=ROUTES, log_bodies="all", state_dir=str(tmp_path))
    )
    return main, cheap, Running(server, await nursery.start(server.serve))


async def test_routes_on_the_request_class_and_the_agent_type(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trioproxy.access")
    main, cheap, proxy = await two_providers(nursery, tmp_path)
    body = orjson.dumps(
        {
            "model": "claude-opus-5-5",
            "max_tokens": 9,
            "messages": [{"role": "user", "content": "x"}],
        }
    )
    for request_class, agent in (("main", ""), ("auxiliary", ""), ("subagent", "Explore")):
        headers = [
            ("x-claude-code-request-class", request_class),
            ("x-claude-code-prompt-id", "prompt-1"),
            *(
                [("x-claude-code-agent-type", agent), ("x-claude-code-agent-id", "a-7")]
                if agent
                else []
            ),
        ]
        r = await h1_request(proxy.port, "POST", "/v1/messages", headers, body)
        assert r.status == 200
    assert main.requests == 1 and cheap.requests == 2
    assert orjson.loads(cheap.last_body)["model"] == "claude-opus-5-5"  # explore: no model set
    with trio.fail_after(10):
        while len(lines := access_lines(caplog)) < 3:  # noqa: ASYNC110 (the journal writes)
            await trio.sleep(0.05)
    got = [(x["request_class"], x["agent_type"], x["route"], x["provider"]) for x in lines]
    assert got == [
        ("main", "", "", "main"),
        ("auxiliary", "", "aux", "cheap"),
        ("subagent", "Explore", "explore", "cheap"),
    ]
    assert {x["prompt_id"] for x in lines} == {"prompt-1"} and lines[2]["agent_id"] == "a-7"
    journal = proxy.server.state.journal
    with trio.fail_after(10):
        while journal.log_written < 3:  # noqa: ASYNC110 (a worker thread writes)
            await trio.sleep(0.05)
    db = open_database("", str(tmp_path), readonly=True)
    try:
        ledger = db.usage_sums("request_class", 0)
        logged = [db.get_log(r["request_id"]) for r in db.list_log(LogQuery())]
    finally:
        db.close()
    assert sorted(r["k"] for r in ledger) == ["auxiliary", "main", "subagent"]
    assert {row["prompt_id"] for row in logged if row} == {"prompt-1"}
    usage = await h1_request(proxy.port, "GET", "/admin/api/usage?window=1h&by=agent_type")
    keys = sorted(line["key"] for line in orjson.loads(usage.body)["lines"])
    assert usage.status == 200 and keys == ["", "Explore"]


@unless_in_ci(not CLAUDE.exists(), "Claude Code is not installed (make js-clients)")
@pytest.mark.timeout(150)
async def test_claude_code_s_auxiliary_requests_take_the_route_and_its_turns_do_not(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The real Claude Code with prompt hooks (on the user's prompt and on
    Stop): each hook is a side request it marks auxiliary, which the route
    sends to the cheap provider and model; its main turn stays where it
    was. The access line says which is which, and the main turn's prompt
    (Claude Code sends no prompt id with a hook's request)."""
    caplog.set_level(logging.INFO, logger="trioproxy.access")
    main, cheap, proxy = await two_providers(nursery, tmp_path)
    listeners = await nursery.start(partial(trio.serve_tcp, refuse, 0, host="127.0.0.1"))
    refuser = listeners[0].socket.getsockname()[1]
    hook = [{"hooks": [{"type": "prompt", "prompt": "Is this fine? $ARGUMENTS"}]}]
    settings = {"hooks": {"UserPromptSubmit": hook, "Stop": hook}}
    result = await claude(
        proxy.url,
        refuser,
        extra={"CLAUDE_CODE_GATEWAY_HINT_HEADERS": "1"},
        args=("--settings", orjson.dumps(settings).decode()),
    )
    assert result["is_error"] is False, result
    with trio.fail_after(10):
        while len(lines := access_lines(caplog)) < 3:  # noqa: ASYNC110 (the journal writes)
            await trio.sleep(0.05)
    got = sorted((x["request_class"], x["route"], x["provider"], x["model"]) for x in lines)
    assert got == [
        ("auxiliary", "aux", "cheap", "claude-haiku-4-5"),
        ("auxiliary", "aux", "cheap", "claude-haiku-4-5"),
        ("main", "", "main", "claude-opus-5-5"),
    ]
    assert main.requests == 1 and cheap.requests == 2
    asked = [orjson.loads(b) for b in cheap.bodies]
    assert all(a["model"] == "claude-haiku-4-5" for a in asked)
    assert "Is this fine?" in orjson.dumps(asked[0]["messages"]).decode()
    assert all(bool(x["prompt_id"]) == (x["request_class"] == "main") for x in lines)


@unless_in_ci(not CLAUDE.exists(), "Claude Code is not installed (make js-clients)")
@pytest.mark.timeout(150)
async def test_a_chat_provider_s_context_overflow_makes_claude_code_compact(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """A Chat Completions provider says the prompt is over its context in
    OpenAI's words; the proxy says it in Anthropic's (its words kept, the
    guide's token added), so Claude Code compacts and finishes the turn."""
    from trioproxy.fake.openai_app import OpenAIFake

    fake = OpenAIFake(tools=False)
    port = await nursery.start(Server(make_config()).serve_app, fake)
    key = tmp_path / "openai.key"
    key.write_text("sk-openai-fake-0123456789")
    provider = {
        "name": "gpt",
        "kind": "openai",
        "base_url": f"http://127.0.0.1:{port}/v1",
        "api_key_file": str(key),
        "auth": "bearer",
        "models": {"default": "gpt-4o"},
    }
    server = Server(make_config(providers=[provider]))
    proxy = Running(server, await nursery.start(server.serve))
    listeners = await nursery.start(partial(trio.serve_tcp, refuse, 0, host="127.0.0.1"))
    refuser = listeners[0].socket.getsockname()[1]
    home, cwd = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    cwd.mkdir()
    env = {"CLAUDE_CODE_GATEWAY_HINT_HEADERS": "1", "HOME": str(home)}
    first = await claude(proxy.url, refuser, extra=env, cwd=str(cwd))
    assert first["is_error"] is False, first
    before = len(fake.seen)
    fake.script.append(b"context-overflow")  # the next request only
    result = await claude(proxy.url, refuser, extra=env, cwd=str(cwd), args=("-c",))
    seen = [dict(s.headers) for s in list(fake.seen)[before:]]
    assert result["is_error"] is False, result
    classes = [
        (h.get(b"x-claude-code-request-class"), h.get(b"x-claude-code-compaction")) for h in seen
    ]
    assert classes[0] == (b"main", None) and (b"compaction", b"reactive") in classes[1:]
    assert classes[-1] == (b"main", None)  # the turn, asked again after compacting
    # What the proxy said, in Anthropic's words, the provider's kept (Claude
    # Code also knows OpenAI's wording; other providers' it may not).
    fake.script.append(b"context-overflow")
    body = orjson.dumps(
        {
            "model": "claude-opus-5-5",
            "max_tokens": 9,
            "messages": [{"role": "user", "content": "x"}],
        }
    )
    r = await h1_request(proxy.port, "POST", "/v1/messages", [], body)
    message = orjson.loads(r.body)["error"]["message"]
    assert r.status == 400 and message.startswith(
        "prompt is too long: 130532 tokens > 128000 maximum"
    )
    assert "This model's maximum context length" in message
    assert message.endswith("(capability_rejected: prompt_too_long)")
