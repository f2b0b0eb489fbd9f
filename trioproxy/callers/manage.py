"""Changing the callers file: add, rotate, revoke, set. What ``trioproxy
callers`` and ``/admin/callers`` both do (synchronous: the server runs it
in a thread).

Each change is a read-modify-write under an exclusive lock (a ``.lock``
file beside it, so the CLI and the API of every worker take turns), is
validated as the server will read it before anything is written, and is
written atomically (a temporary file in the same directory, fsynced, then
renamed over the old one, keeping its mode and owner; a new file is 0600
and belongs to the owner of its directory). A new secret is
returned once and only its SHA-256 is stored. Comments in the file do not
survive a change made here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import secrets
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from trioproxy.config.callers import (
    BUDGET_WINDOWS,
    CALLER_KEYS,
    NAME,
    digest,
    format_time,
    parse_callers,
    parse_time,
    read_callers_doc,
)

SECRET_PREFIX = "tp-"  # tells a trioproxy caller secret from a provider key at a glance
INT_KEYS = ("rpm", "tpm", "max_concurrent")
# What `set` and PATCH accept, beyond the keys of a [[callers]] entry.
BUDGET_FIELDS = ("budget_usd", "budget_tokens", "budget_window")


class CallerChangeError(ValueError):
    """A change that cannot be made; ``status`` is what the API answers."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def read_entries(path: str) -> list[dict[str, Any]]:
    try:
        doc = read_callers_doc(path)
    except ValueError as exc:
        raise CallerChangeError(str(exc), 500) from None
    entries = doc.get("callers", [])
    if not isinstance(entries, list):
        raise CallerChangeError(f"{path}: callers must be [[callers]] tables", 500)
    return [dict(e) for e in entries if isinstance(e, dict)]


def entry_of(path: str, name: str) -> dict[str, Any] | None:
    """The caller's entry as the file has it now (None: not there), for the
    audit trail's before and after."""
    try:
        entries = read_entries(path)
    except CallerChangeError:
        return None
    return next((e for e in entries if e.get("name") == name), None)


def add(path: str, name: str, fields: Mapping[str, object]) -> str:
    """A new caller with a new secret (returned, never stored)."""
    if not isinstance(name, str) or not NAME.match(name):
        raise CallerChangeError("name: letters, digits and _.@- (at most 64)")
    secret = new_secret()
    with _locked(path):
        entries = read_entries(path)
        if any(e.get("name") == name for e in entries):
            raise CallerChangeError(f"a caller named {name!r} exists already", 409)
        entry: dict[str, Any] = {"name": name, "secret_sha256": [digest(secret.encode()).hex()]}
        _apply(entry, fields)
        _write(path, [*entries, entry])
    return secret


def rotate(path: str, name: str) -> str:
    """A new secret replaces every secret the caller had: the old ones stop
    working as soon as the server reads the file."""
    secret = new_secret()
    with _locked(path):
        entries = read_entries(path)
        entry = _find(entries, name)
        entry.pop("secrets", None)
        entry["secret_sha256"] = [digest(secret.encode()).hex()]
        _write(path, entries)
    return secret


def revoke(path: str, name: str) -> None:
    with _locked(path):
        entries = read_entries(path)
        _find(entries, name)
        _write(path, [e for e in entries if e.get("name") != name])


def update(path: str, name: str, fields: Mapping[str, object]) -> None:
    with _locked(path):
        entries = read_entries(path)
        _apply(_find(entries, name), fields)
        _write(path, entries)


def parse_assignments(pairs: list[str]) -> dict[str, object]:
    """``key=value`` words from the command line, typed: whole numbers for
    limits, a comma list for models, an empty value to remove a key."""
    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise CallerChangeError(f"{pair!r}: expected key=value")
        if value == "":
            out[key] = None
        elif key in (*INT_KEYS, "budget_tokens"):
            if not value.isdigit():
                raise CallerChangeError(f"{key}: expected a whole number")
            out[key] = int(value)
        elif key == "budget_usd":
            try:
                out[key] = float(value)
            except ValueError:
                raise CallerChangeError("budget_usd: expected a number of US dollars") from None
        elif key == "models":
            out[key] = [m.strip() for m in value.split(",") if m.strip()]
        else:
            out[key] = value
    return out


def _find(entries: list[dict[str, Any]], name: str) -> dict[str, Any]:
    for e in entries:
        if e.get("name") == name:
            return e
    raise CallerChangeError(
        f"no caller named {name!r} in the callers file (callers from the TOML file or "
        "auth.secrets are changed there)",
        404,
    )


def _apply(entry: dict[str, Any], fields: Mapping[str, object]) -> None:
    """Fields set (None: removed). Budget fields fold into ``budget``."""
    budget = dict(entry.get("budget") or {})
    for key, value in fields.items():
        if key in BUDGET_FIELDS:
            part = key.removeprefix("budget_")
            if value is None:
                budget.pop(part, None)
            else:
                if part in ("usd", "tokens"):
                    budget.pop("tokens" if part == "usd" else "usd", None)
                budget[part] = value
            continue
        if key == "budget":
            budget = dict(value) if isinstance(value, dict) else {}
            continue
        if key in ("name", "secret_sha256", "secrets"):
            raise CallerChangeError(f"{key}: not changed this way (use rotate for secrets)")
        if key not in CALLER_KEYS:
            known = ", ".join([*(k for k in CALLER_KEYS if "secret" not in k), *BUDGET_FIELDS])
            raise CallerChangeError(f"{key}: unknown (known: {known})")
        if value is None:
            entry.pop(key, None)
        elif key == "expires":
            try:
                entry[key] = format_time(parse_time(value, "expires"))
            except ValueError as exc:
                raise CallerChangeError(str(exc)) from None
        else:
            entry[key] = value
    if budget and "usd" not in budget and "tokens" not in budget:
        budget = {}  # a window alone is no budget
    if budget:
        budget.setdefault("window", "monthly")
        if budget["window"] not in BUDGET_WINDOWS:
            raise CallerChangeError(f"budget window: one of {', '.join(BUDGET_WINDOWS)}")
        entry["budget"] = budget
    else:
        entry.pop("budget", None)


def _write(path: str, entries: list[dict[str, Any]]) -> None:
    try:
        parse_callers(entries, "the change")
    except ValueError as exc:
        raise CallerChangeError(str(exc)) from None
    text = dumps(entries)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".callers-", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            st = target.stat()
            mode = st.st_mode & 0o777
        except FileNotFoundError:
            # A new file belongs to whoever owns its directory: root running
            # the CLI must not leave the service a file it cannot read.
            st, mode = target.parent.stat(), 0o600
        os.chmod(tmp, mode)
        with contextlib.suppress(PermissionError):
            os.chown(tmp, st.st_uid, st.st_gid)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    lock = Path(path + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def dumps(entries: list[dict[str, Any]]) -> str:
    """The callers file: ``[[callers]]`` tables with keys in a fixed order.
    Values are strings, numbers, lists of strings and the budget table;
    strings are quoted as JSON does, which TOML's basic strings accept."""
    order = list(CALLER_KEYS)
    out = ["# trioproxy callers: written by `trioproxy callers` and /admin/callers.\n"]
    for e in entries:
        out.append("\n[[callers]]\n")
        for key in sorted(e, key=lambda k: order.index(k) if k in order else len(order)):
            out.append(f"{key} = {_value(e[key])}\n")
    return "".join(out)


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, dt.datetime | dt.date):
        return _value(format_time(parse_time(v, "expires")))
    if isinstance(v, str):
        return orjson.dumps(v).decode()
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + " }"
    raise CallerChangeError(f"cannot write {type(v).__name__} to the callers file")
