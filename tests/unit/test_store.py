"""The shared state: the local store (one SQLite file, several processes'
views of it) and routers that share breakers, cooldowns, quotas, session
affinity and the routing mode through it."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import trio

from tests.sharing import check_sharing, router, used
from trioproxy.routing.router import Router
from trioproxy.store.base import AFFINITY, HEALTH, Event, Outbox
from trioproxy.store.local import DB_NAME, LocalFile, LocalStore

NOW = 1_795_000_000.0  # wall clock
HOUR = int(NOW // 3600)


def test_two_processes_add_up_and_hear_each_other(tmp_path: Path) -> None:
    a = LocalFile(str(tmp_path), "a")
    b = LocalFile(str(tmp_path), "b")
    first = a.sync(Outbox(quota={("p", HOUR): 10}), since_hour=HOUR - 1, now=NOW)
    assert first.quota == {("p", HOUR): 10} and first.events == []
    hello = Event(AFFINITY, "session-1", {"provider": "p"})
    b.sync(Outbox(quota={("p", HOUR): 5}, events=[hello]), since_hour=HOUR - 1, now=NOW + 0.5)
    inbox = a.sync(Outbox(), since_hour=HOUR - 1, now=NOW + 1)
    assert inbox.quota == {("p", HOUR): 15}  # increments: nobody overwrites the other
    assert inbox.events == [hello]
    assert b.sync(Outbox(), since_hour=HOUR - 1, now=NOW + 1.5).events == []  # not its own back
    assert a.sync(Outbox(), since_hour=HOUR - 1, now=NOW + 2).events == []  # once only
    late = LocalFile(str(tmp_path), "c")
    joined = late.sync(Outbox(), since_hour=HOUR - 1, now=NOW + 3)
    assert joined.quota == {("p", HOUR): 15}  # the totals, whole, the first time
    assert joined.events == []  # history is not replayed


def test_later_syncs_read_only_recent_buckets(tmp_path: Path) -> None:
    a = LocalFile(str(tmp_path), "a")
    a.sync(Outbox(quota={("p", HOUR - 5): 7, ("p", HOUR): 1}), since_hour=HOUR - 10, now=NOW)
    b = LocalFile(str(tmp_path), "b")
    assert b.sync(Outbox(), since_hour=HOUR - 10, now=NOW + 10).quota == {
        ("p", HOUR - 5): 7,
        ("p", HOUR): 1,
    }
    a.sync(Outbox(quota={("p", HOUR): 2}), since_hour=HOUR - 10, now=NOW + 60)
    assert b.sync(Outbox(), since_hour=HOUR - 10, now=NOW + 61).quota == {("p", HOUR): 3}


def test_a_writer_that_was_slow_is_not_missed(tmp_path: Path) -> None:
    """What a reader has seen is a version bumped under the write lock, not
    a time: a writer that read its clock long before it got the lock (a
    stalled process) still reaches every reader."""
    a, b = LocalFile(str(tmp_path), "a"), LocalFile(str(tmp_path), "b")
    a.sync(Outbox(quota={("p", HOUR): 1}), since_hour=HOUR, now=NOW)
    assert b.sync(Outbox(), since_hour=HOUR, now=NOW + 10).quota == {("p", HOUR): 1}
    a.sync(Outbox(quota={("p", HOUR): 4}), since_hour=HOUR, now=NOW + 1)  # an old clock
    assert b.sync(Outbox(), since_hour=HOUR, now=NOW + 11).quota == {("p", HOUR): 5}
    assert b.sync(Outbox(), since_hour=HOUR, now=NOW + 12).quota == {}  # nothing new since


def test_old_events_and_buckets_are_pruned(tmp_path: Path) -> None:
    a = LocalFile(str(tmp_path), "a")
    a.sync(Outbox(events=[Event(HEALTH, "p", {})]), since_hour=HOUR, now=NOW)
    a.sync(Outbox(quota={("p", HOUR - 1): 3}), since_hour=HOUR - 1, now=NOW + 1)
    a.sync(Outbox(), since_hour=HOUR, now=NOW + 7200)
    db = sqlite3.connect(tmp_path / DB_NAME)
    assert db.execute("SELECT COUNT(*) FROM events").fetchone() == (0,)
    assert db.execute("SELECT COUNT(*) FROM quota_buckets").fetchone() == (0,)


def test_a_file_from_before_sharing_is_upgraded(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.executescript(
        "CREATE TABLE quota_buckets (provider TEXT NOT NULL, hour INTEGER NOT NULL, "
        "tokens INTEGER NOT NULL, PRIMARY KEY (provider, hour));"
        f"INSERT INTO quota_buckets VALUES ('p', {HOUR}, 40);"
    )
    db.close()
    a = LocalFile(str(tmp_path), "a")
    assert a.sync(Outbox(quota={("p", HOUR): 2}), since_hour=HOUR, now=NOW).quota == {
        ("p", HOUR): 42
    }


async def close(*routers: Router) -> None:
    for r in routers:
        assert isinstance(r.store, LocalStore)
        await r.store.aclose()


async def two_routers(tmp_path: Path) -> tuple[Router, Router]:
    one, two = router(), router()
    await one.attach(await LocalStore.open(str(tmp_path)))
    await two.attach(await LocalStore.open(str(tmp_path)))
    return one, two


async def test_routers_share_breakers_cooldowns_quotas_affinity_and_mode(tmp_path: Path) -> None:
    one, two = await two_routers(tmp_path)
    await check_sharing(one, two)
    await close(one, two)


async def test_a_breaker_closed_elsewhere_closes_here(tmp_path: Path) -> None:
    one, two = await two_routers(tmp_path)
    now = trio.current_time()
    one.health_of("a").opened_until = now + 30
    await one.sync()
    await two.sync()
    assert two.health_of("a").breaker(now) == "open"
    # 30 s later (moved by hand): both half-open; one's trial succeeds.
    one.health_of("a").opened_until = None
    two.health_of("a").opened_until = now - 1
    await one.sync()
    await two.sync()
    assert two.health_of("a").opened_until is None
    # An opening that is already over is history, not news.
    one.health_of("b").opened_until = now - 5
    await one.sync()
    await two.sync()
    assert two.health_of("b").opened_until is None
    await close(one, two)


async def test_a_store_that_fails_keeps_what_was_not_sent(tmp_path: Path) -> None:
    one, two = await two_routers(tmp_path)
    one.record_usage("a", 30)
    locked = sqlite3.connect(tmp_path / DB_NAME)
    locked.execute("BEGIN EXCLUSIVE")  # another process holds the file: the sync fails
    try:
        with trio.move_on_after(30):
            await one.sync()
        assert one.store_down
    finally:
        locked.rollback()
        locked.close()
    await one.sync()
    assert not one.store_down
    await two.sync()
    assert used(two, "a") == 30
    await close(one, two)


def _open_together(directory: str, n: int) -> list[BaseException]:
    start = threading.Barrier(n)
    errors: list[BaseException] = []

    def open_it(name: str) -> None:
        start.wait()
        try:
            LocalFile(directory, name).close()
        except sqlite3.Error as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it, args=(f"w{i}",)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_workers_opening_a_new_file_at_once_all_get_it(tmp_path: Path) -> None:
    """Every worker of a machine opens the file when it starts, at the same
    moment: creating and upgrading the tables is one writer's job."""
    for attempt in range(10):
        assert _open_together(str(tmp_path / str(attempt)), 4) == []
