"""Reload (SIGHUP): new requests see the new configuration, requests in flight
and open connections carry on, an invalid file changes nothing."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import orjson
import trio

from tests.helpers import H1Client, clean_env, h1_request, spawn_trioproxy, start_fake, stop
from trioproxy.config import Config, load_config
from trioproxy.server import Server

OLD = "old-secret-0123456789abcd"
NEW = "new-secret-0123456789abcd"
STREAM = orjson.dumps(
    {"model": "m", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "x"}]}
)


def write_config(tmp_path: Path, upstream: str, secret: str) -> Path:
    (tmp_path / "secrets").write_text(f"# callers\nteam:{secret}\n")
    (tmp_path / "provider.key").write_text("sk-ant-provider-0123456789\n")
    toml = tmp_path / "trioproxy.toml"
    toml.write_text(
        f'listen = "127.0.0.1:0"\n[upstream]\nurl = "{upstream}"\napi_key_file = "{tmp_path / "provider.key"}"\n'
        f'[auth]\nsecrets_file = "{tmp_path / "secrets"}"\n'
    )
    return toml


async def test_reload_rotates_secrets_and_keeps_streams(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    fake = await start_fake(nursery)
    toml = write_config(tmp_path, fake.url, OLD)

    def loader() -> Config:
        return load_config(str(toml), env={})

    server = Server(loader(), loader=loader)
    port = await nursery.start(server.serve)
    streaming = await H1Client.connect(port)
    await streaming.send_request(
        "POST", "/v1/messages", [("x-api-key", OLD), ("x-fake-fault", "event-delay=0.1")], STREAM
    )
    assert await streaming.receive_some()  # in flight

    (tmp_path / "secrets").write_text(f"team-2:{NEW}\n")  # rotate: the old one removed
    assert server.reload()
    assert (await h1_request(port, "GET", "/v1/models", [("x-api-key", NEW)])).status == 200
    assert (await h1_request(port, "GET", "/v1/models", [("x-api-key", OLD)])).status == 401
    with trio.fail_after(10):
        resp = await streaming.read_response()  # the stream in flight finished
    assert resp.complete and resp.body.endswith(b'data: {"type":"message_stop"}\n\n')
    await streaming.aclose()

    toml.write_text("this is [not toml")
    assert not server.reload()  # rejected...
    assert (
        await h1_request(port, "GET", "/v1/models", [("x-api-key", NEW)])
    ).status == 200  # ...nothing changed
    (tmp_path / "secrets").write_text("team:short\n")  # invalid secrets file: also rejected
    write_config(tmp_path, fake.url, "x")
    assert not server.reload()
    assert (await h1_request(port, "GET", "/v1/models", [("x-api-key", NEW)])).status == 200


async def test_sighup_reloads_a_running_serve(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    rx = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await rx.bind(str(sock_path))
    env = clean_env(NOTIFY_SOCKET=str(sock_path))
    async with trio.open_nursery() as nursery:
        fake = await start_fake(nursery)
        toml = write_config(tmp_path, fake.url, OLD)
        proc = await spawn_trioproxy(
            "serve", "--config", str(toml), env=env, stderr=subprocess.DEVNULL
        )
        try:
            with trio.fail_after(20):
                ready = (await rx.recv(1000)).decode()
            port = int(ready.rsplit(":", 1)[1])
            assert (await h1_request(port, "GET", "/v1/models", [("x-api-key", OLD)])).status == 200
            (tmp_path / "secrets").write_text(f"team-2:{NEW}\n")
            proc.send_signal(signal.SIGHUP)
            with trio.fail_after(10):
                assert (await rx.recv(1000)).decode().startswith("RELOADING=1")
                assert (
                    (await rx.recv(1000))
                    .decode()
                    .startswith("READY=1\nSTATUS=configuration reloaded")
                )
            assert (await h1_request(port, "GET", "/v1/models", [("x-api-key", NEW)])).status == 200
            assert (await h1_request(port, "GET", "/v1/models", [("x-api-key", OLD)])).status == 401
            toml.write_text("[broken")
            proc.send_signal(signal.SIGHUP)
            with trio.fail_after(10):
                assert (await rx.recv(1000)).decode().startswith("RELOADING=1")
                assert "reload rejected" in (await rx.recv(1000)).decode()
            assert (await h1_request(port, "GET", "/v1/models", [("x-api-key", NEW)])).status == 200
            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(10):
                assert await proc.wait() == 0
        finally:
            await stop(proc)
            rx.close()
        nursery.cancel_scope.cancel()
