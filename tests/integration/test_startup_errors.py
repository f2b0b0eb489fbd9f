"""Start-up errors are one line naming the setting, and exit code 2: an
address in use (main or admin listener), an admin listener on the proxy's
own address, a TLS certificate or key that cannot be used. `check-config`
catches what it can without starting (TLS and the listener clash)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
import trio
import trustme

from tests.helpers import clean_env, spawn_trioproxy, stop


async def run(*args: str, **env: str) -> tuple[int, list[str]]:
    proc = await spawn_trioproxy(*args, env=clean_env(**env), stdout=subprocess.DEVNULL)
    assert proc.stderr is not None
    try:
        err = bytearray()
        with trio.fail_after(20):
            while data := await proc.stderr.receive_some(65536):
                err += data
            code = await proc.wait()
        return code, err.decode().strip().splitlines()
    finally:
        await stop(proc)


def busy_port() -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s


async def test_main_port_in_use() -> None:
    with busy_port() as s:
        port = s.getsockname()[1]
        code, lines = await run("serve", "--listen", f"127.0.0.1:{port}")
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"trioproxy: listen 127.0.0.1:{port}: cannot listen")
    assert "in use" in lines[0]


async def test_admin_port_in_use() -> None:
    with busy_port() as s:
        port = s.getsockname()[1]
        code, lines = await run(
            "serve", "--listen", "127.0.0.1:0", TRIOPROXY_ADMIN_LISTEN=f"127.0.0.1:{port}"
        )
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"trioproxy: admin.listen 127.0.0.1:{port}: cannot listen")


@pytest.mark.parametrize("command", ["serve", "check-config"])
async def test_admin_listener_on_the_proxys_own_address(command: str) -> None:
    code, lines = await run(
        command,
        "--listen",
        "127.0.0.1:18766",
        TRIOPROXY_ADMIN_LISTEN="0.0.0.0:18766",
    )
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("trioproxy: admin.listen 0.0.0.0:18766: the same address as listen")


@pytest.mark.parametrize("command", ["serve", "check-config"])
@pytest.mark.parametrize("broken", ["garbage-cert", "garbage-key", "other-key"])
async def test_unusable_tls_files(tmp_path: Path, command: str, broken: str) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    if broken == "garbage-cert":
        cert.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n")
    elif broken == "garbage-key":
        key.write_text("garbage")
    else:
        ca.issue_cert("elsewhere").private_key_pem.write_to_path(str(key))
    code, lines = await run(
        command, "--listen", "127.0.0.1:0", TRIOPROXY_TLS_CERT=str(cert), TRIOPROXY_TLS_KEY=str(key)
    )
    assert code == 2 and len(lines) == 1, lines
    setting = "tls.cert" if broken == "garbage-cert" else "tls.key"
    assert lines[0].startswith(f"trioproxy: {setting}: "), lines
    if broken == "other-key":
        assert "does not match tls.cert" in lines[0]


async def test_good_tls_files_pass_check_config(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    code, _ = await run("check-config", TRIOPROXY_TLS_CERT=str(cert), TRIOPROXY_TLS_KEY=str(key))
    assert code == 0
