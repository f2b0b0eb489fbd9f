"""`trioproxy callers`: manage callers without a restart (an admin client,
like `trioproxy switch`; the changes themselves are callers/manage.py).

``add``, ``rotate``, ``revoke`` and ``set`` change the callers file
(``auth.callers_file``, found like the other commands find their settings:
``--config``, the environment, ``--env-file``); the running server sees the
change within a second. ``list`` asks the running server (GET
/admin/callers) for each caller's use of its limits, and falls back to the
file alone when the server cannot be reached. A new secret is printed
once, on stdout, and nowhere else.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from trioproxy.admin.client import SwitchError, admin_target, read_env_file
from trioproxy.admin.client import call as admin_call
from trioproxy.audit.changes import Change, redacted
from trioproxy.audit.trail import os_user, write
from trioproxy.callers import manage
from trioproxy.cliargs import add_shared
from trioproxy.config.callers import format_time, parse_callers
from trioproxy.config.partial import Partial
from trioproxy.config.source import ConfigError
from trioproxy.db.open import open_database


def add_parser(sub: Any) -> None:
    p = sub.add_parser("callers", help="list, add, rotate, revoke or change callers (no restart)")
    acts = p.add_subparsers(dest="action", required=True)
    ls = acts.add_parser("list", help="callers, their limits and their use (from the server)")
    ls.add_argument("--format", choices=("table", "json"), default="table")
    ls.add_argument("--url", help="the proxy's base URL (default: from the configuration)")
    ls.add_argument("--token", help="admin token (default: TRIOPROXY_ADMIN_TOKEN / admin.token)")
    add = acts.add_parser("add", help="a new caller; prints its secret once")
    add.add_argument("name")
    add.add_argument("--rpm", type=int, help="requests per minute")
    add.add_argument("--tpm", type=int, help="input + output tokens per minute")
    add.add_argument("--max-concurrent", type=int, help="requests in flight at once")
    add.add_argument("--models", help="comma-separated model globs it may use")
    add.add_argument("--budget-usd", type=float, help="spend per budget window")
    add.add_argument("--budget-tokens", type=int, help="tokens per budget window")
    add.add_argument(
        "--budget-window", choices=("daily", "weekly", "monthly"), help="default monthly"
    )
    add.add_argument("--expires", help="RFC 3339 time, e.g. 2027-01-31T00:00:00Z")
    add.add_argument(
        "--own-credential",
        action="store_true",
        help="the caller's own key goes upstream (it presents x-trioproxy-key)",
    )
    rot = acts.add_parser("rotate", help="a new secret; the old ones stop working")
    rot.add_argument("name")
    rev = acts.add_parser("revoke", help="remove the caller")
    rev.add_argument("name")
    st = acts.add_parser("set", help="change limits: NAME rpm=20 models=claude-haiku-* tpm=")
    st.add_argument("name")
    st.add_argument("assignments", nargs="+", metavar="key=value", help="an empty value removes")
    actions = (ls, add, rot, rev, st)
    add_shared(
        p, actions, "--config", metavar="FILE", help="the proxy's TOML file (auth.callers_file)"
    )
    add_shared(
        p,
        actions,
        "--env-file",
        metavar="FILE",
        help="a systemd EnvironmentFile with TRIOPROXY_* settings",
    )
    add_shared(p, actions, "--file", help="the callers file (default: auth.callers_file)")


def run(args: argparse.Namespace) -> int:
    try:
        env = dict(os.environ)
        if args.env_file:
            env = {**read_env_file(args.env_file), **env}
        if args.action == "list":
            return _list(args, env)
        path = args.file or callers_file(args.config, env)
        before = manage.entry_of(path, args.name)
        if args.action == "add":
            fields = _add_fields(args)
            secret = manage.add(path, args.name, fields)
            print(f"added caller {args.name} to {path}; its secret (shown only now):")
            print(secret)
        elif args.action == "rotate":
            secret = manage.rotate(path, args.name)
            print(f"new secret for {args.name} (shown only now; the old ones stop working):")
            print(secret)
        elif args.action == "revoke":
            manage.revoke(path, args.name)
            print(f"revoked {args.name}")
        else:
            manage.update(path, args.name, manage.parse_assignments(args.assignments))
            print(f"updated {args.name}")
    except (manage.CallerChangeError, SwitchError, OSError) as exc:
        print(f"trioproxy callers: {exc}", file=sys.stderr)
        return 1
    _audit(args, env, path, before)
    return 0


def _audit(args: argparse.Namespace, env: dict[str, str], path: str, before: object) -> None:
    """The change, in the audit trail of the database the server uses (by
    the OS user); the change stands whether or not it can be recorded."""
    action = "caller.update" if args.action == "set" else f"caller.{args.action}"
    after = manage.entry_of(path, args.name)
    change = Change(os_user(), action, args.name, redacted(before), redacted(after), "cli")
    try:
        where = Partial(args.config, env)
        state_dir, url = str(where.get("state_dir")), str(where.get("storage.database_url"))
    except ConfigError as exc:
        print(f"trioproxy callers: not in the audit trail: {exc}", file=sys.stderr)
        return
    if not write(lambda: open_database(url, state_dir), [change]):
        print(
            "trioproxy callers: the change is made, but not in the audit trail (see above)",
            file=sys.stderr,
        )


def callers_file(config_path: str | None, env: dict[str, str]) -> str:
    try:
        value = str(Partial(config_path, env).get("auth.callers_file"))
    except ConfigError as exc:
        raise SwitchError(str(exc)) from None
    if not value:
        raise SwitchError(
            "no callers file: set auth.callers_file (TRIOPROXY_AUTH_CALLERS_FILE), "
            "give --config, or --file"
        )
    return value


def _add_fields(args: argparse.Namespace) -> dict[str, object]:
    fields: dict[str, object] = {}
    for key in ("rpm", "tpm", "max_concurrent", "budget_usd", "budget_tokens", "budget_window"):
        value = getattr(args, key)
        if value is not None:
            fields[key] = value
    if args.models:
        fields["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.expires:
        fields["expires"] = args.expires
    if args.own_credential:
        fields["upstream_credential"] = "own"
    return fields


def _list(args: argparse.Namespace, env: dict[str, str]) -> int:
    rows: list[dict[str, Any]]
    try:
        url, token = admin_target(args.config, env)
        doc = admin_call(
            args.url or url,
            args.token if args.token is not None else token,
            "GET",
            "/admin/callers",
            None,
        )
        rows = doc["callers"]
        live = True
    except SwitchError as exc:
        path = args.file or callers_file(args.config, env)
        print(f"({exc}; showing the callers file without usage)", file=sys.stderr)
        entries = manage.read_entries(path)
        try:
            callers = parse_callers(entries, path)
        except ValueError as err:
            raise manage.CallerChangeError(str(err)) from None
        rows = [
            {
                "name": c.name,
                "source": "file",
                "models": list(c.models),
                "rpm": c.rpm,
                "tpm": c.tpm,
                "max_concurrent": c.max_concurrent,
                "budget": None
                if c.budget is None
                else {"window": c.budget.window, "usd": c.budget.usd, "tokens": c.budget.tokens},
                "expires": c.expires,
                "upstream_credential": c.upstream_credential,
            }
            for c in callers
        ]
        live = False
    if args.format == "json":
        import json

        print(json.dumps(rows, indent=2))
        return 0
    print(format_table(rows, live=live))
    return 0


def format_table(rows: list[dict[str, Any]], *, live: bool) -> str:
    """A table for people: each caller's limits, and (from a running
    server) its use of them now."""
    head = f"{'caller':<16} {'source':<8} {'rpm':>11} {'tpm':>15} {'concurrent':>10}  {'budget':<28} {'models':<24} expires"
    lines = [head]
    for r in rows:

        def used(limit: object, key: str, r: dict[str, Any] = r) -> str:
            if not live:
                return "-" if limit is None else str(limit)
            return f"{r.get(key, 0)}/{'-' if limit is None else limit}"

        budget = r.get("budget")
        if budget is None:
            b = f"${r['spend_usd']:.2f} spent" if live and "spend_usd" in r else "-"
        elif budget.get("usd") is not None:
            spent = f"${r.get('spend_usd', 0):.2f}/" if live else ""
            b = f"{spent}${budget['usd']:.2f} {budget['window']}"
        else:
            spent = f"{r.get('spend_tokens', 0)}/" if live else ""
            b = f"{spent}{budget['tokens']} tok {budget['window']}"
        models = ",".join(r.get("models") or []) or "all"
        expires = format_time(r["expires"]) if r.get("expires") else "-"
        own = " (own key)" if r.get("upstream_credential") == "own" else ""
        lines.append(
            f"{r['name']:<16} {r.get('source', '-'):<8} "
            f"{used(r.get('rpm'), 'requests_last_minute'):>11} "
            f"{used(r.get('tpm'), 'tokens_last_minute'):>15} "
            f"{used(r.get('max_concurrent'), 'in_flight'):>10}  {b:<28} {models[:24]:<24} {expires}{own}"
        )
    return "\n".join(lines)
