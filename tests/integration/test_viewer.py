"""The conversation log's viewer: its JSON API (validated against
/openapi.json) after real traffic from the official SDK, and the page in a
real headless Chromium: the list with filters, search, a conversation with
a tool round trip and a thinking block. Screenshots are saved as test
artifacts (TRIOPROXY_TEST_ARTIFACTS, else test-artifacts/)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest
import trio

from tests.browser import Browser, require_chromium
from tests.helpers import Running, h1_request, make_config, start_fake
from tests.integration.test_openapi import check
from trioproxy.server import Server

ADMIN = "adm-0123456789abcdef"
AUTH = [("authorization", f"Bearer {ADMIN}")]
SESSION = "9d4c1f2e-viewer-session"
TOOLS = [
    {
        "name": "get_weather",
        "description": "the weather now",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
]


def artifacts() -> Path:
    where = Path(os.environ.get("TRIOPROXY_TEST_ARTIFACTS") or "test-artifacts")
    where.mkdir(parents=True, exist_ok=True)
    return where


def converse(base_url: str, api_key: str = "sk-ant-test") -> None:
    """A Claude Code-like session through the SDK: a streamed turn with
    thinking that calls a tool, the tool's result sent back, an answer;
    then an unrelated question and a request the upstream refuses."""
    with (
        anthropic.Anthropic(
            base_url=base_url,
            api_key=api_key,
            max_retries=0,
            default_headers={"x-claude-code-session-id": SESSION},
        ) as client,
        anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0) as other,
    ):
        _converse(client, other)


def _converse(client: anthropic.Anthropic, other: anthropic.Anthropic) -> None:
    question = {"role": "user", "content": "What is the weather in Paris?"}
    with client.messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        tools=TOOLS,  # type: ignore[arg-type]
        messages=[question],  # type: ignore[list-item]
    ) as stream:
        first = stream.get_final_message()
    call = next(b for b in first.content if b.type == "tool_use")
    client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        tools=TOOLS,  # type: ignore[arg-type]
        tool_choice={"type": "none"},
        messages=[
            question,  # type: ignore[list-item]
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},  # type: ignore[misc]
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": "18 C, sunny"}
                ],
            },
        ],
    )
    other.messages.create(
        model="claude-opus-4-7",
        max_tokens=50,
        messages=[{"role": "user", "content": "repeat after me: penguins are birds"}],
    )
    with pytest.raises(anthropic.RateLimitError):
        other.messages.create(
            model="claude-opus-4-7",
            max_tokens=50,
            messages=[{"role": "user", "content": "hello"}],
            extra_headers={"x-fake-fault": "429"},
        )


async def start(nursery: trio.Nursery, tmp_path: Path, **cfg: Any) -> Running:
    fake = await start_fake(nursery)
    server = Server(
        make_config(
            upstream__url=fake.url,
            upstream__api_key="sk-provider",
            **{"state_dir": str(tmp_path), "log_bodies": "all", **cfg},
        )
    )
    return Running(server, await nursery.start(server.serve))


async def logged(proxy: Running, n: int) -> None:
    journal = proxy.server.state.journal
    with trio.fail_after(10):
        while journal.log_written < n:  # noqa: ASYNC110 (a worker thread writes)
            await trio.sleep(0.05)


async def test_the_api_answers_as_described(nursery: trio.Nursery, tmp_path: Path) -> None:
    proxy = await start(nursery, tmp_path, admin__token=ADMIN)
    await trio.to_thread.run_sync(converse, proxy.url)
    await logged(proxy, 4)
    spec = orjson.loads((await h1_request(proxy.port, "GET", "/openapi.json")).body)

    async def get(target: str, status: int = 200) -> Any:
        r = await h1_request(proxy.port, "GET", target, AUTH)
        assert r.status == status, r.body
        path = target.split("?")[0]
        for template in ("/admin/api/requests/{id}/conversation", "/admin/api/requests/{id}"):
            if path.startswith("/admin/api/requests/") and path.count("/") == template.count("/"):
                path = template
        check(spec, path, "get", status, r.body)
        return orjson.loads(r.body)

    listed = await get("/admin/api/requests")
    assert listed["log_bodies"] == "all" and len(listed["requests"]) == 4
    assert [r["status"] for r in listed["requests"]] == [429, 200, 200, 200]  # newest first
    assert (await h1_request(proxy.port, "GET", "/admin/api/requests")).status == 401

    async def ids(query: str) -> list[str]:
        return [r["request_id"] for r in (await get("/admin/api/requests?" + query))["requests"]]

    everything = [r["request_id"] for r in listed["requests"]]
    assert await ids("status=error") == everything[:1]
    assert await ids("status=4xx&model=claude-opus-4-7") == everything[:1]
    assert await ids("q=PENGUINS") == everything[1:2]  # prompt and answer, any case
    assert await ids(f"session={SESSION}") == everything[2:]
    assert await ids("since=1h&limit=2") == everything[:2]
    page = await get("/admin/api/requests?limit=2")
    assert await ids(f"limit=2&before={page['next_before']}") == everything[2:]
    await get("/admin/api/requests?colour=red", 400)
    await get("/admin/api/requests?limit=0", 400)
    bad = await get("/admin/api/requests?since=soon", 400)
    assert bad["type"] == "error" and "since" in bad["error"]["message"]
    await get("/admin/api/requests/req_nothing", 404)

    first = await get(f"/admin/api/requests/{everything[3]}")
    assert first["stream"] == 1 and first["session"] == SESSION
    kinds = [b["type"] for b in first["message"]["content"]]
    assert kinds == ["thinking", "text", "tool_use"]  # the stream, rebuilt
    assert (
        isinstance(first["response_body"], str) and "event: message_stop" in first["response_body"]
    )
    assert dict(first["request_headers"])["authorization"] == "<redacted>"

    # The dashboard's ledger endpoints, against their schemas too.
    history = await get("/admin/api/history?window=1h")
    assert sum(p["requests"] for p in history["points"]) == 4 and history["step_s"] == 15
    assert [e["status"] for e in history["errors"]] == [429]
    assert history["errors"][0]["request_id"] == everything[0]  # the viewer's id: a link
    usage = await get("/admin/api/usage?window=24h&by=model")
    assert {x["key"] for x in usage["lines"]} == {"claude-sonnet-4-6", "claude-opus-4-7"}
    assert usage["total"]["requests"] == 4 and usage["total"]["cost_usd"] > 0
    await get("/admin/api/history?window=2d", 400)
    await get("/admin/api/usage?by=day", 400)
    by_provider = await get("/admin/api/usage?window=1h&by=provider")
    assert [x["key"] for x in by_provider["lines"]] == ["default"]

    talk = await get(f"/admin/api/requests/{everything[2]}/conversation")
    assert talk["session"] == SESSION and len(talk["turns"]) == 2
    one, two = talk["turns"]
    assert one["new_thread"] and not two["new_thread"]
    assert one["messages"][0]["content"] == "What is the weather in Paris?"
    assert [m["role"] for m in two["messages"]] == ["user"]  # only what the turn added
    assert two["messages"][0]["content"][0]["type"] == "tool_result"
    assert [b["type"] for b in two["answer"]["content"]] == ["thinking", "text"]
    assert talk["tokens"]["output_tokens"] == sum(
        t["tokens"]["output_tokens"] for t in talk["turns"]
    )


async def test_the_viewer_in_a_real_browser(nursery: trio.Nursery, tmp_path: Path) -> None:
    exe = require_chromium()
    proxy = await start(nursery, tmp_path)
    await trio.to_thread.run_sync(converse, proxy.url)
    await logged(proxy, 4)
    out = artifacts()
    page = f"{proxy.url}/admin/requests"

    def drive() -> dict[str, Any]:
        b = Browser(exe, width=1400, height=1000)
        try:
            seen: dict[str, Any] = {}
            b.open(page)
            b.wait_for("document.querySelectorAll('#rows tr').length === 4")
            seen["statuses"] = b.evaluate(
                "[...document.querySelectorAll('#rows tr td:nth-child(4)')].map(t => t.textContent)"
            )
            b.screenshot(out / "viewer-list.png")
            # Filters: the failures only.
            b.evaluate(
                "document.querySelector('[name=status]').value = 'error';"
                "document.querySelector('#filters button').click()"
            )
            b.wait_for("document.querySelectorAll('#rows tr').length === 1")
            seen["filtered"] = b.evaluate("document.querySelector('#rows tr').textContent")
            b.screenshot(out / "viewer-filtered.png")
            # Search in prompts and answers.
            b.evaluate(
                "document.querySelector('[name=status]').value = '';"
                "document.querySelector('#q').value = 'penguins';"
                "document.querySelector('#filters button').click()"
            )
            b.wait_for(
                "document.querySelectorAll('#rows tr').length === 1"
                " && document.querySelector('#rows tr').textContent.includes('opus')"
            )
            b.screenshot(out / "viewer-search.png")
            # The conversation: open the session's last request.
            b.evaluate(
                "document.querySelector('#q').value = '';"
                f"document.querySelector('[name=session]').value = '{SESSION}';"
                "document.querySelector('#filters button').click()"
            )
            b.wait_for("document.querySelectorAll('#rows tr').length === 2")
            b.evaluate("document.querySelector('#rows tr').click()")
            b.wait_for("document.querySelectorAll('#conversation .turn').length === 2")
            seen["conversation"] = b.evaluate(
                """(() => {
                  const c = document.getElementById('conversation');
                  return {
                    thinking: c.querySelectorAll('details.thinking').length,
                    thinkingOpen: c.querySelectorAll('details.thinking[open]').length,
                    toolUse: [...c.querySelectorAll('.tool-use b')].map(e => e.textContent),
                    toolResult: [...c.querySelectorAll('.tool-result')].map(e => e.textContent),
                    roles: [...c.querySelectorAll('.msg .role')].map(e => e.textContent),
                    heads: [...c.querySelectorAll('.turn .head')].map(e => e.textContent),
                  };
                })()"""
            )
            b.screenshot(out / "viewer-conversation.png")
            return seen
        finally:
            b.close()

    seen = await trio.to_thread.run_sync(drive)
    assert seen["statuses"] == ["429", "200", "200", "200"]
    assert "429" in seen["filtered"] and "claude-opus-4-7" in seen["filtered"]
    talk = seen["conversation"]
    assert talk["thinking"] == 2 and talk["thinkingOpen"] == 0  # collapsed
    assert talk["toolUse"] == ["tool_use get_weather"]
    assert len(talk["toolResult"]) == 1 and "18 C, sunny" in talk["toolResult"][0]
    assert talk["roles"] == ["user", "assistant", "user", "assistant"]
    assert all("cache read" in h for h in talk["heads"])  # cache reads and writes per turn
    for name in ("list", "filtered", "search", "conversation"):
        png = (out / f"viewer-{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000


async def test_without_a_log_the_api_says_so(nursery: trio.Nursery, tmp_path: Path) -> None:
    proxy = await start(nursery, tmp_path, log_bodies="off", usage__ledger=False)
    r = await h1_request(proxy.port, "GET", "/admin/api/requests")
    assert r.status == 404 and b"log_bodies is off" in r.body
    r = await h1_request(proxy.port, "GET", "/admin/api/history")
    assert r.status == 404 and b"usage.ledger" in r.body
    r = await h1_request(proxy.port, "POST", "/admin/api/requests", [], b"{}")
    assert r.status == 405 and orjson.loads(r.body)["type"] == "error"
