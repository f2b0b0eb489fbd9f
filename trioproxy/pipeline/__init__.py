"""What the proxy decides about a request, kept apart from how it is carried.

Decisions (auth, routing and failover, model mapping, scrubbing, quotas) are
plain functions of the request head and state; the Trio handler executes them.
The core proxy has one decision so far: where a request goes upstream
(``forward.py``). Later pipeline stages plug in here without touching the
transports.
"""
