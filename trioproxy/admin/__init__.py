"""The proxy's own endpoints, answered locally and never forwarded.

The reserved set is deliberately small, so that every other path reaches the
upstream: ``/health``, ``/livez``, and the ``/admin/`` prefix (kept for the
admin API; unknown paths under it are 404 here rather than being forwarded).
"""
