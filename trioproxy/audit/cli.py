"""``trioproxy audit [--since 7d] [--format table|json]``: the audit trail,
read from the database the server uses (beside it, as another user; no
provider key needed)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from trioproxy.accounting.report import UsageError, parse_since, settings_from
from trioproxy.audit.trail import read
from trioproxy.db.base import StorageError
from trioproxy.db.open import open_database


def add_parser(sub: Any) -> None:
    p = sub.add_parser("audit", help="administrative changes: who changed what, and when")
    p.add_argument("--since", default="7d", help="7d, 24h, 30m, 2w or 2026-11-01 (UTC)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--limit", type=int, default=1000, help="newest first, at most this many")
    p.add_argument("--config", metavar="FILE", help="the proxy's TOML file (state_dir)")
    p.add_argument("--env-file", metavar="FILE", help="a systemd EnvironmentFile")
    p.add_argument("--state-dir", help="where the database is (default: from the configuration)")


def run(args: argparse.Namespace) -> int:
    try:
        where = settings_from(args.config, args.env_file)
        since = parse_since(args.since, time.time())
        state_dir = args.state_dir or where.state_dir
        url = "" if args.state_dir else where.database_url
        rows = read(lambda: open_database(url, state_dir, readonly=True), since, args.limit)
    except (UsageError, StorageError) as exc:
        print(f"trioproxy audit: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        doc = [
            {
                **{k: r[k] for k in ("ts", "who", "action", "subject", "source")},
                "before": json.loads(r["old_value"]),
                "after": json.loads(r["new_value"]),
            }
            for r in rows
        ]
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return 0
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(r["ts"]))
        what = f"{r['action']} {r['subject']}".strip()
        sys.stdout.write(f"{when}  {r['who']:<16} {what}  ({r['source']})\n")
        sys.stdout.write(f"    before: {r['old_value']}\n    after:  {r['new_value']}\n")
    if not rows:
        sys.stdout.write("no administrative changes in this window\n")
    return 0
