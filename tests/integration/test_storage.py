"""The storage contract: the same tests on SQLite and on a real Postgres
(tests/services.py starts one), so both backends keep the ledger and the
conversation log alike."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import zstandard

from tests.unit.test_ledger_report import row
from trioproxy.accounting.record import RequestRecord
from trioproxy.accounting.usage import Usage
from trioproxy.convlog.capture import Capture
from trioproxy.convlog.rows import RowMaker
from trioproxy.convlog.views import detail
from trioproxy.db.base import Database, LogQuery, StorageError
from trioproxy.db.open import FILENAME, open_database
from trioproxy.db.schema import LATEST, LOG_COLUMNS

T0 = 1_795_000_000.0

SSE = (
    b"event: message_start\ndata: "
    b'{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant",'
    b'"model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,'
    b'"usage":{"input_tokens":7,"output_tokens":1}}}\n\n'
    b"event: content_block_start\ndata: "
    b'{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
    b"event: content_block_delta\ndata: "
    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Penguins waddle"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b"event: message_delta\ndata: "
    b'{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
    b'"usage":{"output_tokens":3}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        db = open_database("", str(tmp_path))
    else:
        db = open_database(request.getfixturevalue("postgres_url"), "")
    try:
        yield db
    finally:
        db.close()


def log_row(
    request_id: str,
    ts: float,
    *,
    caller: str = "alice",
    model: str = "claude-sonnet-4-5",
    status: int = 200,
    session: str = "",
    prompt: str = "hello",
    answer: bytes = SSE,
    route: str = "",
) -> tuple[object, ...]:
    record = RequestRecord(request_id, "POST", "/v1/messages", "h1", started=ts)
    record.caller, record.status, record.session_id, record.route = caller, status, session, route
    record.provider, record.model_requested, record.stream = "anthropic", model, True
    record.usage = Usage(model=model, input_tokens=7, output_tokens=3)
    body = orjson.dumps(
        {"model": model, "messages": [{"role": "user", "content": prompt}], "stream": True}
    )
    capture = Capture(1 << 20, [(b"x-api-key", b"sk-ant-secret"), (b"x-app", b"cli")])
    capture.keep_request(body)
    capture.response_headers = [(b"content-type", b"text/event-stream")]
    capture.keep_response(answer)
    return RowMaker().row(record, capture)


def test_migrations_are_versioned_and_idempotent(database: Database, tmp_path: Path) -> None:
    assert database.version() == LATEST and database.current
    assert database.migrate() == LATEST  # again: nothing to do
    rows = database._fetch("SELECT COUNT(*) AS n FROM schema_version")
    assert rows[0]["n"] == 1


def test_a_ledger_from_before_versioning_is_taken_over(tmp_path: Path) -> None:
    old = sqlite3.connect(tmp_path / FILENAME)
    old.executescript(
        "CREATE TABLE requests (ts REAL NOT NULL, request_id TEXT NOT NULL, caller TEXT NOT NULL,"
        " provider TEXT NOT NULL, model TEXT NOT NULL, model_requested TEXT NOT NULL,"
        " status INTEGER NOT NULL, stream INTEGER NOT NULL, input_tokens INTEGER NOT NULL,"
        " cache_creation_input_tokens INTEGER NOT NULL, cache_read_input_tokens INTEGER NOT NULL,"
        " output_tokens INTEGER NOT NULL, duration_s REAL NOT NULL, complete INTEGER NOT NULL,"
        " error INTEGER NOT NULL);"
    )
    old.execute(
        "INSERT INTO requests VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        row(T0, "x", "m").values()[:15],  # the columns of before versioning
    )
    old.commit()
    old.close()
    db = open_database("", str(tmp_path))
    try:
        assert db.version() == LATEST
        assert [r["caller"] for r in db.usage_rows(0)] == ["x"]
    finally:
        db.close()


def test_the_ledger(database: Database) -> None:
    database.insert_usage(
        [
            row(T0, "alice", "claude-sonnet-4-5", i=10, o=5).values(),
            row(T0 + 1, "alice", "claude-opus-4-1", i=1, o=1).values(),
            row(T0 + 86400, "bob", "claude-sonnet-4-5", status=529).values(),
            row(T0 - 100 * 86400, "carol", "m").values(),
        ]
    )
    by_caller = {
        (r["k"], r["model"]): (r["n"], r["errors"], r["input_tokens"])
        for r in database.usage_sums("caller", T0 - 10)
    }
    assert by_caller == {
        ("alice", "claude-sonnet-4-5"): (1, 0, 10),
        ("alice", "claude-opus-4-1"): (1, 0, 1),
        ("bob", "claude-sonnet-4-5"): (1, 1, 0),
    }
    days = sorted({r["k"] for r in database.usage_sums("day", T0 - 10)})
    assert days == ["2026-11-18", "2026-11-19"]  # UTC dates, the same text on both
    assert database.prune_usage(T0 - 10) == 1
    assert [r["caller"] for r in database.usage_rows(0)] == ["alice", "alice", "bob"]


def test_the_log_filters_pages_and_searches(database: Database) -> None:
    database.insert_log(
        [
            log_row("r1", T0, session="s1", prompt="Where do penguins live?"),
            log_row("r2", T0 + 1, session="s1", prompt="And polar BEARS?", route="cheap"),
            log_row("r3", T0 + 2, caller="bob", status=429, answer=b'{"type":"error"}'),
            log_row("r4", T0 + 3, caller="bob", model="claude-opus-4-1", status=529),
            log_row("r5", T0 + 4, prompt="100% sure_thing"),
        ]
    )
    database.insert_log([log_row("r1", T0 + 50, caller="mallory")])  # a replayed id: kept as first

    def ids(**filters: object) -> list[str]:
        return [r["request_id"] for r in database.list_log(LogQuery(**filters))]  # type: ignore[arg-type]

    assert ids() == ["r5", "r4", "r3", "r2", "r1"]
    assert ids(caller="bob") == ["r4", "r3"]
    assert ids(model="claude-opus-4-1") == ["r4"]
    assert ids(status="429") == ["r3"] and ids(status="5xx") == ["r4"]
    assert ids(status="error") == ["r4", "r3"] and ids(status="ok") == ["r5", "r2", "r1"]
    assert ids(session="s1") == ["r2", "r1"] and ids(route="cheap") == ["r2"]
    assert ids(since=T0 + 1, until=T0 + 3) == ["r3", "r2"]
    assert ids(limit=2) == ["r5", "r4"] and ids(limit=2, before=T0 + 3) == ["r3", "r2"]
    assert ids(provider="anthropic") == ["r5", "r4", "r3", "r2", "r1"]
    assert ids(provider="other") == []
    # Search: prompts and answers, case-insensitive, LIKE's wildcards literal.
    assert ids(text="penguins") == ["r5", "r4", "r2", "r1"]  # every SSE answer says it
    assert ids(text="polar bears") == ["r2"]
    assert ids(text="100%") == ["r5"] and ids(text="e_t") == ["r5"]
    assert ids(text="sur_") == []  # "_" is no wildcard: "sure" does not match
    summary = database.list_log(LogQuery(caller="bob"))[0]
    assert "request_body" not in summary and summary["status"] == 529


def test_a_stored_entry_reads_back_whole(database: Database) -> None:
    database.insert_log([log_row("r1", T0, session="s1")])
    got = database.get_log("r1")
    assert got is not None and set(got) == set(LOG_COLUMNS)
    unzstd = zstandard.ZstdDecompressor()
    assert unzstd.decompress(got["response_body"]) == SSE  # bytes back, on both backends
    request = orjson.loads(unzstd.decompress(got["request_body"]))
    assert request["messages"][0]["content"] == "hello"
    assert got["message"] is None  # the Message is rebuilt when read
    message = detail(got, unzstd)["message"]
    assert message["content"] == [{"type": "text", "text": "Penguins waddle"}]
    assert message["usage"]["output_tokens"] == 3  # message_delta's usage is cumulative
    headers = dict(orjson.loads(got["request_headers"]))
    assert headers == {"x-api-key": "<redacted>", "x-app": "cli"}
    assert got["response_bytes"] == len(SSE) and not got["response_truncated"]
    assert database.get_log("nope") is None


def test_sessions_export_and_retention(database: Database) -> None:
    database.insert_log(
        [
            log_row("a", T0, session="s1"),
            log_row("b", T0 + 1, session="s2"),
            log_row("c", T0 + 2, session="s1"),
            log_row("old", T0 - 30 * 86400, session="s1"),
        ]
    )
    assert [r["request_id"] for r in database.session_log("s1")] == ["old", "a", "c"]
    assert [r["request_id"] for r in database.session_log("s1", limit=2)] == ["a", "c"]
    exported = [r["request_id"] for r in database.export_log(T0 - 1, batch=2)]
    assert exported == ["a", "b", "c"]
    assert database.prune_log(T0 - 86400) == 1
    assert [r["request_id"] for r in database.export_log(0)] == ["a", "b", "c"]


def test_errors_name_the_database_and_never_a_password(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no database at"):
        open_database("", str(tmp_path / "nothing"), readonly=True)
    with pytest.raises(StorageError) as caught:
        open_database("postgresql://u:hunter2@127.0.0.1:1/x?connect_timeout=2", "")
    assert "hunter2" not in str(caught.value) and "u@127.0.0.1:1" in str(caught.value)


def test_the_dashboards_history(database: Database) -> None:
    def at(ts: float, **kw: Any) -> tuple[object, ...]:
        return row(ts, "alice", "claude-sonnet-4-6", **kw).values()

    base = 1_795_000_020.0  # a multiple of 10 and of 60
    database.insert_usage(
        [
            at(base + 1, i=100, o=10, duration=0.02),
            at(base + 2, i=50, o=5, duration=0.4),
            at(base + 3, status=529, duration=3.0),
            at(base + 12, status=401, origin="proxy", duration=0.001),
            at(base + 13, status=429, origin="proxy", duration=0.001),
            at(base - 100, i=999),  # before the window
        ]
    )
    bounds = (0.01, 0.1, 1.0, 10.0)
    buckets = {r["b"]: r for r in database.history(base, 10, bounds)}
    assert sorted(buckets) == [179_500_002, 179_500_003]  # ts // 10, floor on both
    first, second = buckets[179_500_002], buckets[179_500_003]
    assert (first["n"], first["errors"], first["proxy_errors"]) == (3, 1, 0)
    assert (first["tin"], first["tout"]) == (150, 15)
    assert [first[f"le_{i}"] for i in range(4)] == [0, 1, 2, 3]  # a cumulative histogram
    # A 401 is not an error on the dashboard (the caller's mistake); the proxy's 429 is.
    assert (second["n"], second["errors"], second["proxy_errors"]) == (2, 1, 1)
    codes = [(r["status"], r["origin"], r["count"]) for r in database.status_counts(base)]
    assert codes == [
        (200, "upstream", 2),
        (401, "proxy", 1),
        (429, "proxy", 1),
        (529, "upstream", 1),
    ]
    recent = database.recent_errors(base, 2)
    assert [(r["status"], r["origin"]) for r in recent] == [(429, "proxy"), (401, "proxy")]
