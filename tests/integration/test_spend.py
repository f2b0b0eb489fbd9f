"""What Claude Code's turns cost, through the proxy: its default model
(claude-opus-5-5) is priced by the price database, so the access line, the
ledger and `trioproxy usage` show one figure, not 0; and a caller's USD
budget stops it once spent."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from functools import partial
from pathlib import Path

import orjson
import pytest
import trio

from tests.helpers import Running, make_config, unless_in_ci
from tests.integration.test_auth import access_lines
from tests.integration.test_claude_code import CLAUDE, claude, refuse
from trioproxy.db.open import open_database
from trioproxy.fake.app import FakeUpstream
from trioproxy.server import Server

SECRET = "sk-team-alice-0123456789abcdef"
DIGEST = hashlib.sha256(SECRET.encode()).hexdigest()


@unless_in_ci(not CLAUDE.exists(), "Claude Code is not installed (make js-clients)")
@pytest.mark.timeout(150)
async def test_claude_code_s_turns_cost_what_the_database_says_and_a_usd_budget_stops_it(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trioproxy.access")
    fake = FakeUpstream(tools=False)  # answers in text: one turn, no tool loop
    fake_port = await nursery.start(Server(make_config()).serve_app, fake)
    key = tmp_path / "provider.key"
    key.write_text("sk-ant-api03-provider-key")
    callers = [
        {
            "name": "alice",
            "secret_sha256": [DIGEST],
            "budget": {"usd": 0.01, "window": "daily"},  # less than one turn of opus-5-5
        }
    ]
    server = Server(
        make_config(
            upstream__url=f"http://127.0.0.1:{fake_port}",
            upstream__api_key_file=str(key),
            callers=callers,
            state_dir=str(tmp_path),
        )
    )
    proxy = Running(server, await nursery.start(server.serve))
    listeners = await nursery.start(partial(trio.serve_tcp, refuse, 0, host="127.0.0.1"))
    refuser = listeners[0].socket.getsockname()[1]

    first = await claude(proxy.url, refuser, api_key=SECRET)
    assert first["is_error"] is False, first
    with trio.fail_after(10):
        while not (lines := access_lines(caplog)) or server.state.journal.written < 1:  # noqa: ASYNC110
            await trio.sleep(0.05)
    (turn,) = lines
    assert turn["model"] == "claude-opus-5-5" and turn["input_tokens"] > 0
    # $4 / $20 per million input / output tokens, and the cache's own rates.
    assert turn["cost_usd"] > turn["input_tokens"] * 4 / 1e6
    db = open_database("", str(tmp_path), readonly=True)
    try:
        (row,) = db.usage_rows(0)
    finally:
        db.close()
    assert row["cost_usd"] == pytest.approx(turn["cost_usd"])
    usage = await trio.run_process(
        [sys.executable, "-m", "trioproxy", "usage", "--by", "model", "--format", "json"],
        capture_stdout=True,
        env={**os.environ, "TRIOPROXY_STATE_DIR": str(tmp_path)},
    )
    report = json.loads(usage.stdout)
    (line,) = report["lines"]
    assert line["key"] == "claude-opus-5-5" and line["cost_usd"] == pytest.approx(
        turn["cost_usd"], abs=1e-6
    )
    assert server.state.metrics.spend["alice"] == pytest.approx(turn["cost_usd"])

    # The budget is spent: the next turn is refused (a 429 whose retry-after,
    # the day's end, is over Claude Code's 60 s: it stops at once), never sent.
    asked = fake.requests
    second = await claude(proxy.url, refuser, api_key=SECRET)
    assert second["is_error"] is True and "budget" in orjson.dumps(second).decode()
    assert fake.requests == asked
