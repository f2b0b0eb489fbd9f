"""The state the workers and instances of one trioproxy share, behind one
interface (``StateStore``, in ``base.py``).

What is shared: quota counts (tokens per provider and hour), breaker and
cooldown decisions, session affinity, and the routing mode. The hot path
never waits on the store: the router reads its own view in memory, and a
task calls ``sync`` about twice a second. A sync sends what this process
changed since the last one (quota increments, events) and brings back what
the others changed (quota totals, their events), so every view is at most
about a second behind.

Backend: ``local.py``, a SQLite file in the state directory, shared by the
workers of one machine (WAL; each sync is one short transaction in a
thread).
"""
