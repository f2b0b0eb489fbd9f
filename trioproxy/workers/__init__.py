"""Worker processes under one supervisor.

Theory of operation. ``trioproxy serve`` is a small supervisor
(``supervisor.py``) that binds the listening sockets once and runs
``workers`` copies of the proxy (``worker.py``) that all accept on them: the
sockets are inherited (``pass_fds``), not re-bound with ``SO_REUSEPORT``.
Inheritance is what makes a reload lossless: every worker accepts from the
one accept queue, so a worker that stops accepting leaves the connections
still queued to the others, and the socket never closes while the supervisor
holds it. With ``SO_REUSEPORT`` each worker owns a queue of its own, and the
connections still waiting in it are reset when that worker closes it.

Rules:

- The supervisor is the process systemd sees (``MainPID`` never changes): it
  sends READY=1 once every worker accepts, RELOADING=1 and READY=1 around a
  reload, STOPPING=1 on SIGTERM/SIGINT, which it forwards to the workers,
  who drain as the drain rules say.
- A worker that dies is restarted with a backoff (``policy.py``), and why it
  died is logged.
- SIGHUP re-reads the configuration (an invalid one changes nothing) and
  replaces the workers one at a time with fresh processes, so code installed
  on disk is picked up: a new worker accepts before the old one stops; the
  old one finishes its streams within ``timeouts.drain``.
- Each worker talks to the supervisor over its own Unix socket pair
  (``channel.py``, one JSON document per line): "ready" up, "retire" down.
  A worker whose supervisor is gone (end of file) drains and exits, so no
  orphan keeps the port.
"""
