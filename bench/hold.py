"""Open N streaming requests and hold them idle (scenario F).

Each connection sends one streaming POST whose upstream stalls after the first
event; once every stream has its first bytes, the held count is printed and the
process waits for stdin to close. Run as ``python -m bench.hold PORT N``.
"""

from __future__ import annotations

import sys

import trio

REQUEST = (
    b"POST /v1/messages HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
    b"x-fake-fault: stall=1\r\ncontent-length: %d\r\n\r\n%s"
)
OPEN_TIMEOUT = 30.0  # seconds for one stream to open and get its first bytes
BODY = b'{"model":"claude-opus-4-7","max_tokens":8,"stream":true,"messages":[{"role":"user","content":"hold"}]}'


async def hold_one(
    port: int, held: list[trio.SocketStream], failed: list[str], limiter: trio.CapacityLimiter
) -> None:
    async with limiter:
        try:
            with trio.fail_after(OPEN_TIMEOUT):
                s = await trio.open_tcp_stream("127.0.0.1", port)
                await s.send_all(REQUEST % (len(BODY), BODY))
                data = await s.receive_some(65536)
        except trio.TooSlowError:  # e.g. never accepted: the proxy is out of descriptors
            failed.append(f"no answer within {OPEN_TIMEOUT:g} s")
            return
        except OSError as exc:  # trio's BrokenResourceError is not an OSError
            failed.append(repr(exc))
            return
        except trio.BrokenResourceError as exc:
            failed.append(repr(exc))
            return
        if not data.startswith(b"HTTP/1.1 200"):
            failed.append(repr(data[:60]))
            await s.aclose()
            return
    held.append(s)


async def main(port: int, n: int) -> None:
    held: list[trio.SocketStream] = []
    failed: list[str] = []
    limiter = trio.CapacityLimiter(200)  # connections being opened at once
    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(hold_one, port, held, failed, limiter)
    first = failed[0] if failed else ""
    print(f"HELD {len(held)} FAILED {len(failed)} {first}", flush=True)
    await trio.to_thread.run_sync(sys.stdin.read)
    for s in held:
        await s.aclose()


if __name__ == "__main__":
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    trio.run(main, int(sys.argv[1]), int(sys.argv[2]))
