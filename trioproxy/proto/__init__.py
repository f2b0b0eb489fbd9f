"""Sans-IO protocol cores.

Nothing in this package imports trio, reads a clock or touches a socket: bytes go
in, neutral events (``events.py``) come out, and events go in, bytes come out.
That is where the protocol bugs live, so it is tested with byte fixtures alone.
"""
