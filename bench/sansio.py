"""CPU cost of the sans-IO layer alone for one proxied request (scenario A's
shape: Claude Code's headers, the API's 14-header answer):
h11 parses the client request, serialises the upstream request, parses the
upstream response and serialises the client response; header rules included.
No sockets, no Trio. Run: ``taskset -c 0 python -m bench.sansio``.
"""

from __future__ import annotations

import time

from bench.loads import CLAUDE_CODE_HEADERS
from trioproxy.config.providers import parse_origin
from trioproxy.proto.events import ResponseHead
from trioproxy.proto.h1 import H1Client, H1Server
from trioproxy.rules.upstream_head import upstream_head

body = (
    b'{"model":"claude-opus-4-7","max_tokens":64,"messages":[{"role":"user","content":"'
    + b"a" * 900
    + b'"}]}'
)
req = (
    b"POST /v1/messages?beta=true HTTP/1.1\r\nHost: 127.0.0.1:8787\r\n"
    + b"".join(f"{k}: {v}\r\n".encode() for k, v in CLAUDE_CODE_HEADERS)
    + b"connection: keep-alive\r\ncontent-type: application/json\r\n"
    + b"Content-Length: %d\r\n\r\n" % len(body)
) + body
# The API's answer as bench/nginx.py serves it: 14 headers.
resp_json = b'{"id":"msg_bench","type":"message","content":[{"type":"text","text":"Hello"}]}'
resp = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sun, 22 Nov 2026 13:00:00 GMT\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: keep-alive\r\n"
    b"request-id: req_011CBench0000000000000000\r\n"
    b"anthropic-organization-id: 00000000-0000-0000-0000-000000000000\r\n"
    b"anthropic-ratelimit-requests-limit: 4000\r\n"
    b"anthropic-ratelimit-requests-remaining: 3999\r\n"
    b"anthropic-ratelimit-requests-reset: 2026-11-30T12:00:01Z\r\n"
    b"anthropic-ratelimit-tokens-limit: 2000000\r\n"
    b"anthropic-ratelimit-tokens-remaining: 1997905\r\n"
    b"anthropic-ratelimit-tokens-reset: 2026-11-30T12:00:01Z\r\n"
    b"via: 1.1 google\r\n\r\n" % len(resp_json)
) + resp_json
origin = parse_origin("http://127.0.0.1:9", "x")
N = 5000  # proxied requests
s = H1Server(max_head_bytes=65536, max_headers=100)
c = H1Client(max_head_bytes=65536)
t0 = time.perf_counter()
for _ in range(N):
    s.receive_data(req)
    head = s.next_event()
    chunk = s.next_event()
    s.next_event()
    up = upstream_head(head, origin, upstream_is_h2=False)
    out = c.send_request_head(up, chunked=False) + c.send_body(chunk.data) + c.send_end()
    c.receive_data(resp)
    rh = c.next_event()
    rb = c.next_event()
    c.next_event()
    c.reusable()
    wire = (
        s.send_response_head(ResponseHead(rh.status, rh.headers))
        + s.send_body(rb.data)
        + s.send_end()
    )
    s.start_next_cycle()
dt = (time.perf_counter() - t0) / N
print(
    f"sans-IO cost per proxied request (h11 x4 + header rules): {dt * 1e6:.0f} us -> ceiling {1 / dt:,.0f} req/s on one core"
)
