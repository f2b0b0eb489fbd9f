"""Client side of the proxy: Trio shells around the sans-IO HTTP/1.1 and HTTP/2
server adapters. Each turns a connection into ``ClientExchange`` objects and
hands them to an application coroutine (the proxy, or the fake upstream).

Rules: one writer per connection; a client that disconnects or resets its
stream cancels its exchange's scope, so whatever the application awaits
(upstream I/O included) is cancelled within one scheduling round.
"""
