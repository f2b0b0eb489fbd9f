"""The usage ledger through the proxy: rows written off the loop in batches,
matching the metrics; `trioproxy usage` as a real process reading it while
the proxy runs; queued rows written at shutdown; retention applied."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import trio

from tests.helpers import Running, h1_request, make_config, start_fake
from tests.unit.test_ledger_report import row
from trioproxy.accounting.journal import Journal, Keeping
from trioproxy.accounting.record import RequestRecord
from trioproxy.db.open import open_database
from trioproxy.server import Server

ALICE, BOB = "alice-secret-0123456789", "bob-secret-0123456789"
BODY = (
    b'{"model":"claude-sonnet-4-5","max_tokens":30,%s"messages":[{"role":"user","content":"hi"}]}'
)


async def test_rows_match_the_metrics_and_the_cli_reads_them_live(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    fake = await start_fake(nursery)
    server = Server(
        make_config(
            upstream__url=fake.url,
            upstream__api_key="sk-x",
            auth__secrets=f"alice:{ALICE},bob:{BOB}",
            state_dir=str(tmp_path),
        )
    )
    proxy = Running(server, await nursery.start(server.serve))
    sent = {"alice": 0, "bob": 0}
    for i in range(9):
        caller, key = ("alice", ALICE) if i % 3 else ("bob", BOB)
        stream = b'"stream":true,' if i % 2 else b""
        r = await h1_request(
            proxy.port, "POST", "/v1/messages", [("x-api-key", key)], BODY % stream
        )
        assert r.status == 200
        sent[caller] += 1
    fault = [("x-api-key", BOB), ("x-fake-fault", "400")]
    assert (await h1_request(proxy.port, "POST", "/v1/messages", fault, BODY % b"")).status == 400
    sent["bob"] += 1
    journal = server.state.journal
    with trio.fail_after(5):  # batches go out within a fraction of a second
        while journal.written < 10:  # noqa: ASYNC110 (a worker thread writes: no event to wait on)
            await trio.sleep(0.05)

    env = {**os.environ, "TRIOPROXY_STATE_DIR": str(tmp_path)}
    result = await trio.run_process(
        [sys.executable, "-m", "trioproxy", "usage", "--by", "caller", "--format", "json"],
        capture_stdout=True,
        env=env,
    )
    doc = json.loads(result.stdout)
    lines = {x["key"]: x for x in doc["lines"]}
    assert {k: v["requests"] for k, v in lines.items()} == sent
    assert lines["bob"]["errors"] == 1 and lines["alice"]["errors"] == 0
    tokens = {c: 0 for c in ("input", "cache_creation_input", "cache_read_input", "output")}
    for t in server.state.metrics.snapshot()["tokens"]:
        tokens[t["class"]] += t["count"]
    for cls, n in tokens.items():
        assert doc["total"][f"{cls}_tokens"] == n, cls  # the ledger agrees with /metrics
    assert doc["total"]["output_tokens"] > 0 and doc["total"]["cost_usd"] > 0

    table = await trio.run_process(
        [sys.executable, "-m", "trioproxy", "usage", "--since", "1h"], capture_stdout=True, env=env
    )
    assert b"claude-sonnet-4-5" in table.stdout and b"total" in table.stdout
    bad = await trio.run_process(
        [sys.executable, "-m", "trioproxy", "usage", "--since", "soon"],
        capture_stderr=True,
        env=env,
        check=False,
    )
    assert bad.returncode == 1 and b"--since" in bad.stderr


async def test_queued_rows_are_written_at_shutdown_and_old_rows_pruned(tmp_path: Path) -> None:
    old = time.time() - 100 * 86400
    db = open_database("", str(tmp_path))
    db.insert_usage(
        [row(old, "old", "m").values(), row(time.time() - 86400, "recent", "m").values()]
    )
    db.close()
    journal = Journal(
        opener=lambda: open_database("", str(tmp_path)),
        keeping=Keeping(ledger=True, ledger_days=90),
    )
    cfg = make_config()
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.serve)  # prunes at start
        for i in range(3):
            journal.add(RequestRecord(f"req_{i}", "POST", "/v1/messages", "h1", status=200), cfg)
        nursery.cancel_scope.cancel()  # before the batch window is up
    db = open_database("", str(tmp_path))
    try:
        callers = [r["caller"] for r in db.usage_rows(0)]
    finally:
        db.close()
    assert callers == ["recent", "-", "-", "-"]  # "old" was past 90 days
