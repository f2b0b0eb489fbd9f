"""A fake Anthropic Messages API, served by trioproxy's own HTTP/1.1 and h2c code.

Used by the tests, ``trioproxy demo`` and ``bench/``. Responses follow the real
API's shapes (JSON and the exact SSE event sequence); faults are chosen per
request with the ``x-fake-fault`` header (see ``faults.py``).
"""
