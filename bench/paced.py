"""Scenario G's load: N streaming requests held open at once, each receiving
paced SSE deltas (the fake upstream sends one event every ``--delay``
seconds, each in its own write). Counts the events that arrived and prints
one JSON line. Run: ``python -m bench.paced PORT --streams 40 --seconds 10``.
"""

from __future__ import annotations

import argparse
import json
import time

import trio

from bench.loads import CLAUDE_CODE_HEADERS

DELTA_CHARS = 44  # text per delta: about 170 bytes per event on the wire
BODY = (
    b'{"model":"claude-sonnet-4-6","max_tokens":4096,"stream":true,'
    b'"messages":[{"role":"user","content":"bench"}]}'
)


CC_HEAD = b"".join(f"{k}: {v}\r\n".encode() for k, v in CLAUDE_CODE_HEADERS)


async def one(port: int, fault: bytes, counts: list[int], errors: list[str]) -> None:
    head = (
        b"POST /v1/messages?beta=true HTTP/1.1\r\nhost: bench\r\n"
        b"content-type: application/json\r\n" + CC_HEAD + b"x-fake-fault: " + fault + b"\r\n"
        b"content-length: %d\r\n\r\n" % len(BODY)
    )
    events = 0
    tail = b""
    try:
        async with await trio.open_tcp_stream("127.0.0.1", port) as s:
            await s.send_all(head + BODY)
            while True:
                data = await s.receive_some(65536)
                if not data:
                    break
                chunk = tail + data
                events += chunk.count(b"\n\n") - tail.count(b"\n\n")
                tail = chunk[-64:]
                if b"event: message_stop" in chunk:
                    break
    except (OSError, trio.BrokenResourceError) as exc:
        errors.append(repr(exc))
    counts.append(events)


async def main(port: int, streams: int, seconds: float, delay: float) -> None:
    per_stream = int(seconds / delay)
    fault = b"event-delay=%g,delta-chars=%d,text-bytes=%d" % (
        delay,
        DELTA_CHARS,
        per_stream * DELTA_CHARS,
    )
    counts: list[int] = []
    errors: list[str] = []
    t0 = time.monotonic()
    async with trio.open_nursery() as nursery:
        for _ in range(streams):
            nursery.start_soon(one, port, fault, counts, errors)
    elapsed = time.monotonic() - t0
    print(
        "PACED_JSON "
        + json.dumps(
            {
                "streams": streams,
                "events": sum(counts),
                "seconds": elapsed,
                "errors": len(errors),
                "first_error": errors[0] if errors else "",
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--streams", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--delay", type=float, default=0.02, help="seconds between events")
    a = ap.parse_args()
    trio.run(main, a.port, a.streams, a.seconds, a.delay)
