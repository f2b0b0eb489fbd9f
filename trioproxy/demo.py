"""`trioproxy demo`: the fake upstream and the proxy in one process, a sample
streaming request sent through, its events printed as they arrive."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

import h11
import orjson
import trio

from trioproxy.config import Config, Endpoint, load_config
from trioproxy.fake.app import FakeUpstream
from trioproxy.fake.bedrock_app import FAKE_REGION, BedrockFake
from trioproxy.fake.openai_app import OpenAIFake
from trioproxy.fake.sigv4 import issued
from trioproxy.fake.vertex_app import FAKE_PROJECT, VertexFake
from trioproxy.proto.sse import SSEParser
from trioproxy.server import Server

SAMPLE = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 256,
    "stream": True,
    "messages": [{"role": "user", "content": "Say hi through the proxy."}],
}


def demo_configs(listen: Endpoint, env: dict[str, str]) -> tuple[Config, Config]:
    fake = load_config(env={}, overrides={"listen": "127.0.0.1:0", "timeouts.drain_grace": 0})
    proxy = load_config(
        env=env, overrides={"listen": str(listen), "upstream.url": "http://127.0.0.1:1"}
    )
    return fake, proxy


async def stream_sample(port: int, out: TextIO) -> int:
    """POST the sample through the proxy with a real h11 client; print each SSE
    event with its arrival time. Returns the number of events."""
    body = orjson.dumps(SAMPLE)
    conn = h11.Connection(h11.CLIENT)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        req = h11.Request(
            method="POST",
            target="/v1/messages?beta=true",
            headers=[
                ("host", f"127.0.0.1:{port}"),
                ("content-type", "application/json"),
                ("content-length", str(len(body))),
                ("anthropic-version", "2023-06-01"),
                ("x-api-key", "demo-key-not-needed"),
            ],
        )
        await stream.send_all(
            conn.send(req) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
        )
        parser = SSEParser()
        t0 = time.monotonic()
        events = 0
        while True:
            ev = conn.next_event()
            if ev is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
                continue
            if isinstance(ev, h11.Response):
                print(f"HTTP {ev.status_code} from the proxy; streaming events:", file=out)
            elif isinstance(ev, h11.Data):
                for sse in parser.feed(bytes(ev.data)):
                    events += 1
                    data = orjson.loads(sse.data) if sse.data else {}
                    detail = ""
                    delta = data.get("delta") if isinstance(data, dict) else None
                    if isinstance(delta, dict) and "text" in delta:
                        detail = repr(delta["text"])
                    elif isinstance(delta, dict) and "partial_json" in delta:
                        detail = repr(delta["partial_json"])
                    print(
                        f"  +{(time.monotonic() - t0) * 1000:7.1f} ms  {sse.event.decode():<20} {detail}",
                        file=out,
                        flush=True,
                    )
            elif isinstance(ev, h11.EndOfMessage | h11.ConnectionClosed):
                return events


KINDS = {
    "anthropic": "Anthropic",
    "openai": "Chat Completions (translated)",
    "bedrock": "Amazon Bedrock (SigV4-signed, event stream translated)",
    "vertex": "Google Cloud Vertex AI (google-auth tokens)",
}
DEMO_AWS_KEY = "AKIAFAKEDEMO00000001"


async def run_demo(
    listen: Endpoint,
    env: dict[str, str],
    out: TextIO = sys.stdout,
    *,
    openai: bool = False,
    kind: str = "anthropic",
) -> None:
    """Run until SIGINT/SIGTERM: the proxy drains first, then the fake upstream
    it may still be using. ``kind``: what the fake speaks, and so the kind
    of the proxy's provider ("openai": Chat Completions, translated;
    "bedrock", "vertex": Claude on a cloud, the fake checking signatures or
    tokens as the cloud does)."""
    kind = "openai" if openai else kind
    fake_cfg, _ = demo_configs(listen, env)
    fake_server = Server(fake_cfg)
    fakes = {"openai": OpenAIFake, "bedrock": BedrockFake, "vertex": VertexFake}
    app = fakes[kind](tools=False) if kind in fakes else FakeUpstream()
    async with trio.open_nursery() as outer:
        fake_port = await outer.start(fake_server.serve_app, app)
        fake_url = f"http://127.0.0.1:{fake_port}"
        where: dict[str, object] = {
            "upstream.url": fake_url,
            "upstream.h2_prior_knowledge": "true",
        }
        if kind != "anthropic":
            provider: dict[str, object] = {"name": f"{kind}-fake", "kind": kind}
            if kind == "openai":
                provider |= {"base_url": f"{fake_url}/v1", "models": {"default": "gpt-fake"}}
            elif kind == "bedrock":
                # Keys the fake issued, for this process only: botocore's chain
                # reads them from the environment, as it would a real key's.
                os.environ["AWS_ACCESS_KEY_ID"] = DEMO_AWS_KEY
                os.environ["AWS_SECRET_ACCESS_KEY"] = issued(DEMO_AWS_KEY)[0]
                os.environ.pop("AWS_SESSION_TOKEN", None)
                provider |= {
                    "region": FAKE_REGION,
                    "base_url": fake_url,
                    "models": {"default": "us.anthropic.claude-sonnet-4-6-v1:0"},
                }
            else:
                assert isinstance(app, VertexFake)
                key = Path(tempfile.mkdtemp(prefix="trioproxy-demo-")) / "service-account.json"
                await trio.to_thread.run_sync(app.service_account_key, key, f"{fake_url}/token")
                provider |= {
                    "project": FAKE_PROJECT,
                    "region": "global",
                    "base_url": fake_url,
                    "credentials_file": str(key),
                }
            where = {"providers": [provider]}
        if "TRIOPROXY_LOG_BODIES" not in env:
            where["log_bodies"] = "all"  # so the viewer has the sample to show
        proxy_cfg = load_config(env=env, overrides={"listen": str(listen), **where})
        proxy = Server(proxy_cfg)
        proxy_done = trio.Event()

        async def serve_proxy(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
            await proxy.serve(task_status=task_status)
            proxy_done.set()

        async with trio.open_nursery() as signals:
            await signals.start(proxy.serve_signals)
            port = await outer.start(serve_proxy)
            print(
                f"trioproxy demo: fake {KINDS[kind]} upstream on 127.0.0.1:{fake_port}, "
                f"proxy on {listen.host}:{port}",
                file=out,
            )
            await stream_sample(port, out)
            base = f"http://{listen.host}:{port}"
            print(
                "\nThe proxy and the fake upstream keep running (Ctrl-C to stop). Point a client at it:\n"
                f"  export ANTHROPIC_BASE_URL={base}\n"
                f"  curl -N {base}/v1/messages -H 'content-type: application/json' -H 'anthropic-version: 2023-06-01' "
                '-d \'{"model":"claude-sonnet-4-6","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}\'\n'
                f"Watch it: {base}/dashboard (live), {base}/admin/requests (the conversation log)",
                file=out,
                flush=True,
            )
            await proxy_done.wait()
            signals.cancel_scope.cancel()
        fake_server.begin_drain()
