"""Managing callers while `trioproxy serve` runs: the CLI and
/admin/callers end to end against a real server process. Add, use,
rotate (the old secret fails, the new one works), revoke; no restart, and
no secret in any log."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import trio

from tests.helpers import clean_env, h1_request, serving, start_fake

JSON = orjson.dumps(
    {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
)
TOKEN = "admin-token-0123456789abcdef"
APPLIED_WITHIN = 2.0  # seconds: what the documentation promises for a change to the file


async def cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    done = await trio.run_process(
        [sys.executable, "-m", "trioproxy", "callers", *args],
        env=env,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def status_with(port: int, secret: str, body: bytes = JSON) -> int:
    r = await h1_request(port, "POST", "/v1/messages", [("x-api-key", secret)], body)
    return r.status


async def until_status(port: int, secret: str, want: int) -> float:
    """Seconds until a request with ``secret`` gets ``want``."""
    start = trio.current_time()
    with trio.fail_after(APPLIED_WITHIN):
        while True:
            if await status_with(port, secret) == want:
                return trio.current_time() - start
            await trio.sleep(0.05)


SPEC: dict[str, Any] = {}


async def admin(
    port: int, method: str, path: str, doc: object | None = None
) -> tuple[int, dict[str, Any]]:
    """An /admin/callers call, its answer checked against /openapi.json."""
    body = orjson.dumps(doc) if doc is not None else None
    r = await h1_request(port, method, path, [("authorization", f"Bearer {TOKEN}")], body)
    if not SPEC:
        SPEC.update(orjson.loads((await h1_request(port, "GET", "/openapi.json")).body))
    template = "/admin/callers" if path == "/admin/callers" else "/admin/callers/{name}"
    response = SPEC["paths"][template][method.lower()]["responses"][str(r.status)]
    if "$ref" in response:
        response = SPEC["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    schema = response["content"]["application/json"]["schema"]
    answer: dict[str, Any] = orjson.loads(r.body)
    jsonschema.validate(answer, schema, cls=jsonschema.Draft202012Validator)
    return r.status, answer


async def test_the_cli_and_the_api_manage_callers_without_a_restart(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    fake = await start_fake(nursery)
    callers_file = tmp_path / "callers.toml"
    key = tmp_path / "provider.key"
    key.write_text("sk-ant-api03-provider-key")
    toml = tmp_path / "trioproxy.toml"
    toml.write_text(
        f'[upstream]\nurl = "{fake.url}"\napi_key_file = "{key}"\n'
        f'[auth]\ncallers_file = "{callers_file}"\n[admin]\ntoken = "{TOKEN}"\n'
    )
    env = clean_env()
    async with serving("--config", str(toml), env=env) as proxy:
        port = proxy.port
        # Auth is on while the file does not even exist yet.
        assert await status_with(port, "tp-nobody-0123456789") == 401

        # -- the CLI: add, use, rotate, revoke ------------------------------
        code, out, err = await cli("--config", str(toml), "add", "alice", "--rpm", "100", env=env)
        assert code == 0, err
        alice = out.strip().splitlines()[-1]
        assert alice.startswith("tp-") and alice not in callers_file.read_text()
        applied = await until_status(port, alice, 200)
        code, out, _ = await cli("--config", str(toml), "rotate", "alice", env=env)
        assert code == 0
        alice2 = out.strip().splitlines()[-1]
        await until_status(port, alice, 401)
        assert await status_with(port, alice2) == 200
        code, out, err = await cli(
            "--config", str(toml), "set", "alice", "models=claude-sonnet-*", env=env
        )
        assert code == 0, err
        await until_status(port, alice2, 403)  # haiku is no longer allowed
        code, out, err = await cli(
            "--config",
            str(toml),
            "list",
            "--url",
            f"http://127.0.0.1:{port}",
            "--token",
            TOKEN,
            env=env,
        )
        assert code == 0, err
        row = next(ln for ln in out.splitlines() if ln.startswith("alice"))
        used = re.search(r" (\d+)/100 ", row)  # requests in the last minute / rpm
        assert used is not None and int(used.group(1)) >= 3, row
        assert "claude-sonnet-*" in row
        code, _, _ = await cli("--config", str(toml), "revoke", "alice", env=env)
        assert code == 0
        await until_status(port, alice2, 401)
        code, _, err = await cli("--config", str(toml), "revoke", "alice", env=env)
        assert code == 1 and "no caller named 'alice'" in err

        # -- the API: applied before it answers ------------------------------
        status, doc = await admin(port, "POST", "/admin/callers", {"name": "bob", "tpm": 5000})
        assert status == 201, doc
        bob = str(doc["secret"])
        assert await status_with(port, bob) == 200  # at once: no waiting
        status, doc = await admin(port, "GET", "/admin/callers")
        assert status == 200 and bob not in orjson.dumps(doc).decode()
        rows = {r["name"]: r for r in doc["callers"]}
        assert rows["bob"]["tpm"] == 5000 and rows["bob"]["tokens_last_minute"] > 0
        status, doc = await admin(port, "PATCH", "/admin/callers/bob", {"rotate": True, "rpm": 7})
        assert status == 200 and doc["caller"]["rpm"] == 7
        bob2 = str(doc["secret"])
        assert await status_with(port, bob) == 401 and await status_with(port, bob2) == 200
        for bad, want in (
            ({"name": "bob"}, 409),
            ({"name": "bad name"}, 400),
            ({"name": "carol", "rpm": "many"}, 400),
            ({"name": "carol", "colour": "red"}, 400),
        ):
            status, doc = await admin(port, "POST", "/admin/callers", bad)
            assert status == want, (bad, doc)
            assert doc["type"] == "error"
        assert (await admin(port, "PATCH", "/admin/callers/nobody", {"rpm": 1}))[0] == 404
        status, _ = await admin(port, "DELETE", "/admin/callers/bob")
        assert status == 200
        assert await status_with(port, bob2) == 401
        # Without the admin token: refused.
        r = await h1_request(port, "GET", "/admin/callers", [("x-api-key", bob2)])
        assert r.status == 401

        assert applied < APPLIED_WITHIN
        for secret in (alice, alice2, bob, bob2):
            assert secret.encode() not in proxy.log
    assert (callers_file.stat().st_mode & 0o777) == 0o600
