"""What ``check-config`` prints and the settings reference's defaults: the
configuration shown to people, secrets redacted."""

from __future__ import annotations

from trioproxy.config.callers import read_callers_file
from trioproxy.config.model import Config
from trioproxy.config.settings import SETTINGS, Setting


def effective_settings(config: Config) -> list[tuple[str, str, str]]:
    """(key, env, shown value) for check-config; secrets redacted."""
    rows = []
    for s in SETTINGS:
        value = config.raw.get(s.key, s.default)
        if s.key == "state_dir":
            value = config.state_dir
        if s.key == "auth.secrets":
            shown = ", ".join(f"{sec.name}:<redacted>" for sec in config.auth.secrets) or (
                "(none)" if config.auth.enabled else "(none: auth off)"
            )
        else:
            shown = "<redacted>" if (s.secret and value) else _shown(value)
        rows.append((s.key, s.env, shown))
    auth = config.auth
    if auth.callers or auth.callers_file:
        try:
            in_file = read_callers_file(auth.callers_file) if auth.callers_file else ()
        except ValueError:
            in_file = ()  # the load above would have refused it
        names = [
            c.name + (" (secrets in plain text: store secret_sha256)" if c.plaintext else "")
            for c in (*auth.callers, *in_file)
        ]
        rows.append(("callers", "[[callers]] and auth.callers_file", ", ".join(names) or "(none)"))
    for n, route in enumerate(config.routing.routes):
        rows.append((f"routes[{n}]", route.name, route.describe()))
    return rows


def _shown(value: object) -> str:
    """A value as a user writes it (lists comma-separated, as in the environment;
    booleans as TOML writes them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return (
        ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        if isinstance(value, tuple)
        else str(value)
    )


def shown_default(s: Setting) -> str:
    """A setting's default as the reference shows it."""
    if s.default is None:
        return "see meaning"
    return "(unset)" if s.default in ("", ()) else _shown(s.default)
