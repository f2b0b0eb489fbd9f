"""The audit trail: every administrative change (callers, route switches,
reloads and the settings they changed, group policies), when, by whom,
and the value before and after, with secrets as hashes (changes.py, pure);
written to the database by the server and the CLI alike (trail.py)."""
