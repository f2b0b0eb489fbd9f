"""Callers' limits over memory streams, in virtual time: the book's wall
clock follows the autojump clock, so windows of a minute, a day or a month
pass in milliseconds. Every refusal is checked for its status, error type
and retry-after, and for nothing reaching the upstream."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import trio
import trio.testing

from tests.component.rig import Rig, rig
from trioproxy.fake.app import FakeUpstream
from trioproxy.inbound.exchange import ClientExchange, respond
from trioproxy.proto.events import ResponseHead

SECRET = "alice-secret-0123456789"
DIGEST = hashlib.sha256(SECRET.encode()).hexdigest()
DAY = 86400
# 100 s before midnight UTC (2026-12-04, a Friday): the daily window ends soon.
T0 = 1_796_428_800.0 - 100


def message(model: str = "claude-sonnet-4-6", text: str = "hi") -> bytes:
    return orjson.dumps(
        {"model": model, "max_tokens": 20, "messages": [{"role": "user", "content": text}]}
    )


@asynccontextmanager
async def callers_rig(
    tmp_path: Path, up: Any, start: float = T0, **policy: Any
) -> AsyncIterator[Rig]:
    key = tmp_path / "provider.key"
    key.write_text("sk-provider-key-0123456789")
    caller = {"name": "alice", "secret_sha256": [DIGEST], **policy}
    async with rig(
        {"a": up}, providers={"a": {"api_key_file": str(key)}}, callers=[caller]
    ) as world:
        base = start - trio.current_time()
        world.state.book.wall = lambda: base + trio.current_time()
        yield world


async def post(world: Rig, body: bytes | None = None, secret: str = SECRET) -> Any:
    client = await world.h1()
    return await client.request(
        "POST", "/v1/messages", [("x-api-key", secret)], body if body is not None else message()
    )


def error_of(r: Any) -> tuple[int, str, str]:
    doc = orjson.loads(r.body)
    return r.status, doc["error"]["type"], doc["error"]["message"]


def limited(world: Rig) -> dict[tuple[str, str], int]:
    return dict(world.state.metrics.limited)


async def test_rpm_refuses_the_request_over_the_limit_until_the_minute_has_passed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    up = FakeUpstream()
    async with callers_rig(tmp_path, up, rpm=3) as world:
        for _ in range(3):
            assert (await post(world)).status == 200
            await trio.sleep(5)
        r = await post(world)
        status, kind, text = error_of(r)
        assert (status, kind) == (429, "rate_limit_error")
        assert "rpm = 3" in text and "alice" in text
        retry = int(r.header(b"retry-after"))
        assert 50 <= retry <= 70
        assert up.requests == 3
        await trio.sleep(retry)
        assert (await post(world)).status == 200
        assert up.requests == 4
        assert limited(world) == {("alice", "rpm"): 1}


async def test_tpm_counts_what_the_answers_used(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    up = FakeUpstream()
    async with callers_rig(tmp_path, up, tpm=40) as world:
        big = message(text="x" * 200)  # the fake bills ~len(body)/4 input tokens
        assert (await post(world, big)).status == 200
        r = await post(world)
        status, kind, text = error_of(r)
        assert (status, kind) == (429, "rate_limit_error") and "tpm = 40" in text
        assert up.requests == 1
        # The window is 60-70 s; retry-after says at most 60 (Claude Code gives
        # up above that): asked then, the caller is told the seconds left.
        await trio.sleep(int(r.header(b"retry-after")))
        again = await post(world)
        if again.status == 429:
            wait = int(again.header(b"retry-after"))
            assert wait <= 10
            await trio.sleep(wait)
            again = await post(world)
        assert again.status == 200


async def test_max_concurrent_refuses_while_the_others_are_in_flight(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    release = trio.Event()

    async def slow(ex: ClientExchange) -> None:
        await release.wait()
        await respond(ex, ResponseHead(200, [(b"content-type", b"application/json")]), b"{}")

    async with callers_rig(tmp_path, slow, max_concurrent=2) as world:
        results: list[int] = []

        async def one() -> None:
            results.append((await post(world)).status)

        async with trio.open_nursery() as n:
            n.start_soon(one)
            n.start_soon(one)
            await trio.sleep(1)
            r = await post(world)
            status, kind, text = error_of(r)
            assert (status, kind) == (429, "rate_limit_error")
            assert "max_concurrent = 2" in text and r.header(b"retry-after") == b"1"
            release.set()
        assert results == [200, 200]
        assert world.state.book.in_flight == {}
        assert (await post(world)).status == 200  # the places came back


async def test_budget_refuses_until_the_window_resets(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    up = FakeUpstream()
    async with callers_rig(tmp_path, up, budget={"tokens": 30, "window": "daily"}) as world:
        assert (await post(world, message(text="y" * 200))).status == 200
        r = await post(world)
        status, kind, text = error_of(r)
        assert (status, kind) == (429, "rate_limit_error")
        assert "daily budget of 30 tokens" in text
        # The window is the UTC day: it resets at the next midnight.
        midnight = (int(T0) // DAY + 1) * DAY
        assert f"resets at {_iso(midnight)}" in text
        retry = int(r.header(b"retry-after"))
        assert retry == midnight - int(world.state.book.wall())
        assert up.requests == 1
        await trio.sleep(retry + 1)
        assert (await post(world)).status == 200
        assert limited(world) == {("alice", "budget"): 1}


async def test_usd_budget_is_priced_with_the_price_database(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    up = FakeUpstream()
    async with callers_rig(tmp_path, up, budget={"usd": 0.0001, "window": "monthly"}) as world:
        assert (await post(world, message(text="z" * 400))).status == 200
        spent = world.state.metrics.spend["alice"]
        assert spent > 0.0001  # genai-prices: ~100 input tokens of sonnet are $0.0003
        status, kind, text = error_of(await post(world))
        assert (status, kind) == (429, "rate_limit_error") and "monthly budget of $0.00" in text
        assert up.requests == 1


async def test_an_expired_caller_gets_401(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    up = FakeUpstream()
    async with callers_rig(tmp_path, up, expires=_iso(int(T0) + 60)) as world:
        assert (await post(world)).status == 200
        await trio.sleep(61)
        status, kind, text = error_of(await post(world))
        assert (status, kind) == (401, "authentication_error") and "expired" in text
        assert up.requests == 1
        assert limited(world) == {("alice", "expired"): 1}


async def test_a_model_outside_the_allowlist_gets_403(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    up = FakeUpstream()
    async with callers_rig(tmp_path, up, models=["claude-haiku-*"]) as world:
        status, kind, text = error_of(await post(world, message("claude-opus-4-6")))
        assert (status, kind) == (403, "permission_error") and "'claude-opus-4-6'" in text
        # A body that names no model cannot be checked: refused as well.
        status, kind, _ = error_of(await post(world, b'{"messages": []}'))
        assert (status, kind) == (403, "permission_error")
        assert up.requests == 0
        assert (await post(world, message("claude-haiku-4-5"))).status == 200
        assert up.requests == 1
        assert limited(world) == {("alice", "model"): 2}


async def test_a_wrong_secret_is_401_and_the_caller_is_named_in_the_record(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    up = FakeUpstream()
    async with callers_rig(tmp_path, up) as world:
        status, kind, text = error_of(await post(world, secret="not-alice-0123456789"))
        assert (status, kind) == (401, "authentication_error") and SECRET not in text
        assert (await post(world)).status == 200
        assert up.requests == 1
        codes = {(k[0], k[1]): n for k, n in world.state.metrics.requests.items()}
        assert codes == {("401", "-"): 1, ("200", "alice"): 1}


def _iso(epoch: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
