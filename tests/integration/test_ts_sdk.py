"""The official TypeScript SDK (tests/js, installed by `make test`) through the proxy."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import trio

from tests.helpers import start_fake, start_proxy, unless_in_ci
from trioproxy.fake.messages import DEFAULT_TEXT

JS = Path(__file__).resolve().parents[1] / "js"


@unless_in_ci(shutil.which("node") is None, "node is not installed on this machine")
async def test_typescript_sdk_through_the_proxy(
    nursery: trio.Nursery, upstream_opts: dict[str, object]
) -> None:
    assert (JS / "node_modules" / "@anthropic-ai" / "sdk").is_dir(), (
        "run `make test` (it installs tests/js)"
    )
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, **upstream_opts)
    result = await trio.run_process(
        ["node", str(JS / "ts_sdk_check.mjs")],
        capture_stdout=True,
        capture_stderr=True,
        env={"BASE_URL": proxy.url, "PATH": "/usr/local/bin:/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    out = json.loads(result.stdout)
    assert out["json_text"] == DEFAULT_TEXT and out["stream_text"] == DEFAULT_TEXT
    assert out["events"][0] == "message_start" and out["events"][-1] == "message_stop"
    assert out["tool_input"] == {"query": "weather in Paris", "units": "metric"}
    assert set(out["usage"]) >= {
        "input_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "output_tokens",
    }
    assert out["error"] == {"status": 429, "type": "rate_limit_error", "retry_after": "4"}


def test_js_client_dependencies_are_pinned() -> None:
    pkg = json.loads((JS / "package.json").read_text())
    assert all(v[0].isdigit() for v in pkg["dependencies"].values())  # exact versions, no ranges
    assert (
        subprocess.run(["git", "check-ignore", "-q", str(JS / "node_modules")], cwd=JS).returncode
        == 0
    )
