"""The audit trail: administrative changes through the admin API (by the
admin token's name), the CLI (by the OS user) and a reload (the settings it
changed), read back through GET /admin/api/audit, `trioproxy audit` and the
viewer's tab in a real browser; secrets never appear, only their hashes."""

from __future__ import annotations

import base64
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

import orjson
import trio

from tests.browser import Browser, require_chromium
from tests.helpers import Running, h1_request, start_fake
from tests.integration.test_openapi import check
from tests.integration.test_viewer import artifacts
from trioproxy.config import Config, load_config
from trioproxy.server import Server

OPS = "ops-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"


async def call(port: int, method: str, path: str, token: str, doc: Any = None) -> Any:
    body = orjson.dumps(doc) if doc is not None else b""
    r = await h1_request(port, method, path, [("authorization", f"Bearer {token}")], body)
    assert r.status < 300, r.body
    return orjson.loads(r.body)


async def test_changes_are_recorded_with_who_and_read_back_everywhere(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    fake = await start_fake(nursery)
    callers = tmp_path / "callers.toml"
    toml = tmp_path / "trioproxy.toml"

    def write_config(slow: float) -> None:
        toml.write_text(
            f'state_dir = "{tmp_path}"\nlog_slow_seconds = {slow}\n'
            f'[upstream]\nurl = "{fake.url}"\napi_key = "sk-ant-provider"\n'
            f'[auth]\ncallers_file = "{callers}"\n'
            f'[admin]\ntoken = "{ADMIN}"\ntokens = ["ops:{OPS}"]\n'
        )

    write_config(30)

    def loader() -> Config:
        return load_config(str(toml), env={})

    server = Server(loader(), loader=loader)
    proxy = Running(server, await nursery.start(server.serve))
    added = await call(proxy.port, "POST", "/admin/callers", OPS, {"name": "bob", "rpm": 10})
    rotated = await call(proxy.port, "PATCH", "/admin/callers/bob", OPS, {"rotate": True})
    await call(proxy.port, "PATCH", "/admin/callers/bob", ADMIN, {"rpm": 20})
    await call(proxy.port, "POST", "/admin/route", ADMIN, {"mode": "single", "provider": "default"})
    # The CLI, beside the server, as this OS user.
    env = {**os.environ, "TRIOPROXY_STATE_DIR": str(tmp_path)}
    done = await trio.run_process(
        [sys.executable, "-m", "trioproxy", "callers", "--file", str(callers), "add", "carol"],
        env=env,
        capture_stdout=True,
    )
    cli_secret = done.stdout.decode().splitlines()[-1]
    await call(proxy.port, "DELETE", "/admin/callers/bob", OPS)
    write_config(45)
    assert server.reload()
    with trio.fail_after(10):
        while server.state.audit.written < 6:  # noqa: ASYNC110 (written in a thread)
            await trio.sleep(0.05)

    r = await h1_request(
        proxy.port, "GET", "/admin/api/audit?since=1h", [("authorization", f"Bearer {OPS}")]
    )
    check(
        orjson.loads((await h1_request(proxy.port, "GET", "/openapi.json", [])).body),
        "/admin/api/audit",
        "get",
        200,
        r.body,
    )
    entries = list(reversed(orjson.loads(r.body)["entries"]))  # oldest first
    got = [(e["who"], e["action"], e["subject"], e["source"]) for e in entries]
    me = getpass.getuser()
    assert got == [
        ("ops", "caller.add", "bob", "api"),
        ("ops", "caller.rotate", "bob", "api"),
        ("admin", "caller.update", "bob", "api"),
        ("admin", "route.switch", "", "api"),
        (me, "caller.add", "carol", "cli"),
        ("ops", "caller.revoke", "bob", "api"),
        ("reload", "reload.settings", "", "signal"),
    ]
    add, rotate, update, switch, _, revoke, reload = entries
    assert add["before"] is None and add["after"]["rpm"] == 10
    assert rotate["before"]["secret_sha256"] != rotate["after"]["secret_sha256"]
    assert (update["before"]["rpm"], update["after"]["rpm"]) == (10, 20)
    assert switch["after"] == {"mode": "single", "provider": "default"}
    assert revoke["after"] is None and revoke["before"]["name"] == "bob"
    assert reload["before"] == {"log_slow_seconds": 30.0} and reload["after"] == {
        "log_slow_seconds": 45.0
    }
    everything = r.body.decode()
    for secret in (added["secret"], rotated["secret"], cli_secret, OPS, ADMIN):
        assert secret not in everything

    out = await trio.run_process(
        [sys.executable, "-m", "trioproxy", "audit", "--since", "1h", "--format", "json"],
        env=env,
        capture_stdout=True,
    )
    assert [e["action"] for e in json.loads(out.stdout)] == [e["action"] for e in reversed(entries)]

    exe = require_chromium()

    def drive() -> list[str]:
        b = Browser(exe, width=1400, height=800)
        try:
            basic = base64.b64encode(f"me:{OPS}".encode()).decode()
            b.call("Network.enable")
            b.call("Network.setExtraHTTPHeaders", headers={"Authorization": f"Basic {basic}"})
            b.open(f"http://127.0.0.1:{proxy.port}/admin/requests#audit")
            b.wait_for("document.querySelectorAll('#audit-rows tr').length === 7")
            b.screenshot(artifacts() / "viewer-audit.png")
            return list(
                b.evaluate(
                    "[...document.querySelectorAll('#audit-rows tr td:nth-child(3)')].map(t => t.textContent)"
                )
            )
        finally:
            b.close()

    shown = await trio.to_thread.run_sync(drive)
    assert shown[0] == "reload.settings" and shown[-1] == "caller.add"
