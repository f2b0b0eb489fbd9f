"""The Ansible role: syntax, ansible-lint (production profile), a check-mode
run against localhost, and its templates rendered for real and loaded back."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.helpers import unless_in_ci
from trioproxy.config import load_config

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE = ROOT / "ansible"
BIN = Path(sys.executable).parent
SECRETS = {
    "trioproxy_caller_secrets": [
        {"name": "alice", "secret": "alice-secret-0123456789"},
        {"name": "bob", "secret": "bob-secret-0123456789xx"},
    ],
    "trioproxy_upstream_api_key": "sk-ant-provider-0123456789",
    "trioproxy_admin_token": "admin-token-0123456789",
    "trioproxy_extra_env": {"TRIOPROXY_LOG_LEVEL": "warning"},
    "trioproxy_admin_port": 8788,
    "trioproxy_admin_cidrs": ["192.0.2.0/24"],
}
pytestmark = unless_in_ci(
    not (BIN / "ansible-playbook").exists(), "ansible is not installed (make test installs it)"
)


def run(args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"),
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    return subprocess.run(
        args, capture_output=True, text=True, timeout=600, env=env, cwd=ANSIBLE, **kw
    )  # type: ignore[call-overload]


def local_play(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    inv = tmp_path / "inventory.ini"
    inv.write_text(
        f"[trioproxy]\nlocalhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
    )
    import json

    extra_vars = {
        **SECRETS,
        "ansible_become": False,
        "trioproxy_manage_service": False,  # no systemd as PID 1 in CI
        "trioproxy_group": "root",
        "trioproxy_config_dir": str(tmp_path / "etc"),
        "trioproxy_home": str(tmp_path / "opt"),
        "trioproxy_venv": str(tmp_path / "opt" / "venv"),
        "trioproxy_wheel_dir": str(tmp_path / "dist"),
        "trioproxy_callers_file": str(tmp_path / "state" / "callers.toml"),
        # This checkout's trioproxy validates the rendered TOML (the venv
        # under tmp_path exists only once a full play has installed it).
        "trioproxy_check_config": f"{sys.executable} -m trioproxy check-config",
    }
    return run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(inv),
            "playbook.yml",
            "-e",
            json.dumps(extra_vars),
            *extra,
        ]
    )


def test_role_version_matches_the_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    defaults = (ANSIBLE / "roles/trioproxy/defaults/main.yml").read_text()
    assert f'trioproxy_version: "{pyproject["project"]["version"]}"' in defaults


def test_syntax_check() -> None:
    r = run(
        [str(BIN / "ansible-playbook"), "--syntax-check", "-i", "inventory.ini", "playbook.yml"]
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_ansible_lint_production_profile() -> None:
    r = run([str(BIN / "ansible-lint"), "--profile", "production", "--nocolor", "."])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 failure(s), 0 warning(s)" in r.stdout + r.stderr


def test_check_mode_against_localhost(tmp_path: Path) -> None:
    r = local_play(tmp_path, "--check", "--diff", "--skip-tags", "firewall")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    assert re.search(r"localhost\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0", r.stdout)
    for secret in (
        "alice-secret-0123456789",
        "sk-ant-provider-0123456789",
        "admin-token-0123456789",
    ):
        assert secret not in r.stdout  # no_log on every task that handles one


def test_templates_render_load_and_are_idempotent(tmp_path: Path) -> None:
    first = local_play(tmp_path, "--tags", "config")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr
    etc = tmp_path / "etc"
    env_lines = [
        line
        for line in (etc / "trioproxy.env").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    env = dict(line.split("=", 1) for line in env_lines)  # systemd EnvironmentFile syntax
    assert env == {
        "TRIOPROXY_ADMIN_TOKEN": "admin-token-0123456789",
        "TRIOPROXY_LOG_LEVEL": "warning",
    }
    assert (etc / "trioproxy.env").stat().st_mode & 0o777 == 0o600
    assert (etc / "caller-secrets").stat().st_mode & 0o077 == 0o040
    cfg = load_config(str(etc / "trioproxy.toml"), env=env)  # trioproxy's own loader accepts it
    assert [s.name for s in cfg.auth.secrets] == ["alice", "bob"]
    assert cfg.auth.callers_file == str(tmp_path / "state" / "callers.toml")
    assert (
        cfg.upstream.credential is not None
        and cfg.upstream.credential.value == b"sk-ant-provider-0123456789"
    )
    assert cfg.auth.admin_token == b"admin-token-0123456789" and cfg.log_level == "warning"
    assert str(cfg.listen) == "0.0.0.0:8787" and cfg.timeouts.drain == 600
    assert cfg.timeouts.drain_grace == 10
    assert str(cfg.admin_listen) == "0.0.0.0:8788"
    second = local_play(tmp_path, "--tags", "config")
    assert re.search(r"localhost\s+: ok=\d+\s+changed=0\s", second.stdout), second.stdout[-2000:]


def test_providers_render_into_a_valid_routing_table(tmp_path: Path) -> None:
    import json

    providers = {
        "trioproxy_providers": [
            {
                "name": "anthropic",
                "base_url": "https://api.anthropic.com",
                "api_key": "sk-ant-provider-0123456789",
                "priority": 1,
                "quota": {"tokens": 1000000, "window": "weekly"},
            },
            {
                "name": "minimax",
                "base_url": "https://api.minimax.io/anthropic",
                "api_key": "sk-minimax-0123456789",
                "auth": "bearer",
                "priority": 2,
                "cooldown_s": 1800,
                "models": {"claude-opus-*": "MiniMax-M2", "default": "MiniMax-M2"},
                "drop_fields": ["context_management"],
            },
        ],
        "trioproxy_model_aliases": {"opus": "claude-opus-4-5"},
    }
    r = local_play(tmp_path, "--tags", "config", "-e", json.dumps(providers))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    assert "sk-minimax-0123456789" not in r.stdout
    etc = tmp_path / "etc"
    assert (etc / "provider-minimax.key").read_text() == "sk-minimax-0123456789\n"
    cfg = load_config(str(etc / "trioproxy.toml"), env={})
    anthropic, minimax = cfg.routing.providers
    assert minimax.upstream.credential is not None
    assert minimax.upstream.credential.value == b"Bearer sk-minimax-0123456789"
    assert minimax.cooldown_s == 1800 and minimax.map_model("claude-opus-4-5") == "MiniMax-M2"
    assert minimax.drop_fields == frozenset({"context_management"})
    assert anthropic.quota is not None and anthropic.quota.tokens == 1000000
    assert cfg.routing.resolve_alias("opus") == "claude-opus-4-5"


def test_makefile_has_the_operator_targets() -> None:
    r = subprocess.run(["make", "-s", "help"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    listed = {line.split("\t", 1)[0] for line in r.stdout.splitlines()}
    wanted = {
        "install",
        "run",
        "demo",
        "test",
        "bench",
        "deploy",
        "logs",
        "status",
        "reload",
        "health",
        "metrics",
        "help",
    }
    assert wanted <= listed, wanted - listed


def test_workers_and_redis_render_and_check(tmp_path: Path) -> None:
    """trioproxy_workers and the conversation log go to the TOML,
    trioproxy_state_redis_url and trioproxy_database_url (they may hold a
    password) to the environment file; check mode takes them all."""
    import json

    scale = json.dumps(
        {
            "trioproxy_workers": "auto",
            "trioproxy_state_redis_url": "redis://:redis-pw-0123@10.0.0.5:6379/0",
            "trioproxy_database_url": "postgresql://tp:pg-pw-0123@10.0.0.6/trioproxy",
            "trioproxy_log_bodies": "errors",
            "trioproxy_log_retention_days": 30,
        }
    )
    checked = local_play(tmp_path, "--check", "--diff", "--skip-tags", "firewall", "-e", scale)
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr
    assert "redis-pw-0123" not in checked.stdout and "pg-pw-0123" not in checked.stdout
    r = local_play(tmp_path, "--tags", "config", "-e", scale)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    etc = tmp_path / "etc"
    env = dict(
        line.split("=", 1)
        for line in (etc / "trioproxy.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert env["TRIOPROXY_STATE_REDIS_URL"] == "redis://:redis-pw-0123@10.0.0.5:6379/0"
    cfg = load_config(str(etc / "trioproxy.toml"), env=env)
    assert cfg.workers == 0  # auto: one per CPU
    assert cfg.state_redis_url == "redis://:redis-pw-0123@10.0.0.5:6379/0"
    assert cfg.database_url == "postgresql://tp:pg-pw-0123@10.0.0.6/trioproxy"
    assert "pg-pw-0123" not in (etc / "trioproxy.toml").read_text()  # the password: env file only
    assert cfg.log_bodies == "errors" and cfg.log_retention_days == 30


def test_the_wheel_changes_exactly_when_the_code_does(tmp_path: Path) -> None:
    """What lets `make deploy` ship new code without a version bump and
    change nothing otherwise: the role builds with SOURCE_DATE_EPOCH fixed,
    so the same code gives the same bytes, and other code other bytes."""
    import hashlib
    import shutil

    source = tmp_path / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "node_modules", "bench", "tests", "build", "*.egg-info"
        ),
    )
    env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800"}

    def build(out: str) -> str:
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "--wheel-dir",
                str(tmp_path / out),
                str(source),
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr
        (wheel,) = (tmp_path / out).glob("trioproxy-*.whl")
        return hashlib.sha256(wheel.read_bytes()).hexdigest()

    first, again = build("one"), build("two")
    assert first == again
    (source / "trioproxy" / "workers" / "policy.py").write_text(
        (source / "trioproxy" / "workers" / "policy.py").read_text() + "\n# a code change\n"
    )
    assert build("three") != first
