"""Upstream side: connections to the API origin and the pool that shares them.

Theory of operation: the exchange (an attempt) asks the pool for a *lease* (one request's use
of a connection: the whole connection for HTTP/1.1, one stream for HTTP/2). The
pool's bookkeeping is synchronous and printable (``repr``); the I/O around it is
Trio. A lease is released when the response body ends, not when headers arrive:
only then is an HTTP/1.1 connection free for the next request.
"""
