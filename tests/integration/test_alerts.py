"""Alerts to a webhook (alerts.webhook_urls), against a receiver in the
test: budget thresholds crossed by real requests, in Slack's shape,
retried when the webhook fails, counted in /metrics; one post per crossing
across processes sharing the state file or Redis; a breaker opening and
closing; a worker replaced by the supervisor."""

from __future__ import annotations

import os
import re
import signal
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import trio

from tests.helpers import (
    Running,
    clean_env,
    h1_request,
    make_config,
    serving,
    start_fake,
)
from tests.integration.test_workers import children, until
from tests.recorder import Recorder
from tests.services import RedisServer
from trioproxy.alerts.events import Alert
from trioproxy.alerts.sender import Alerts
from trioproxy.server import Server
from trioproxy.store.local import LocalStore
from trioproxy.store.redis import RedisStore

SECRET = "alice-secret-0123456789"
JSON = orjson.dumps(
    {
        "model": "claude-sonnet-4-5",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x" * 400}],
    }
)


class Webhook(Recorder):
    """The alerts posted, as JSON."""

    @property
    def posts(self) -> list[dict[str, Any]]:
        return [orjson.loads(b) for b in self.bodies()]


async def webhook(nursery: trio.Nursery) -> tuple[Webhook, str]:
    hook = Webhook()
    port = await nursery.start(Server(make_config()).serve_app, hook)
    return hook, f"http://127.0.0.1:{port}/services/T000/B000/XXXX"


async def test_budget_thresholds_are_posted_once_each_in_slack_s_shape(
    nursery: trio.Nursery,
) -> None:
    hook, url = await webhook(nursery)
    hook.script.append(500)  # the webhook fails once: the alert is retried
    fake = await start_fake(nursery)
    callers = [{"name": "alice", "secrets": [SECRET], "budget": {"usd": 0.002, "window": "daily"}}]
    server = Server(
        make_config(
            upstream__url=fake.url,
            upstream__api_key="sk-ant-provider",
            callers=callers,
            alerts__webhook_urls=[url],
        )
    )
    proxy = Running(server, await nursery.start(server.serve))
    statuses = []
    for _ in range(100):
        r = await h1_request(proxy.port, "POST", "/v1/messages", [("x-api-key", SECRET)], JSON)
        statuses.append(r.status)
        if r.status == 429:
            break
    assert statuses[-1] == 429 and statuses.count(200) > 2  # spent: refused
    await hook.wait_for(2)
    await trio.sleep(0.5)  # nothing more comes
    texts = [p["text"] for p in hook.posts]
    assert len(texts) == 2, texts
    assert "caller alice has used 80% of its daily budget" in texts[0]
    assert "caller alice has used 100% of its daily budget" in texts[1]
    fields = {f["title"]: f["value"] for f in hook.posts[0]["attachments"][0]["fields"]}
    assert fields["caller"] == "alice" and fields["threshold"] == "80%" and "instance" in fields
    metrics = (await h1_request(proxy.port, "GET", "/metrics", [])).body.decode()
    assert 'trioproxy_alerts_total{kind="budget",outcome="sent"} 2' in metrics
    assert url.encode() not in (await h1_request(proxy.port, "GET", "/metrics", [])).body


async def test_one_post_per_crossing_across_processes(
    nursery: trio.Nursery, tmp_path: Path, redis: RedisServer
) -> None:
    """Two processes' senders, each claiming through a store of its own
    connection (the state file; Redis), see the same crossing: one posts."""
    hook, url = await webhook(nursery)
    alert = Alert("budget", "budget:alice:usd:0:0.8", "caller alice has used 80%")
    stores: list[Any] = [await LocalStore.open(str(tmp_path)), await LocalStore.open(str(tmp_path))]
    async with RedisStore.open(redis.url) as r1, RedisStore.open(redis.url) as r2:
        for a, b in ((stores[0], stores[1]), (r1, r2)):
            counts: defaultdict[tuple[str, str], int] = defaultdict(int)
            first = Alerts([url], counts, claim=lambda a=a: a.claim)
            second = Alerts([url], counts, claim=lambda b=b: b.claim)
            before = len(hook.posts)
            async with trio.open_nursery() as n:
                n.start_soon(first.deliver, alert)
                n.start_soon(second.deliver, alert)
            assert len(hook.posts) == before + 1
            assert counts == {("budget", "sent"): 1, ("budget", "duplicate"): 1}
    for s in stores:
        await s.aclose()


async def test_a_breaker_opening_and_closing_is_posted(nursery: trio.Nursery) -> None:
    hook, url = await webhook(nursery)
    fake = await start_fake(nursery)
    server = Server(
        make_config(
            upstream__url=fake.url,
            upstream__api_key="sk-ant-provider",
            alerts__webhook_urls=[url],
            routing__breaker_min_requests=3,
            routing__open_s=1,
            routing__cooldown_s=0.1,
        )
    )
    proxy = Running(server, await nursery.start(server.serve))
    for _ in range(4):
        await h1_request(proxy.port, "POST", "/v1/messages", [("x-fake-fault", "500")], JSON)
    await hook.wait_for(1)
    assert "breaker opened" in hook.posts[0]["text"]
    with trio.fail_after(10):
        while True:  # the trial after open_s succeeds: closed
            await trio.sleep(0.3)
            r = await h1_request(proxy.port, "POST", "/v1/messages", [], JSON)
            if r.status == 200 and server.router.health_of("default").opened_until is None:
                break
    await hook.wait_for(2)
    assert "breaker closed" in hook.posts[1]["text"]
    assert hook.posts[1]["attachments"][0]["color"] == "good"


async def test_a_replaced_worker_is_posted_by_its_successor(nursery: trio.Nursery) -> None:
    hook, url = await webhook(nursery)
    fake = await start_fake(nursery)
    env = clean_env(TRIOPROXY_ALERTS_WEBHOOK_URLS=url)
    async with serving("--upstream", fake.url, "--workers", "2", env=env) as proxy:
        workers = children(proxy.proc.pid)
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        await until(lambda: len(children(proxy.proc.pid) - {victim}) == 2, "a replacement")
        await hook.wait_for(1)
        (post,) = hook.posts
        assert re.search(
            rf"a worker was restarted: worker \d \(pid {victim}\) was killed by SIGKILL",
            post["text"],
        )
        assert url.encode() not in bytes(proxy.log)
