"""Where settings come from: the TOML file, read once, with the errors every
command reports the same way."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any


class ConfigError(Exception):
    """A bad setting; the message is one line and names the key."""


def read_toml(path: str) -> dict[str, Any]:
    """The file's document, or ConfigError naming ``--config`` and the file."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"--config: file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config: {path} is not valid TOML: {exc}") from None


def flatten(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables as dotted keys: ``{"a": {"b": 1}}`` is ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for k, v in doc.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
