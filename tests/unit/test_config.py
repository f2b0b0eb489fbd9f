import subprocess
import sys
from pathlib import Path

import pytest

from trioproxy.config import ConfigError, load_config


def test_defaults() -> None:
    cfg = load_config(env={})
    assert str(cfg.listen) == "127.0.0.1:8787"
    assert str(cfg.upstream.origin) == "https://api.anthropic.com"
    assert cfg.timeouts.response_headers == 600 and cfg.limits.max_body_bytes == 32 * 1024 * 1024


def test_precedence_flags_over_env_over_toml(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        'listen = "127.0.0.1:1111"\n[upstream]\nurl = "http://toml:1"\n[timeouts]\nconnect = 3\n'
    )
    cfg = load_config(
        str(f), env={"TRIOPROXY_UPSTREAM": "http://env:2"}, overrides={"listen": "127.0.0.1:3333"}
    )
    assert cfg.listen.port == 3333
    assert cfg.upstream.origin.host == "env"
    assert cfg.timeouts.connect == 3


@pytest.mark.parametrize(
    ("toml", "env", "needle"),
    [
        ("[timeouts]\nconect = 3\n", {}, "timeouts.conect: unknown setting"),
        ("", {"TRIOPROXY_LISTN": "x"}, "TRIOPROXY_LISTN: unknown setting"),
        ("", {"TRIOPROXY_CONNECT_TIMEOUT": "-1"}, "TRIOPROXY_CONNECT_TIMEOUT: bad value"),
        ("", {"TRIOPROXY_UPSTREAM": "ftp://x"}, "upstream.url"),
        ("", {"TRIOPROXY_LISTEN": "nope"}, "listen: expected HOST:PORT"),
        ("", {"TRIOPROXY_TLS_CERT": "/nonexistent.pem"}, "tls.cert / tls.key"),
        ("[limits]\nmax_body_bytes = 'big'\n", {}, "limits.max_body_bytes (in"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, toml: str, env: dict[str, str], needle: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_config(str(f), env=env)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_cli_exit_code_2_and_check_config(tmp_path: Path) -> None:
    missing = subprocess.run(
        [sys.executable, "-m", "trioproxy", "check-config", "--config", str(tmp_path / "no.toml")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "file not found" in missing.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "trioproxy", "check-config", "--upstream", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert ok.returncode == 0, ok.stderr
    assert "upstream.url = http://127.0.0.1:9" in ok.stdout
    assert "timeouts.drain = 600.0" in ok.stdout


def test_an_override_that_is_no_setting_is_refused() -> None:
    # Tests and flags pass overrides by TOML key: a typo must not be ignored.
    from trioproxy.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"auth\.admin_token: unknown setting"):
        load_config(env={}, overrides={"auth.admin_token": "x"})


def test_commands_beside_the_server_read_settings_as_it_does(tmp_path: Path) -> None:
    """config.partial: defaults < TOML < environment, parsed by the same
    parsers; [[providers]] and their keys are never needed."""
    from trioproxy.config import ConfigError, load_config
    from trioproxy.config.partial import Partial

    toml = tmp_path / "p.toml"
    toml.write_text(
        'listen = "127.0.0.1:9100"\n[admin]\ntoken = "t-file"\n'
        '[storage]\ndatabase_url = "postgresql://u@h/db"\n'
        '[[providers]]\nname = "a"\nbase_url = "https://x.example"\napi_key_env = "NOT_SET"\n'
    )
    where = Partial(str(toml), {"TRIOPROXY_ADMIN_TOKEN": "t-env", "HOME": str(tmp_path)})
    assert where.get("listen") == "127.0.0.1:9100"
    assert where.get("admin.token") == "t-env"  # the environment wins, as for the server
    assert where.get("admin.listen") == ""  # the default
    assert where.get("storage.database_url") == "postgresql://u@h/db"
    server = load_config(env={}, overrides={"upstream.url": "https://x.example"})
    assert Partial(None, {}).get("listen") == str(server.listen)
    with pytest.raises(ConfigError, match="TRIOPROXY_DATABASE_URL: bad value <redacted>"):
        Partial(None, {"TRIOPROXY_DATABASE_URL": "mysql://nope"}).get("storage.database_url")
    with pytest.raises(ConfigError, match="file not found"):
        Partial(str(tmp_path / "missing.toml"), {})
