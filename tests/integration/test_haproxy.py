"""The reference layout for more than one machine, on loopback: HAProxy in
front of two trioproxy instances that share one redis-server. The official
SDK's calls go through HAProxy while one instance is restarted; none is
lost."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import anthropic
import orjson
import pytest
import trio

from tests.helpers import clean_env, h1_request, serving, start_fake, unless_in_ci
from tests.services import HAProxy, RedisServer, free_port, tool
from trioproxy.fake.messages import DEFAULT_TEXT

pytestmark = [
    unless_in_ci(tool("haproxy") is None, "haproxy is not installed"),
    unless_in_ci(tool("redis-server") is None, "redis-server is not installed"),
    pytest.mark.filterwarnings(
        "ignore:Unclosed <MemoryObject:ResourceWarning"
    ),  # see test_redis_store
    pytest.mark.timeout(120),
]


SLOW_STREAM = {"x-fake-fault": "event-delay=0.05"}  # a stream lasts about half a second


def sdk_calls(url: str, stop: threading.Event, results: list[str]) -> None:
    """What a script using the SDK does, until ``stop``: JSON answers and
    streams, with the SDK's own retries (2, its default)."""
    with anthropic.Anthropic(base_url=url, api_key="sk-ant-test") as client:
        while not stop.is_set():
            msg = client.messages.create(
                model="claude-sonnet-4-6",
                max_tokens=64,
                messages=[{"role": "user", "content": "hi"}],
            )
            first = msg.content[0]
            results.append(first.text if first.type == "text" else "?")
            with client.messages.stream(
                model="claude-sonnet-4-6",
                max_tokens=64,
                messages=[{"role": "user", "content": "hi"}],
                extra_headers=SLOW_STREAM,
            ) as stream:
                final = stream.get_final_message()
            results.append("".join(b.text for b in final.content if b.type == "text"))


async def test_haproxy_two_instances_one_redis_and_a_restart(
    nursery: trio.Nursery, tmp_path: Path, redis: RedisServer
) -> None:
    fake = await start_fake(nursery)
    toml = tmp_path / "trioproxy.toml"
    toml.write_text(f'[state]\nredis_url = "{redis.url}"\n[upstream]\nurl = "{fake.url}"\n')
    ports = [free_port(), free_port()]
    env = clean_env(TRIOPROXY_DRAIN_GRACE="1")  # HAProxy checks every 200 ms
    haproxy = HAProxy(tmp_path, ports)
    results: list[str] = []

    def instance(port: int) -> object:
        return serving("--config", str(toml), "--listen", f"127.0.0.1:{port}", env=env)

    async with instance(ports[0]) as first, instance(ports[1]):  # type: ignore[attr-defined]
        haproxy.start()
        stop, finished = threading.Event(), trio.Event()

        async def run_load() -> None:
            try:
                await trio.to_thread.run_sync(sdk_calls, haproxy.url, stop, results)
            finally:
                finished.set()

        try:
            async with trio.open_nursery() as load:
                load.start_soon(run_load)
                while len(results) < 6:  # noqa: ASYNC110 (filled by the SDK's thread)
                    await trio.sleep(0.05)
                # An instance restarts (a deploy): SIGTERM drains, /health says
                # 503 for the drain grace, HAProxy moves the traffic, streams in
                # flight finish, the process exits, a new one takes the port.
                first.proc.send_signal(signal.SIGTERM)
                with trio.fail_after(30):
                    assert await first.proc.wait() == 0
                during = len(results)
                async with instance(ports[0]) as again:  # type: ignore[attr-defined]
                    assert (await h1_request(again.port, "GET", "/health")).status == 200
                    await trio.sleep(3)  # HAProxy sees it up (rise 2 x 200 ms) and sends it work
                    view = orjson.loads((await h1_request(again.port, "GET", "/metrics.json")).body)
                    assert sum(r["count"] for r in view["requests"]) > 0  # it serves again
                    stop.set()
                    with trio.fail_after(30):
                        await finished.wait()
        finally:
            stop.set()
            haproxy.stop()
    assert len(results) > during + 4 and during > 6
    assert set(results) == {DEFAULT_TEXT}  # every call answered whole: none lost
