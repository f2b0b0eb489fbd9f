"""A few settings as the server would see them, for the commands that run
beside it (``usage``, ``log export``, ``switch``, ``callers``).

Those commands run as another user, often without the provider keys, so
they cannot load (and validate) the whole configuration. They read only the
settings they need, here: defaults < TOML < environment, each parsed by its
own parser from the one settings table, so a value means the same to them
as to the server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from trioproxy.config.settings import _BY_KEY, default_state_dir
from trioproxy.config.source import ConfigError, read_toml


class Partial:
    """The TOML file (if any) and the environment, read once."""

    def __init__(self, path: str | None, env: Mapping[str, str]) -> None:
        self._env = env
        self._doc: dict[str, Any] = read_toml(path) if path else {}

    def get(self, key: str) -> Any:
        """The setting ``key``, parsed; its default when set nowhere."""
        s = _BY_KEY[key]
        if s.env in self._env:
            raw, where = self._env[s.env], s.env
        elif (
            raw := _at(self._doc, key)
        ) is not None:  # a table's value too (pricing.unknown_model)
            where = key
        else:
            if key == "state_dir":
                return default_state_dir(self._env)
            return s.default
        try:
            value = s.parse(raw)
        except (ValueError, TypeError) as exc:
            shown = "<redacted>" if s.secret else repr(raw)
            raise ConfigError(f"{where}: bad value {shown}: {exc}") from None
        if key == "state_dir" and not value:
            return default_state_dir(self._env)
        return value

    def many(self, keys: Iterable[str]) -> dict[str, Any]:
        return {key: self.get(key) for key in keys}

    def table(self, name: str) -> Any:
        """A structured table of the file as written (``pricing``), or None."""
        return self._doc.get(name)


def _at(doc: Mapping[str, Any], key: str) -> Any:
    """The value at a dotted key of the TOML document, as written."""
    value: Any = doc
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value
