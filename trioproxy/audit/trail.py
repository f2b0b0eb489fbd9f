"""Writing and reading the audit trail (blocking: the server calls these
in a worker thread, the CLI directly). A change that cannot be written is
logged, never lost silently, and never undoes the change itself."""

from __future__ import annotations

import getpass
import logging
from collections.abc import Callable, Sequence

from trioproxy.audit.changes import Change
from trioproxy.db.base import Database, Row, StorageError

log = logging.getLogger("trioproxy.audit")

Opener = Callable[[], Database]


def write(opener: Opener, changes: Sequence[Change]) -> bool:
    if not changes:
        return True
    try:
        db = opener()
        try:
            db.insert_audit([c.row() for c in changes])
        finally:
            db.close()
    except (StorageError, OSError) as exc:
        for c in changes:
            log.error(
                "audit trail: %s of %r by %s not recorded: %s", c.action, c.subject, c.who, exc
            )
        return False
    return True


def read(opener: Opener, since: float, limit: int = 1000) -> list[Row]:
    db = opener()
    try:
        return db.audit_rows(since, limit)
    finally:
        db.close()


def os_user() -> str:
    """Who runs the CLI."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
