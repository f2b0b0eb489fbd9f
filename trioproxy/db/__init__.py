"""Where the proxy keeps what it writes down: the usage ledger (a summary
row per request) and the conversation log (bodies, opt-in).

Two backends behind one interface (base.Database): SQLite in the state
directory, the default, and Postgres (``storage.database_url``) so several
instances share one ledger and one log. Both are synchronous and used from
worker threads: every write is a batch (accounting/journal.py), so a
thread hop per batch costs nothing that matters, and psycopg 3's async API
only runs on asyncio.

Schema changes are versioned migrations (schema.py) that run when a
database is opened; each backend applies the same list.
"""
