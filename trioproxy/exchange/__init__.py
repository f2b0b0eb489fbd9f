"""One request's journey, in one package.

    listener -> connection (inbound/conn.py) -> transport (inbound/h1.py, h2.py)
      -> proxy.py      CORS preflight, own endpoints, auth, the record, errors
      -> plan.py       which providers, in which order, or the proxy's refusal
      -> forward.py    the plan executed: each attempt judged, retries and failover
      -> attempt.py    one try: request out, answer's head back (two phases)
      -> respond.py    the answer to the client through the stages; cuts mirrored
      -> proxy.py      accounting: metrics, quotas, ledger, access line

``trip.py`` holds what the steps share about one request; ``body.py`` the
request body as the forwarding side reads it (kept for retries until the
answer reaches the client); ``stages.py`` the one way to change or watch a
body as it streams (its docstring lists them, in order).

Rules:

* The proxy decides for the upstream only when it can do better (another
  provider) or when the operator told it to (a quota): with one candidate,
  the upstream's own answer reaches the client verbatim.
* Nothing has reached the client until the first response bytes are written;
  until then a failure is retried, failed over or answered (an error in
  Anthropic's shape, mapped once, in proxy.py). After, it is mirrored.
* Every step takes the configuration the request started with (``trip.cfg``).
* Transports are seen only through ``inbound.exchange.ClientExchange``; the
  exchange never learns a feature's details (stages do) or the transport's.
"""
