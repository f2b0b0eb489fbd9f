"""Callers with policies: ``[[callers]]`` in the TOML file, or the callers
file (``auth.callers_file``: the same ``[[callers]]`` tables, what the CLI
and ``/admin/callers`` write). Parsed and validated here; every problem is
a ``ValueError`` naming the caller and the key (``callers[alice].rpm``).

A secret is kept as its SHA-256 digest only. ``secret_sha256`` is how the
file stores it; ``secrets`` in plain text is accepted (hashed here) but
warned about at start, since anyone who reads the file can then use it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from trioproxy.config.model import Budget, Caller, CallerGroup, OIDCConfig, Secret
from trioproxy.config.source import ConfigError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
BUDGET_WINDOWS = ("daily", "weekly", "monthly")
CREDENTIAL_MODES = ("provider", "own")
MIN_SECRET = 16  # characters; shorter is guessable

# Keys a [[callers]] entry may carry, with their meaning (for the documentation).
CALLER_KEYS: dict[str, str] = {
    "name": "unique name (letters, digits, `_.@-`): what logs, metrics and the ledger show",
    "secret_sha256": 'hex SHA-256 digests of the caller\'s secrets, e.g. `["9f86d0…"]` (several: rotation); what the CLI and the API write',
    "secrets": "secrets in plain text (accepted, with a warning at start)",
    "models": 'allowlist of model globs, e.g. `["claude-sonnet-*", "claude-haiku-*"]`; other models get 403',
    "rpm": "requests per minute",
    "tpm": "input + output tokens per minute",
    "max_concurrent": "requests in flight at once",
    "budget": '`{ usd = 50, window = "monthly" }` or `{ tokens = N, window = "daily" }`; windows `daily`, `weekly` (from Monday), `monthly`, UTC',
    "expires": "RFC 3339 time after which the caller gets 401, e.g. `2027-01-31T00:00:00Z`",
    "upstream_credential": '`"provider"` (default: the provider\'s key is sent) or `"own"` (the caller presents the proxy secret as `x-trioproxy-key` and its own `x-api-key` / `Authorization` goes upstream untouched)',
}


def digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


def parse_callers(raw: object, where: str) -> tuple[Caller, ...]:
    """``raw``: the list of ``[[callers]]`` tables. Names are unique, and
    so is every secret across callers."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise ValueError(f"{where}: expected [[callers]] tables")
    out = [parse_caller(t, where) for t in raw]
    check_unique(out, where)
    return tuple(out)


def check_unique(callers: Iterable[Caller], where: str) -> None:
    names: set[str] = set()
    owners: dict[bytes, str] = {}
    for c in callers:
        if c.name in names:
            raise ValueError(f"{where}: the caller name {c.name!r} is used twice")
        names.add(c.name)
        for d in c.digests:
            if d in owners:
                raise ValueError(f"{where}: callers {owners[d]!r} and {c.name!r} share a secret")
            owners[d] = c.name


def parse_caller(t: Mapping[str, Any], where: str) -> Caller:
    name = t.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError(
            f"{where}: every caller needs a name of letters, digits and _.@- (got {name!r})"
        )
    key = f"callers[{name}]"
    unknown = sorted(set(t) - set(CALLER_KEYS))
    if unknown:
        raise ValueError(f"{key}.{unknown[0]}: unknown key (known: {', '.join(CALLER_KEYS)})")
    digests = set(_hex_digests(t.get("secret_sha256", ()), f"{key}.secret_sha256"))
    plain = _strings(t.get("secrets", ()), f"{key}.secrets")
    for i, secret in enumerate(plain):
        if len(secret) < MIN_SECRET:
            raise ValueError(f"{key}.secrets[{i}]: shorter than {MIN_SECRET} characters")
        digests.add(digest(secret.encode()))
    if not digests:
        raise ValueError(f"{key}: needs secret_sha256 (or secrets)")
    return Caller(
        name=name,
        digests=frozenset(digests),
        expires=parse_time(t["expires"], f"{key}.expires") if "expires" in t else None,
        plaintext=bool(plain),
        **_policy(t, key),
    )


def _policy(t: Mapping[str, Any], key: str) -> dict[str, Any]:
    """The policy keys a caller and a group share, checked."""
    mode = t.get("upstream_credential", "provider")
    if mode not in CREDENTIAL_MODES:
        raise ValueError(f'{key}.upstream_credential: expected "provider" or "own"')
    return {
        "models": tuple(_strings(t.get("models", ()), f"{key}.models")),
        "rpm": _limit(t.get("rpm"), f"{key}.rpm"),
        "tpm": _limit(t.get("tpm"), f"{key}.tpm"),
        "max_concurrent": _limit(t.get("max_concurrent"), f"{key}.max_concurrent"),
        "budget": _budget(t.get("budget"), f"{key}.budget"),
        "upstream_credential": mode,
    }


# Keys a [[caller_groups]] entry may carry (the policy keys are the callers').
GROUP_KEYS: dict[str, str] = {
    "name": "unique name: what the audit trail and `check-config` show",
    "match": 'a group of the IdP\'s groups claim, or a glob (`"eng-*"`, `"*"` for every signed-in user)',
    **{
        k: v
        for k, v in CALLER_KEYS.items()
        if k not in ("name", "secret_sha256", "secrets", "expires")
    },
}


def parse_caller_groups(raw: object, where: str = "[[caller_groups]]") -> tuple[CallerGroup, ...]:
    """``raw``: the list of ``[[caller_groups]]`` tables; names unique."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise ValueError(f"{where}: expected [[caller_groups]] tables")
    out: list[CallerGroup] = []
    for t in raw:
        name = t.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise ValueError(f"{where}: every group needs a name of letters, digits and _.@-")
        key = f"caller_groups[{name}]"
        if any(g.name == name for g in out):
            raise ValueError(f"{where}: the group name {name!r} is used twice")
        unknown = sorted(set(t) - set(GROUP_KEYS))
        if unknown:
            raise ValueError(f"{key}.{unknown[0]}: unknown key (known: {', '.join(GROUP_KEYS)})")
        match = t.get("match")
        if not isinstance(match, str) or not match.strip():
            raise ValueError(f"{key}.match: expected a group name or glob")
        policy = Caller(name=name, digests=frozenset(), **_policy(t, key))
        out.append(CallerGroup(name, match.strip(), policy))
    return tuple(out)


def from_secrets(secrets: Iterable[Secret]) -> tuple[Caller, ...]:
    """``auth.secrets``: callers without limits."""
    return tuple(Caller(s.name, frozenset({digest(s.value)})) for s in secrets)


def read_callers_file(path: str) -> tuple[Caller, ...]:
    """The callers in ``path``; none when it does not exist yet (the CLI
    creates it with the first ``add``). Raises ValueError naming the file."""
    doc = read_callers_doc(path)
    return parse_callers(doc.get("callers", []), f"auth.callers_file {path}")


def read_callers_doc(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ValueError(f"auth.callers_file: cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"auth.callers_file: {path} is not valid TOML: {exc}") from None
    extra = sorted(set(doc) - {"callers"})
    if extra:
        raise ValueError(f"auth.callers_file {path}: unknown table {extra[0]!r} (only [[callers]])")
    return doc


def file_exists(path: str) -> bool:
    return bool(path) and Path(path).is_file()


def parse_time(value: object, key: str) -> float:
    """An RFC 3339 time (TOML's own datetime too) as epoch seconds; a time
    without an offset is refused rather than guessed."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip().replace("z", "Z"))
        except ValueError:
            raise ValueError(
                f"{key}: expected an RFC 3339 time such as 2027-01-31T00:00:00Z"
            ) from None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if not isinstance(value, dt.datetime):
        raise ValueError(f"{key}: expected an RFC 3339 time such as 2027-01-31T00:00:00Z")
    if value.tzinfo is None:
        raise ValueError(f"{key}: the time needs an offset (Z for UTC)")
    return value.timestamp()


def format_time(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _strings(value: object, key: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{key}: expected a list of non-empty strings")
    return list(value)


def _hex_digests(value: object, key: str) -> list[bytes]:
    out = []
    for v in _strings(value, key):
        try:
            d = bytes.fromhex(v.strip())
        except ValueError:
            d = b""
        if len(d) != 32:
            raise ValueError(f"{key}: expected 64 hex characters (a SHA-256 digest)")
        out.append(d)
    return out


def _limit(value: object, key: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{key}: expected a whole number >= 1")
    return value


def _budget(value: object, key: str) -> Budget | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(
            f'{key}: expected {{ usd = N, window = "monthly" }} or {{ tokens = N, ... }}'
        )
    unknown = sorted(set(value) - {"usd", "tokens", "window"})
    if unknown:
        raise ValueError(f"{key}.{unknown[0]}: unknown key (usd, tokens, window)")
    window = value.get("window", "monthly")
    if window not in BUDGET_WINDOWS:
        raise ValueError(f"{key}.window: expected one of {', '.join(BUDGET_WINDOWS)}")
    usd, tokens = value.get("usd"), value.get("tokens")
    if (usd is None) == (tokens is None):
        raise ValueError(f"{key}: set usd or tokens (one of the two)")
    if usd is not None:
        if not isinstance(usd, int | float) or isinstance(usd, bool) or not 0 < usd < float("inf"):
            raise ValueError(f"{key}.usd: expected a positive number of US dollars")
        return Budget(window, usd=float(usd))
    return Budget(window, tokens=_limit(tokens, f"{key}.tokens"))


def policy_dict(c: Caller) -> dict[str, Any]:
    """A caller's (or group's) policy as JSON shows it: the admin API's
    caller rows and the audit trail."""
    budget = c.budget
    return {
        "models": list(c.models),
        "rpm": c.rpm,
        "tpm": c.tpm,
        "max_concurrent": c.max_concurrent,
        "budget": None
        if budget is None
        else {"window": budget.window, "usd": budget.usd, "tokens": budget.tokens},
        "upstream_credential": c.upstream_credential,
    }


def build_oidc(p: Mapping[str, Any], groups: tuple[CallerGroup, ...]) -> OIDCConfig | None:
    """[auth.oidc] from the parsed settings: sign-in through an IdP needs
    an audience and at least one [[caller_groups]] (a user in none is refused)."""
    issuer = p["auth.oidc.issuer"]
    if not issuer:
        if groups:
            raise ConfigError("[[caller_groups]]: group policies need auth.oidc.issuer")
        return None
    if not p["auth.oidc.audience"]:
        raise ConfigError(
            "auth.oidc.audience: tokens are checked for the audience the IdP issues them to "
            "(TRIOPROXY_AUTH_OIDC_AUDIENCE); set it with auth.oidc.issuer"
        )
    if not groups:
        raise ConfigError(
            'auth.oidc.issuer: add [[caller_groups]] (match = "*" for every signed-in '
            "user): a user in no group is refused"
        )
    return OIDCConfig(
        issuer=issuer,
        audience=p["auth.oidc.audience"],
        user_claim=p["auth.oidc.user_claim"],
        groups_claim=p["auth.oidc.groups_claim"],
        allowed_domains=p["auth.oidc.allowed_domains"],
        leeway_s=p["auth.oidc.leeway_s"],
    )
