"""Value parsers for the settings table: pure functions from what TOML,
the environment or a flag gave to the typed value, raising ValueError (the
loader turns it into a ConfigError naming the key)."""

from __future__ import annotations

from collections.abc import Callable


def parse_bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(raw, str) and raw.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true/false")


def parse_seconds(raw: object) -> float:
    if isinstance(raw, bool):
        raise ValueError("expected a number of seconds")
    value = float(raw)  # type: ignore[arg-type]
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError("expected a positive number of seconds")
    return value


def parse_nonneg_seconds(raw: object) -> float:
    if isinstance(raw, bool):
        raise ValueError("expected a number of seconds")
    value = float(raw)  # type: ignore[arg-type]
    if not value >= 0 or value == float("inf"):
        raise ValueError("expected a number of seconds >= 0")
    return value


def parse_positive_int(raw: object) -> int:
    if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
        raise ValueError("expected a positive whole number")
    value: int = int(raw)  # type: ignore[call-overload]
    if value <= 0:
        raise ValueError("expected a positive whole number")
    return value


def parse_count(raw: object) -> int:
    if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
        raise ValueError("expected a whole number")
    value: int = int(raw)  # type: ignore[call-overload]
    if value < 0:
        raise ValueError("expected a whole number >= 0")
    return value


def parse_workers(raw: object) -> int:
    """A worker count, or "auto" (0: one per CPU, counted where the
    supervisor starts, so the parser stays pure)."""
    if isinstance(raw, str) and raw.strip().lower() == "auto":
        return 0
    try:
        return parse_positive_int(raw)
    except (TypeError, ValueError):
        raise ValueError('expected a positive whole number or "auto"') from None


def parse_fraction(raw: object) -> float:
    if isinstance(raw, bool):
        raise ValueError("expected a fraction in (0, 1]")
    value = float(raw)  # type: ignore[arg-type]
    if not 0 < value <= 1:
        raise ValueError("expected a fraction in (0, 1]")
    return value


def _choice(*values: str) -> Callable[[object], str]:
    """A parser for one of ``values`` (case-insensitive)."""

    def parse(raw: object) -> str:
        value = parse_str(raw).lower()
        if value not in values:
            raise ValueError("expected " + " or ".join(values))
        return value

    return parse


def _list_of(entry: Callable[[str], str]) -> Callable[[object], tuple[str, ...]]:
    """A parser for a TOML list of strings, or one comma-separated string
    (as an environment variable gives it); each item is lower-cased, blank
    ones are dropped, and ``entry`` checks (and may normalize) the rest."""

    def parse(raw: object) -> tuple[str, ...]:
        items = raw if isinstance(raw, list) else parse_str(raw).split(",")
        if not all(isinstance(item, str) for item in items):
            raise ValueError("expected a list of strings")
        return tuple(entry(item.strip().lower()) for item in items if item.strip())

    return parse


def _origin_entry(origin: str) -> str:
    origin = origin.rstrip("/")
    scheme, sep, rest = origin.partition("://")
    if origin != "*" and (scheme not in ("http", "https") or not sep or not rest or "/" in rest):
        raise ValueError(f"{origin!r} is not an origin such as https://app.example or *")
    return origin


def _allow_entry(entry: str) -> str:
    if "." not in entry.rpartition("@")[2] or any(c in entry for c in ' ,/<>"\\'):
        raise ValueError(f"{entry!r} is not an e-mail address or a domain")
    return entry


parse_stream_failure = _choice("cut", "error_event")
parse_mode = _choice("failover", "single")
parse_scrub_mode = _choice("off", "pseudonymize")
parse_log_format = _choice("json", "logfmt")
parse_log_bodies = _choice("off", "errors", "all")
parse_origins = _list_of(_origin_entry)
parse_allow = _list_of(_allow_entry)


def parse_str(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError("expected a string")
    return raw


def parse_redis_url(raw: object) -> str:
    """ "" (no Redis), or redis://, rediss:// (TLS) or unix:// as Redis
    clients take it; the password may be in it."""
    url = parse_str(raw).strip()
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(
            "expected redis://[[user]:password@]host[:port][/db], rediss://... or unix://..."
        )
    return url


def parse_database_url(raw: object) -> str:
    """ "" (SQLite in state_dir) or a Postgres URL as libpq takes it; the
    password may be in it."""
    url = parse_str(raw).strip()
    if url and not url.startswith(("postgresql://", "postgres://")):
        raise ValueError("expected postgresql://[user[:password]@]host[:port]/dbname[?...]")
    return url


def parse_secret_list(raw: object) -> str:
    """TOML may give a list of "name:secret" strings; env gives one string."""
    if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        return ",".join(raw)
    return parse_str(raw)


def parse_log_level(raw: object) -> str:
    value = parse_str(raw).lower()
    if value not in ("debug", "info", "warning", "error"):
        raise ValueError("expected one of debug, info, warning, error")
    return value


def parse_paths(raw: object) -> tuple[str, ...]:
    """Paths, comma-separated (environment) or a TOML list; kept as given."""
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ValueError("expected a list of paths")
    return tuple(i.strip() for i in items if i.strip())


def parse_url(raw: object) -> str:
    """ "" (unset) or an http(s) URL, as written (an issuer is compared exactly)."""
    url = parse_str(raw).strip()
    if url and not url.startswith(("https://", "http://")):
        raise ValueError("expected an https:// URL")
    return url


def parse_domains(raw: object) -> tuple[str, ...]:
    """E-mail domains, comma-separated (environment) or a TOML list; lower case."""
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ValueError("expected a list of domains")
    out = tuple(i.strip().lower().lstrip("@") for i in items if i.strip())
    if any(" " in d or "@" in d for d in out):
        raise ValueError("expected domains such as example.com")
    return out


def parse_claim(raw: object) -> str:
    name = parse_str(raw).strip()
    if not name:
        raise ValueError("expected a claim name")
    return name


def parse_urls(raw: object) -> tuple[str, ...]:
    """http(s) URLs, comma-separated (environment) or a TOML list."""
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ValueError("expected a list of URLs")
    out = tuple(i.strip() for i in items if i.strip())
    if not all(u.startswith(("https://", "http://")) for u in out):
        raise ValueError("expected https:// URLs")
    return out


def parse_thresholds(raw: object) -> tuple[float, ...]:
    """Fractions of a budget, e.g. [0.8, 1.0] (environment: 0.8,1.0)."""
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple):
        raise ValueError("expected a list of fractions such as [0.8, 1.0]")
    try:
        out = sorted({float(i) for i in items if str(i).strip()})
    except (TypeError, ValueError):
        raise ValueError("expected a list of fractions such as [0.8, 1.0]") from None
    if any(not 0 < f <= 10 for f in out):
        raise ValueError("expected fractions above 0 (1.0: the whole budget)")
    return tuple(out)
