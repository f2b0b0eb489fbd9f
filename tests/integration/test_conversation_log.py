"""The conversation log through the proxy (``log_bodies``): what is stored
is what the upstream received and what came back; with scrubbing on no
secret reaches the database (SQLite file or Postgres tables, read raw and
decompressed); ``errors`` keeps failures only; retention; a full queue
drops log rows, never requests."""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
import zstandard

from tests.helpers import Running, h1_request, make_config, start_fake
from tests.integration.test_scrub_proxy import GH, KEY, PEM, request
from tests.integration.test_scrub_proxy import (
    request as messages_body,
)  # where `request` is pytest's
from trioproxy.accounting.journal import CAPTURE_OVERHEAD, FLUSH_EVERY, Journal, Keeping
from trioproxy.accounting.record import RequestRecord
from trioproxy.config import Config, load_config
from trioproxy.convlog.capture import Capture
from trioproxy.convlog.rows import RowMaker
from trioproxy.convlog.views import detail
from trioproxy.db.base import Database, LogQuery
from trioproxy.db.open import FILENAME, open_database
from trioproxy.db.sqlite import SQLiteDB
from trioproxy.server import Server

UNZSTD = zstandard.ZstdDecompressor()
SECRET_KEY = "sk-ant-api03-" + "x" * 20


async def start(nursery: trio.Nursery, fake: Running, **cfg: Any) -> Running:
    server = Server(make_config(upstream__url=fake.url, upstream__api_key="sk-provider-key", **cfg))
    return Running(server, await nursery.start(server.serve))


async def written(proxy: Running, n: int) -> None:
    journal = proxy.server.state.journal
    with trio.fail_after(10):  # batches go out within a fraction of a second
        while journal.log_written < n:  # noqa: ASYNC110 (a worker thread writes)
            await trio.sleep(0.05)


def body_of(row: dict[str, Any], column: str) -> bytes:
    blob = row[column]
    return b"" if blob is None else UNZSTD.decompress(bytes(blob))


def logged_entries(tmp_path: Path, url: str = "") -> list[dict[str, Any]]:
    """Every logged request, whole, oldest first, read as the viewer reads."""
    db = open_database(url, str(tmp_path), readonly=True)
    try:
        entries = [db.get_log(r["request_id"]) for r in reversed(db.list_log(LogQuery()))]
    finally:
        db.close()
    assert all(e is not None for e in entries)
    return [e for e in entries if e is not None]


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    db = open_database("", str(tmp_path))
    yield db
    db.close()


async def test_stored_bodies_are_what_the_upstream_got_and_the_client_got(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    fake = await start_fake(nursery)
    assert fake.fake is not None
    proxy = await start(nursery, fake, state_dir=str(tmp_path), log_bodies="all")
    heads = [("x-api-key", SECRET_KEY), ("x-claude-code-session-id", "sess-1")]
    got: dict[str, bytes] = {}
    sent: dict[str, str] = {}
    for name, body in (
        ("json", request("hi there")),
        ("sse", request("stream please", stream=True)),
        ("error", request("fail")),
    ):
        extra = [("x-fake-fault", "400")] if name == "error" else []
        r = await h1_request(proxy.port, "POST", "/v1/messages?beta=true", heads + extra, body)
        assert r.status == (400 if name == "error" else 200)
        got[name] = r.body
        sent[name] = fake.fake.seen[-1].body_sha256
    await written(proxy, 3)
    entries = logged_entries(tmp_path)
    assert len(entries) == 3
    for name, entry in zip(("json", "sse", "error"), entries, strict=True):
        assert entry is not None
        request_body = body_of(entry, "request_body")
        assert hashlib.sha256(request_body).hexdigest() == sent[name]  # as the upstream got it
        assert body_of(entry, "response_body") == got[name]  # as the client got it
        assert entry["session"] == "sess-1" and entry["path"] == "/v1/messages?beta=true"
        headers = dict(orjson.loads(entry["request_headers"]))
        assert headers["x-api-key"] == "<redacted>" and SECRET_KEY not in entry["request_headers"]
        assert entry["provider"] == "default" and entry["time_to_headers_s"] is not None
    json_entry, sse_entry, error_entry = entries
    # `trioproxy log export`: the same entries, as JSON Lines, oldest first.
    exported = await _export(
        ["--since", "1d", "--format", "jsonl"], TRIOPROXY_STATE_DIR=str(tmp_path)
    )
    lines = [orjson.loads(x) for x in exported.splitlines()]
    assert [x["request_id"] for x in lines] == [e["request_id"] for e in entries]
    assert lines[1]["message"]["content"][0]["type"] == "text"
    assert lines[0]["request_body"]["messages"][0]["content"] == "hi there"
    assert lines[2]["status"] == 400 and lines[2]["response_body"]["type"] == "error"
    assert json_entry["status"] == 200 and json_entry["message"] is None  # JSON is its own message
    assert json_entry["output_tokens"] > 0 and json_entry["error"] == 0
    assert sse_entry["message"] is None  # stored as its bytes, rebuilt when read:
    message = detail(sse_entry, UNZSTD)["message"]
    assert message["type"] == "message" and message["content"][0]["type"] == "text"
    assert message["usage"]["output_tokens"] == sse_entry["output_tokens"] > 0
    assert sse_entry["stream"] == 1 and sse_entry["time_to_first_token_s"] is not None
    assert error_entry["status"] == 400 and error_entry["error"] == 1
    assert error_entry["origin"] == "upstream"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_with_scrubbing_no_secret_reaches_the_database(
    nursery: trio.Nursery, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else ""
    fake = await start_fake(nursery)
    proxy = await start(
        nursery,
        fake,
        state_dir=str(tmp_path),
        log_bodies="all",
        storage__database_url=url,
        scrub__mode="pseudonymize",
        scrub__hmac_key=KEY,
    )
    said = f"repeat after me: token {GH}, key {PEM}, mail bob@example.com"
    secrets = [GH, "MHcCAQEEIByz", "bob@example.com", SECRET_KEY]
    heads = [("authorization", f"Bearer {SECRET_KEY}")]
    for extra in ({}, {"stream": True}):
        r = await h1_request(
            proxy.port, "POST", "/v1/messages", heads, messages_body(said, **extra)
        )
        assert r.status == 200 and GH.encode() in r.body  # the client got its values back
    await written(proxy, 2)
    entries = logged_entries(tmp_path, url)
    assert len(entries) == 2
    for entry in entries:
        assert entry is not None
        assert b"<GITHUB_TOKEN_1>" in body_of(entry, "request_body")  # the scrubbed request
        assert b"<GITHUB_TOKEN_1>" in body_of(entry, "response_body")  # before restore
        stored = b"\n".join(
            body_of(entry, c) if c in _BLOBS else str(v).encode() for c, v in entry.items()
        )
        for secret in secrets:
            assert secret.encode() not in stored, secret
    raw = await _raw_storage(tmp_path, url)
    for secret in secrets:
        assert secret.encode() not in raw, secret
    env = {"TRIOPROXY_DATABASE_URL": url} if url else {"TRIOPROXY_STATE_DIR": str(tmp_path)}
    exported = await _export(["--since", "1h"], **env)
    assert len(exported.splitlines()) == 2 and b"<GITHUB_TOKEN_1>" in exported
    for secret in secrets:
        assert secret.encode() not in exported, secret


async def _export(args: list[str], **env: str) -> bytes:
    result = await trio.run_process(
        [sys.executable, "-m", "trioproxy", "log", "export", *args],
        capture_stdout=True,
        capture_stderr=True,
        env={**os.environ, **env},
    )
    return bytes(result.stdout)


async def test_export_errors_are_one_line(tmp_path: Path) -> None:
    for args, words in (
        (["--since", "soon"], b"--since"),
        (["--state-dir", str(tmp_path / "none")], b"no database at"),
    ):
        result = await trio.run_process(
            [sys.executable, "-m", "trioproxy", "log", "export", *args],
            capture_stderr=True,
            check=False,
        )
        assert result.returncode == 1 and words in result.stderr
        assert b"Traceback" not in result.stderr


_BLOBS = ("request_body", "response_body", "message")


async def _raw_storage(tmp_path: Path, url: str) -> bytes:
    """Every byte the database keeps: the SQLite files as they are on disk,
    or every Postgres table dumped as text."""
    if not url:
        files = await trio.to_thread.run_sync(lambda: list(tmp_path.glob(FILENAME + "*")))
        assert files
        return b"".join([await trio.Path(p).read_bytes() for p in files])
    import psycopg

    out = []
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
        for (table,) in tables:
            for values in conn.execute(f'SELECT * FROM "{table}"').fetchall():
                out.append(repr(values).encode())
    return b"\n".join(out)


async def test_errors_mode_keeps_failures_only(nursery: trio.Nursery, tmp_path: Path) -> None:
    fake = await start_fake(nursery)
    proxy = await start(
        nursery,
        fake,
        state_dir=str(tmp_path),
        log_bodies="errors",
        auth__secrets="alice:alice-secret-0123456789",
    )
    ok = [("x-api-key", "alice-secret-0123456789")]
    assert (await h1_request(proxy.port, "POST", "/v1/messages", ok, request("a"))).status == 200
    limited = [*ok, ("x-fake-fault", "429")]
    r = await h1_request(proxy.port, "POST", "/v1/messages", limited, request("b"))
    assert r.status == 429
    wrong = [("x-api-key", "not-a-caller")]
    r = await h1_request(proxy.port, "POST", "/v1/messages", wrong, request("c"))
    assert r.status == 401
    await written(proxy, 2)
    await trio.sleep(0.5)  # a batch later: the 200 was not written either
    rows = logged_entries(tmp_path)
    assert sorted((x["status"], x["origin"]) for x in rows) == [(401, "proxy"), (429, "upstream")]
    own = next(x for x in rows if x["status"] == 401)
    answer = orjson.loads(body_of(own, "response_body"))  # the proxy's own error, as sent
    assert answer["error"]["type"] == "authentication_error"


async def test_retention_and_a_full_queue(tmp_path: Path) -> None:
    db = open_database("", str(tmp_path))
    from tests.integration.test_storage import log_row

    db.insert_log([log_row("ancient", 1_000_000_000.0), log_row("recent", 4_000_000_000.0)])
    db.close()
    journal = Journal(
        opener=lambda: open_database("", str(tmp_path)),
        keeping=Keeping(log=True, log_days=14),
        log_rows=RowMaker(),
        max_log_bytes=2 * (1200 + CAPTURE_OVERHEAD) + 100,  # two rows' worth
    )
    cfg = make_config()
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.serve)  # prunes at start
        for i in range(3):
            capture = Capture(1 << 20, [])
            capture.keep_request(b"x" * 1200)
            record = RequestRecord(f"req_{i}", "POST", "/v1/messages", "h1", status=200)
            journal.add(record, cfg, capture)
        nursery.cancel_scope.cancel()  # before the batch window is up: written at close
    assert journal.log_counts() == {"written": 2, "dropped": 1, "lost": 0}
    assert journal.written == 3  # the request itself was not dropped: its line went out
    db = open_database("", str(tmp_path))
    try:
        ids = [r["request_id"] for r in db.list_log(LogQuery())]
    finally:
        db.close()
    # Newest first: "recent" is dated 2096; req_2's row was the one dropped.
    assert ids == ["recent", "req_1", "req_0"]


class SlowLog(SQLiteDB):
    """A log database whose writes wait until the test lets them through."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.migrate()
        self.go = threading.Event()
        self.writing = threading.Event()

    def insert_log(self, rows: Any) -> None:
        self.writing.set()
        self.go.wait(10)
        super().insert_log(rows)


async def test_log_rows_count_against_the_bound_until_written(tmp_path: Path) -> None:
    """The pending log rows' memory is held until their batch is written,
    not until it is handed to the writer thread: while a slow write goes
    on, new rows find the bound as full as it is, and are dropped."""
    slow = SlowLog(str(tmp_path / FILENAME))
    journal = Journal(
        opener=lambda: slow,
        keeping=Keeping(log=True, log_days=14),
        log_rows=RowMaker(),
        max_log_bytes=2 * (1200 + CAPTURE_OVERHEAD) + 100,  # two rows' worth
    )
    cfg = make_config()

    def add(i: int) -> None:
        capture = Capture(1 << 20, [])
        capture.keep_request(b"x" * 1200)
        journal.add(
            RequestRecord(f"req_{i}", "POST", "/v1/messages", "h1", status=200), cfg, capture
        )

    async with trio.open_nursery() as nursery:
        await nursery.start(journal.serve)
        add(0)
        add(1)
        with trio.fail_after(10):
            await trio.to_thread.run_sync(slow.writing.wait)  # the batch is being written
        add(2)  # the two in the writer still hold their place: no room
        slow.go.set()
        for _ in range(100):  # then the room is back
            if journal.log_counts()["written"] == 2:
                break
            await trio.sleep(0.05)
        add(3)
        nursery.cancel_scope.cancel()
    assert journal.log_counts() == {"written": 3, "dropped": 1, "lost": 0}


async def test_a_burst_of_large_rows_starts_the_writer_early(tmp_path: Path) -> None:
    """Rows arriving faster than the batching window allows for the bound
    (ten per window, room for eight) are written, not dropped: a quarter of
    the bound filled starts the writer."""
    journal = Journal(
        opener=lambda: open_database("", str(tmp_path)),
        keeping=Keeping(log=True, log_days=14),
        log_rows=RowMaker(),
        max_log_bytes=8 * (1200 + CAPTURE_OVERHEAD),
    )
    cfg = make_config()
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.serve)
        for i in range(40):
            capture = Capture(1 << 20, [])
            capture.keep_request(b"x" * 1200)
            record = RequestRecord(f"req_{i}", "POST", "/v1/messages", "h1", status=200)
            journal.add(record, cfg, capture)
            await trio.sleep(FLUSH_EVERY / 10)
        nursery.cancel_scope.cancel()
    assert journal.log_counts() == {"written": 40, "dropped": 0, "lost": 0}


async def test_a_postgres_outage_loses_rows_never_requests(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Never worse than direct: with the database down, requests are served
    as before; the rows of that time are counted lost; when it is back the
    journal opens it again and writes."""
    from tests.services import PostgresServer, postgres_bin

    bindir = postgres_bin()
    assert bindir is not None, "Postgres is not installed (apt-get install postgresql)"
    pg = PostgresServer(bindir)
    await trio.to_thread.run_sync(pg.start)
    try:
        url = pg.url()
        fake = await start_fake(nursery)
        proxy = await start(nursery, fake, log_bodies="all", storage__database_url=url)
        ok = await h1_request(proxy.port, "POST", "/v1/messages", [], request("before"))
        assert ok.status == 200
        await written(proxy, 1)
        await trio.to_thread.run_sync(pg.halt)
        for i in range(3):  # served while the database is down
            r = await h1_request(proxy.port, "POST", "/v1/messages", [], request(f"during {i}"))
            assert r.status == 200
        journal = proxy.server.state.journal
        with trio.fail_after(10):
            while journal.log_counts()["lost"] < 3:  # noqa: ASYNC110 (a worker thread writes)
                await trio.sleep(0.05)
        viewer = await h1_request(proxy.port, "GET", "/admin/api/requests")
        assert viewer.status == 503 and orjson.loads(viewer.body)["error"]["type"] == "api_error"

        # The journal comes back by itself (here every 0.2 s; 30 s by default).
        own = Journal(
            opener=lambda: open_database(url, ""),
            keeping=Keeping(ledger=True, log=True),
            log_rows=RowMaker(),
            reopen_every=0.2,
        )
        cfg = make_config()
        async with trio.open_nursery() as inner:
            await inner.start(own.serve)  # the database is down: it starts anyway
            own.add(RequestRecord("req_lost", "POST", "/v1/messages", "h1", status=200), cfg)
            await trio.sleep(0.5)
            await trio.to_thread.run_sync(pg.start)
            own.add(RequestRecord("req_kept", "POST", "/v1/messages", "h1", status=200), cfg)
            with trio.fail_after(10):
                while own.written < 2 or own.rows_lost < 1:  # noqa: ASYNC110
                    await trio.sleep(0.05)
                while True:  # the reopened database has the second row
                    db = await trio.to_thread.run_sync(lambda: open_database(url, ""))
                    ids = [r["request_id"] for r in db.usage_rows(0)]
                    db.close()
                    if "req_kept" in ids:
                        break
                    own.add(RequestRecord("req_more", "POST", "/v1/messages", "h1"), cfg)
                    await trio.sleep(0.3)
            inner.cancel_scope.cancel()
        assert "req_lost" not in ids
        viewer = await h1_request(proxy.port, "GET", "/admin/api/requests")
        assert viewer.status == 200  # the viewer's connection, opened again
    finally:
        await trio.to_thread.run_sync(pg.stop)


async def test_an_http2_client_and_a_large_streamed_body(
    nursery: trio.Nursery, tmp_path: Path, upstream_opts: dict[str, object]
) -> None:
    """An HTTP/2 client's 300 KB body streams to the upstream (flow control,
    no JSON stage) while the log keeps references to its chunks: what is
    stored is byte for byte what the upstream received, over either
    upstream protocol; a body past log.max_body_bytes is cut and says so."""
    from tests.helpers import H2Client

    fake = await start_fake(nursery)
    assert fake.fake is not None
    proxy = await start(
        nursery,
        fake,
        state_dir=str(tmp_path),
        log_bodies="all",
        log__max_body_bytes=200_000,
        **upstream_opts,
    )
    small = request("x" * 50_000, stream=True)
    large = request("y" * 300_000, stream=True)
    h2 = await H2Client.connect(nursery, proxy.port)
    got = []
    for body in (small, large):
        res = await h2.request("POST", "/v1/messages", [("content-type", "application/json")], body)
        assert res.status == 200 and res.ended
        got.append((bytes(res.body), fake.fake.seen[-1].body_sha256, len(body)))
    await h2.aclose()
    await written(proxy, 2)
    entries = logged_entries(tmp_path)
    (small_answer, small_sha, _), (large_answer, _, large_len) = got
    first, second = entries
    assert first is not None and second is not None
    assert hashlib.sha256(body_of(first, "request_body")).hexdigest() == small_sha
    assert body_of(first, "response_body") == small_answer and not first["request_truncated"]
    stored = body_of(second, "request_body")
    assert second["request_truncated"] == 1 and second["request_bytes"] == large_len
    assert len(stored) == 200_000 and large.startswith(stored)
    assert body_of(second, "response_body") == large_answer


async def test_a_retried_answer_is_stored_alone(nursery: trio.Nursery, tmp_path: Path) -> None:
    """A demoted answer is read whole before the client sees a byte, so a
    stream cut there is retried; the log keeps the answer that was given,
    not the cut attempt's bytes before it."""
    fake = await start_fake(nursery)
    assert fake.fake is not None
    proxy = await start(
        nursery, fake, state_dir=str(tmp_path), log_bodies="all", demote_nonstreaming=True
    )
    fake.fake.script.append(b"drop-mid-stream=3")  # the first try is cut; the retry answers
    r = await h1_request(proxy.port, "POST", "/v1/messages", [], request("hello"))
    assert r.status == 200 and fake.fake.requests == 2
    await written(proxy, 1)
    (entry,) = logged_entries(tmp_path)
    assert entry["retries"] == 1
    raw = body_of(entry, "response_body")
    assert raw.count(b"event: message_start") == 1 and raw.endswith(b"\n\n")
    assert entry["response_bytes"] == len(raw)
    assert detail(entry, UNZSTD)["message"] == orjson.loads(r.body)  # what the client got


async def test_a_reload_that_turns_the_log_on_opens_the_database(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Started with no ledger and no log, the proxy has no database open; a
    reload that turns the log on must log from then on, not count the rows
    as lost."""
    fake = await start_fake(nursery)
    toml = tmp_path / "trioproxy.toml"

    def write(log_bodies: str) -> None:
        toml.write_text(
            f'state_dir = "{tmp_path}"\nlog_bodies = "{log_bodies}"\n'
            f'[upstream]\nurl = "{fake.url}"\napi_key = "sk-provider-key"\n'
            "[usage]\nledger = false\n"
        )

    write("off")

    def loader() -> Config:
        return load_config(str(toml), env={})

    server = Server(loader(), loader=loader)
    proxy = Running(server, await nursery.start(server.serve))
    journal = server.state.journal
    assert (
        await h1_request(proxy.port, "POST", "/v1/messages", [], request("before the reload"))
    ).status == 200
    with trio.fail_after(10):
        while journal.written < 1:  # noqa: ASYNC110 (a worker thread writes)
            await trio.sleep(0.05)
    assert not (tmp_path / FILENAME).exists()  # nothing to keep: no database

    write("all")
    assert server.reload()
    assert (
        await h1_request(proxy.port, "POST", "/v1/messages", [], request("after the reload"))
    ).status == 200
    await written(proxy, 1)
    assert journal.log_rows_lost == 0
    [entry] = logged_entries(tmp_path)
    assert b"after the reload" in body_of(entry, "request_body")
