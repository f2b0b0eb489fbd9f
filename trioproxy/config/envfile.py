"""systemd EnvironmentFile syntax, for commands that run beside the server
(``--env-file``): the same TRIOPROXY_* variables the unit gives it."""

from __future__ import annotations

from pathlib import Path


class EnvFileError(Exception):
    """The file cannot be read (the message names it)."""


def read_env_file(path: str) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile reads them (# comments,
    optional quotes)."""
    out: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise EnvFileError(f"--env-file: cannot read {path}: {exc.strerror or exc}") from None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out[key.strip()] = value
    return out
