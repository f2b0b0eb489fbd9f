"""The real command line, as separate processes, with real signals."""

from __future__ import annotations

import signal
import subprocess

import orjson
import pytest
import trio

from tests.helpers import (
    H1Client,
    clean_env,
    h1_request,
    read_until,
    serving,
    spawn_trioproxy,
    start_fake,
    stop,
    stream_through_sigterm,
)

JSON = orjson.dumps({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
STREAM = orjson.dumps(
    {"model": "m", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "x"}]}
)


async def test_serve_drains_on_sigterm_and_exits_0(nursery: trio.Nursery) -> None:
    fake = await start_fake(nursery)
    async with serving("--upstream", fake.url, env=clean_env()) as proxy:
        await stream_through_sigterm(proxy, STREAM)
        with trio.fail_after(10):
            assert await proxy.proc.wait() == 0
            await proxy.logged(rb"draining")


DEMO_KINDS = {
    "anthropic": "fake Anthropic upstream",
    "openai": "Chat Completions (translated)",
    "bedrock": "Amazon Bedrock (SigV4-signed",
    "vertex": "Google Cloud Vertex AI",
}


@pytest.mark.parametrize("kind", list(DEMO_KINDS))
async def test_demo_prints_events_and_the_two_lines(kind: str) -> None:
    """`trioproxy demo` (and `demo --openai`, `--bedrock`, `--vertex`, where
    the fake speaks another dialect and the proxy translates and signs):
    the same Anthropic events."""
    proc = await spawn_trioproxy(
        "demo",
        "--listen",
        "127.0.0.1:0",
        *([f"--{kind}"] if kind != "anthropic" else []),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=clean_env(),
    )
    assert proc.stdout is not None
    try:
        out = bytearray()
        with trio.fail_after(20):
            m = await read_until(
                proc.stdout, rb"export ANTHROPIC_BASE_URL=http://127\.0\.0\.1:(\d+)\n", out
            )
            await read_until(
                proc.stdout, rb"curl -N http://127\.0\.0\.1:\d+/v1/messages[^\n]*\n", out
            )
            await read_until(proc.stdout, rb"/admin/requests \(the conversation log\)\n", out)
        text = out.decode()
        for name in ("message_start", "content_block_delta", "message_delta", "message_stop"):
            assert name in text
        assert [k for k, words in DEMO_KINDS.items() if words in text] == [kind]
        port = int(m.group(1))
        async with await H1Client.connect(port) as c:  # the demo keeps running and serving
            r = await c.request("POST", "/v1/messages", [], STREAM)
        assert r.status == 200 and b"message_stop" in r.body
        with trio.fail_after(10):  # the sample and this request, in the conversation log
            while True:
                logged = await h1_request(port, "GET", "/admin/api/requests")
                if logged.status == 200 and len(orjson.loads(logged.body)["requests"]) >= 2:
                    break
                await trio.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            assert await proc.wait() == 0
    finally:
        await stop(proc)


async def test_sigterm_says_503_and_keeps_serving_for_the_grace(nursery: trio.Nursery) -> None:
    """A restart never refuses a connection before /health said 503."""
    fake = await start_fake(nursery)
    env = clean_env(TRIOPROXY_DRAIN_GRACE="1.5")
    async with serving("--upstream", fake.url, env=env) as proxy:
        port = proxy.port
        assert (await h1_request(port, "GET", "/health")).status == 200
        proxy.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(5):
            await proxy.logged(rb"still accepting for 1.5 s")
        t0 = trio.current_time()
        statuses = []
        while trio.current_time() - t0 < 1.0:  # well inside the grace
            statuses.append((await h1_request(port, "GET", "/health")).status)
            r = await h1_request(port, "POST", "/v1/messages", [], JSON)
            assert r.status == 200 and r.header(b"connection") == b"close"
            await trio.sleep(0.1)
        assert statuses and set(statuses) == {503}
        with trio.fail_after(10):
            assert await proxy.proc.wait() == 0
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", port)
