"""``trioproxy log export``: the conversation log as JSON Lines on stdout,
oldest first, one request a line (as the viewer's API shows it: bodies
decoded, credentials in headers redacted). Read-only and beside the
server, like ``trioproxy usage``: from the SQLite file in state_dir, or
from Postgres with storage.database_url."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import zstandard

from trioproxy.accounting.report import UsageError, parse_since, settings_from
from trioproxy.cliargs import add_shared
from trioproxy.convlog.views import export_line
from trioproxy.db.base import StorageError
from trioproxy.db.open import open_database

PROGRESS_EVERY = 500  # rows between progress lines on a terminal


def add_parser(sub: Any) -> None:
    p = sub.add_parser("log", help="the conversation log (log_bodies)")
    acts = p.add_subparsers(dest="action", required=True)
    ex = acts.add_parser("export", help="logged requests as JSON Lines on stdout, oldest first")
    ex.add_argument("--since", default="1d", help="1d, 24h, 30m, 2w or 2026-11-01 (UTC)")
    ex.add_argument("--format", choices=("jsonl",), default="jsonl")
    add_shared(
        p, [ex], "--config", metavar="FILE", help="the proxy's TOML file (state_dir, storage)"
    )
    add_shared(
        p,
        [ex],
        "--env-file",
        metavar="FILE",
        help="a systemd EnvironmentFile with TRIOPROXY_* settings",
    )
    add_shared(
        p, [ex], "--state-dir", help="where the SQLite log is (default: from the configuration)"
    )


def run(args: argparse.Namespace) -> int:
    try:
        where = settings_from(args.config, args.env_file)
        since = parse_since(args.since, time.time())
        url = "" if args.state_dir else where.database_url
        db = open_database(url, args.state_dir or where.state_dir, readonly=True)
    except (UsageError, StorageError) as exc:
        print(f"trioproxy log export: {exc}", file=sys.stderr)
        return 1
    unzstd = zstandard.ZstdDecompressor()
    out = sys.stdout.buffer
    progress = sys.stderr.isatty()
    count = 0
    try:
        for row in db.export_log(since):
            out.write(export_line(row, unzstd))
            count += 1
            if progress and count % PROGRESS_EVERY == 0:
                print(f"\r{count} requests exported…", end="", file=sys.stderr, flush=True)
    except StorageError as exc:
        print(f"\ntrioproxy log export: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        return 0
    finally:
        db.close()
    out.flush()
    if progress:
        print(f"\r{count} requests exported.", file=sys.stderr)
    return 0
