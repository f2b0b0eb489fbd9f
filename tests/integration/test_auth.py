"""Caller auth, provider key injection and passthrough, over loopback."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import orjson
import pytest
import trio
import trio.testing

from tests.helpers import (
    H1Client,
    H2Client,
    h1_request,
    spawn_trioproxy,
    start_fake,
    start_proxy,
    stop,
)

ALICE = "alice-secret-0123456789"
BOB = "bob-secret-abcdefghijk"
PROVIDER = "sk-ant-api03-provider-key-xyz"
JSON = orjson.dumps({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})


def echoed(resp_headers: bytes | None) -> dict[str, str]:
    return {k: v for k, v in orjson.loads(resp_headers or b"[]")}


async def test_wrong_or_missing_secret_is_401_and_nothing_goes_upstream(
    nursery: trio.Nursery,
) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(
        nursery, fake.url, auth__secrets=f"alice:{ALICE}", upstream__api_key=PROVIDER
    )
    for headers in (
        [],
        [("x-api-key", "nope-nope-nope-nope-nope")],
        [("authorization", f"Bearer {ALICE}x")],
    ):
        r = await h1_request(proxy.port, "POST", "/v1/messages", headers, JSON)
        doc = orjson.loads(r.body)
        assert (r.status, doc["error"]["type"]) == (401, "authentication_error")
        assert ALICE not in r.body.decode() and "nope" not in r.body.decode()
    assert (await h1_request(proxy.port, "GET", "/health")).status == 200  # stays open
    assert (await h1_request(proxy.port, "GET", "/livez")).status == 200
    assert fake.fake is not None and fake.fake.requests == 0


async def test_inject_mode_replaces_the_callers_secret(
    nursery: trio.Nursery, upstream_opts: dict[str, object]
) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(
        nursery,
        fake.url,
        auth__secrets=f"alice:{ALICE},bob:{BOB}",
        upstream__api_key=PROVIDER,
        **upstream_opts,
    )
    for headers in (
        [("x-api-key", ALICE)],
        [("authorization", f"Bearer {BOB}")],
    ):  # both live: rotation
        r = await h1_request(
            proxy.port, "POST", "/echo/x", [*headers, ("anthropic-beta", "oauth-2025-04-20")], b"{}"
        )
        assert r.status == 200
        seen = echoed(r.header(b"x-echo-headers"))
        assert seen["x-api-key"] == PROVIDER and "authorization" not in seen
        assert seen["anthropic-beta"] == "oauth-2025-04-20"
        assert ALICE not in str(seen) and BOB not in str(seen)
    h2 = await H2Client.connect(nursery, proxy.port)
    res = await h2.request("POST", "/echo/h2", [("x-api-key", BOB)], b"{}")
    assert (
        res.status == 200 and echoed(dict(res.headers)[b"x-echo-headers"])["x-api-key"] == PROVIDER
    )
    await h2.aclose()


async def test_passthrough_on_loopback_without_auth(nursery: trio.Nursery) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url)
    oat = "sk-ant-oat01-developer-own-token"
    r = await h1_request(
        proxy.port,
        "POST",
        "/echo/x",
        [("authorization", f"Bearer {oat}"), ("anthropic-beta", "oauth-2025-04-20")],
        b"{}",
    )
    seen = echoed(r.header(b"x-echo-headers"))
    assert seen["authorization"] == f"Bearer {oat}" and seen["anthropic-beta"] == "oauth-2025-04-20"
    assert "x-api-key" not in seen


async def test_admin_paths_need_the_admin_token(nursery: trio.Nursery) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(
        nursery,
        fake.url,
        auth__secrets=f"alice:{ALICE}",
        upstream__api_key=PROVIDER,
        admin__token="admin-token-0123456789",
    )
    caller = await h1_request(proxy.port, "GET", "/admin/providers", [("x-api-key", ALICE)])
    assert caller.status == 401  # a caller secret is not the admin token
    token = [("authorization", "Bearer admin-token-0123456789")]
    admin = await h1_request(proxy.port, "GET", "/admin/providers", token)
    assert admin.status == 200 and orjson.loads(admin.body)["providers"][0]["name"] == "default"
    unknown = await h1_request(proxy.port, "GET", "/admin/nothing-here", token)
    assert unknown.status == 404 and b"reserved by trioproxy" in unknown.body


async def test_secrets_never_reach_the_logs() -> None:
    """A real `serve` process: bad and good requests, then everything it wrote
    is searched for the secrets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIOPROXY_")}
    env.update(
        PYTHONUNBUFFERED="1",
        TRIOPROXY_LOG_LEVEL="debug",
        TRIOPROXY_AUTH_SECRETS=f"alice:{ALICE},{BOB}",
        TRIOPROXY_UPSTREAM_API_KEY=PROVIDER,
        TRIOPROXY_ADMIN_TOKEN="admin-token-0123456789",
        TRIOPROXY_DRAIN_GRACE="0",
    )
    async with trio.open_nursery() as nursery:
        fake = await start_fake(nursery)
        check = await trio.run_process(
            [sys.executable, "-m", "trioproxy", "check-config"],
            env=env,
            capture_stdout=True,
            capture_stderr=True,
        )
        assert check.returncode == 0
        proc = await spawn_trioproxy(
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            fake.url,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert proc.stderr is not None
        log = bytearray()
        try:
            with trio.fail_after(20):
                while not (m := re.search(rb"listening on http://127\.0\.0\.1:(\d+)", bytes(log))):
                    log += await proc.stderr.receive_some(65536)
            port = int(m.group(1))
            for key in (ALICE, BOB, ALICE[:-1] + "!", "admin-token-0123456789", PROVIDER):
                for header in ("x-api-key", "authorization"):
                    value = key if header == "x-api-key" else f"Bearer {key}"
                    await h1_request(port, "POST", "/v1/messages", [(header, value)], JSON)
                    await h1_request(port, "GET", "/admin/x", [(header, value)])
            async with await H1Client.connect(port) as c:
                await c.stream.send_all(
                    b"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: "
                    + ALICE.encode()
                    + b"\r\ncontent-length: 5\r\n\r\n"
                )
            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(15):
                while data := await proc.stderr.receive_some(65536):
                    log += data
                assert await proc.wait() == 0
        finally:
            await stop(proc)
        nursery.cancel_scope.cancel()
    everything = log.decode(errors="replace") + check.stdout.decode() + check.stderr.decode()
    assert "alice" in check.stdout.decode()  # names are shown...
    for secret in (ALICE, BOB, ALICE[:-1], "admin-token-0123456789", PROVIDER):
        assert secret not in everything  # ...secrets never


def test_refuses_public_listener_without_auth() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIOPROXY_")}
    r = subprocess.run(
        [sys.executable, "-m", "trioproxy", "serve", "--listen", "0.0.0.0:0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2
    assert (
        r.stderr.count("\n") == 1
        and "TRIOPROXY_AUTH_SECRETS" in r.stderr
        and "TRIOPROXY_TRUST_FRONT_PROXY" in r.stderr
    )


async def test_separate_admin_listener(nursery: trio.Nursery) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(
        nursery, fake.url, admin__listen="127.0.0.1:0", admin__token="admin-token-0123456789"
    )
    admin_port = proxy.server.admin_port
    assert admin_port is not None and admin_port != proxy.port
    token = [("authorization", "Bearer admin-token-0123456789")]
    on_main = await h1_request(proxy.port, "GET", "/admin/providers", token)
    assert on_main.status == 404 and b"admin listener" in on_main.body  # not on the proxy port
    on_admin = await h1_request(admin_port, "GET", "/admin/providers", token)
    assert on_admin.status == 200 and b'"providers"' in on_admin.body
    assert (await h1_request(admin_port, "GET", "/admin/providers")).status == 401
    assert (await h1_request(admin_port, "GET", "/livez")).status == 200
    forwarded = await h1_request(admin_port, "POST", "/v1/messages", [], JSON)
    assert forwarded.status == 404  # the admin listener never forwards
    assert fake.fake is not None and fake.fake.requests == 0


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    """One access record carries a batch of lines."""
    return [
        orjson.loads(line)
        for rec in caplog.records
        if rec.name == "trioproxy.access"
        for line in rec.getMessage().splitlines()
    ]


async def test_one_access_line_per_request_with_tokens(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, upstream_opts: dict[str, object]
) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="trioproxy.access")
    fake = await start_fake(nursery)
    proxy = await start_proxy(
        nursery,
        fake.url,
        auth__secrets=f"alice:{ALICE}",
        upstream__api_key=PROVIDER,
        **upstream_opts,
    )
    body = orjson.dumps(
        {
            "model": "claude-opus-4-7",
            "max_tokens": 5,
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        }
    )
    r = await h1_request(proxy.port, "POST", "/v1/messages?beta=true", [("x-api-key", ALICE)], body)
    assert r.status == 200
    denied = await h1_request(
        proxy.port, "POST", "/v1/messages", [("x-api-key", "wrong-wrong-wrong-wrong")], body
    )
    assert denied.status == 401
    with trio.fail_after(5):  # the journal writes in batches, off the loop
        while len(lines := access_lines(caplog)) < 2:  # noqa: ASYNC110 (a thread logs)
            await trio.sleep(0.05)
    assert len(lines) == 2
    ok, bad = lines
    assert ok["caller"] == "alice" and ok["status"] == 200 and ok["stream"] is True
    assert (
        ok["path"] == "/v1/messages" and ok["model"] == ok["model_requested"] == "claude-opus-4-7"
    )
    assert ok["input_tokens"] > 0 and ok["output_tokens"] > 0 and ok["usage_complete"] is True
    assert ok["upstream_request_id"].startswith("req_fake_") and ok["bytes_out"] == len(r.body)
    assert ok["bytes_in"] == len(body) and ok["time_to_headers_s"] >= 0
    assert (bad["status"], bad["caller"]) == (401, "-")
    everything = " ".join(rec.getMessage() for rec in caplog.records)
    for secret in (ALICE, PROVIDER, "wrong-wrong-wrong-wrong"):
        assert secret not in everything
