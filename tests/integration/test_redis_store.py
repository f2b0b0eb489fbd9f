"""The Redis state store against a real redis-server: what one instance
learns the other knows within about a second, and an unreachable Redis
costs nothing but sharing."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import trio

from tests.helpers import clean_env, h1_request, serving, start_fake, unless_in_ci
from tests.services import RedisServer, tool
from tests.sharing import check_sharing, router, used
from trioproxy.store.redis import RedisStore

pytestmark = [
    unless_in_ci(tool("redis-server") is None, "redis-server is not installed"),
    # coredis leaves anyio memory-object streams of a broken connection for the
    # garbage collector: harmless for the proxy (see the redis fixture).
    pytest.mark.filterwarnings("ignore:Unclosed <MemoryObject:ResourceWarning"),
]


JSON = orjson.dumps({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})


async def test_instances_share_everything_through_redis(redis: RedisServer) -> None:
    one, two = router(), router()
    async with RedisStore.open(redis.url) as s1, RedisStore.open(redis.url) as s2:
        await one.attach(s1)
        await two.attach(s2)
        await check_sharing(one, two)
        # A third instance starting now reads the totals and the mode, no old events.
        three = router()
        async with RedisStore.open(redis.url) as s3:
            await three.attach(s3)
            assert used(three, "a") == 125
            assert (three.mode.mode, three.mode.provider) == ("single", "b")
            assert three.session_provider("session-1") is None  # history is not replayed


async def test_redis_down_then_back(redis: RedisServer) -> None:
    one, two = router(), router()
    async with RedisStore.open(redis.url) as s1, RedisStore.open(redis.url) as s2:
        await one.attach(s1)
        await two.attach(s2)
        one.record_usage("a", 10)
        await one.sync()
        redis.stop()
        one.record_usage("a", 20)
        with trio.fail_after(10):
            await one.sync()
        assert one.store_down
        assert used(one, "a") == 30
        redis.start()
        with trio.fail_after(10):
            await one.sync()
            await two.sync()
        assert not one.store_down
        assert used(two, "a") == 30
        assert used(one, "a") == 30


async def test_two_instances_share_a_quota_and_survive_redis_going_away(
    nursery: trio.Nursery, tmp_path: Path, redis: RedisServer
) -> None:
    a, b = await start_fake(nursery), await start_fake(nursery)
    toml = tmp_path / "trioproxy.toml"
    toml.write_text(
        f'[state]\nredis_url = "{redis.url}"\n'
        f'[[providers]]\nname = "a"\nbase_url = "{a.url}"\npriority = 1\n'
        'quota = { tokens = 30, window = "daily", threshold = 0.9 }\n'
        f'[[providers]]\nname = "b"\nbase_url = "{b.url}"\npriority = 2\n'
    )
    assert a.fake is not None and b.fake is not None
    async with (
        serving("--config", str(toml), env=clean_env()) as first,
        serving("--config", str(toml), env=clean_env()) as second,
    ):
        assert (await h1_request(first.port, "POST", "/v1/messages", [], JSON)).status == 200
        assert (a.fake.requests, b.fake.requests) == (1, 0)
        await trio.sleep(1.5)  # each instance syncs twice a second
        assert (await h1_request(second.port, "POST", "/v1/messages", [], JSON)).status == 200
        assert (a.fake.requests, b.fake.requests) == (1, 1)  # the other instance's spend counts

        redis.stop()
        for proxy in (first, second):
            assert (await h1_request(proxy.port, "POST", "/v1/messages", [], JSON)).status == 200
        with trio.fail_after(15):
            while True:
                live = orjson.loads((await h1_request(second.port, "GET", "/livez")).body)
                if live["state_store"] == "unreachable":
                    break
                await trio.sleep(0.2)
            await second.logged(rb"state store .* unreachable")
        redis.start()
        with trio.fail_after(15):
            while True:
                live = orjson.loads((await h1_request(second.port, "GET", "/livez")).body)
                if live["state_store"] == "ok":
                    break
                await trio.sleep(0.2)


async def test_a_breaker_opened_on_one_instance_is_open_on_the_other_within_a_second(
    nursery: trio.Nursery, tmp_path: Path, redis: RedisServer
) -> None:
    a, b = await start_fake(nursery), await start_fake(nursery)
    assert a.fake is not None and b.fake is not None
    a.fake.default_faults = b"500"
    toml = tmp_path / "trioproxy.toml"
    toml.write_text(
        f'[state]\nredis_url = "{redis.url}"\n[routing]\nbreaker_min_requests = 3\n'
        f'[[providers]]\nname = "a"\nbase_url = "{a.url}"\npriority = 1\nopen_s = 30\n'
        f'[[providers]]\nname = "b"\nbase_url = "{b.url}"\npriority = 200\n'
    )

    async def state_of_a(port: int) -> str:
        doc = orjson.loads((await h1_request(port, "GET", "/admin/providers")).body)
        return str(next(p["state"] for p in doc["providers"] if p["name"] == "a"))

    async with (
        serving("--config", str(toml), env=clean_env()) as first,
        serving("--config", str(toml), env=clean_env()) as second,
    ):
        for _ in range(3):  # a fails each time, b answers; the third failure opens a
            assert (await h1_request(first.port, "POST", "/v1/messages", [], JSON)).status == 200
        assert await state_of_a(first.port) == "open"
        opened = trio.current_time()
        with trio.fail_after(5):
            while await state_of_a(second.port) != "open":  # noqa: ASYNC110 (another process)
                await trio.sleep(0.05)
        assert trio.current_time() - opened < 1.5  # two syncs of half a second, and slack
        before = a.fake.requests
        assert (await h1_request(second.port, "POST", "/v1/messages", [], JSON)).status == 200
        assert a.fake.requests == before  # the other instance skips a without trying it
