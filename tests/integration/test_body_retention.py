"""Request bodies kept for retries are bounded over the whole worker
(limits.retained_body_bytes): sixteen concurrent 32 MiB uploads of each
kind (HTTP/1.1 chunked, HTTP/1.1 with Content-Length, HTTP/2) are all
answered, the worker's memory stays within the budget's reach, and it
goes back to the system afterwards."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
import trio

from tests.helpers import H2Client, clean_env, read_until, serving, spawn_trioproxy, stop
from tests.services import free_port

MIB = 1024 * 1024
UPLOADS = 16
BODY = b'{"model":"claude-sonnet-4-6","messages":[],"pad":"' + b"a" * (32 * MIB - 64)
BODY += b'"}'.rjust(32 * MIB - len(BODY), b" ")  # exactly 32 MiB, valid JSON
assert len(BODY) == 32 * MIB
TARGET = "/v1/messages/count_tokens"

pytestmark = pytest.mark.timeout(180)


def rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert m is not None
    return int(m.group(1)) * 1024


def worker_of(pid: int) -> int:
    """The one worker process under `trioproxy serve` (workers = 1)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        if children:
            return int(children[0])
    raise AssertionError("no worker process")


async def h1_upload(port: int, chunked: bool) -> int:
    async with await trio.open_tcp_stream("127.0.0.1", port) as s:
        framing = "transfer-encoding: chunked" if chunked else f"content-length: {len(BODY)}"
        head = f"POST {TARGET} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        await s.send_all(f"{head}{framing}\r\n\r\n".encode())
        view = memoryview(BODY)
        piece = 256 * 1024
        for at in range(0, len(view), piece):
            part = view[at : at + piece]
            if chunked:
                await s.send_all(b"%x\r\n" % len(part) + bytes(part) + b"\r\n")
            else:
                await s.send_all(part)
        if chunked:
            await s.send_all(b"0\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            data = await s.receive_some(65536)
            assert data, answer
            answer += data
    status = int(answer.split(b" ", 2)[1])
    assert orjson.loads(answer.partition(b"\r\n\r\n")[2])["input_tokens"] > 0
    return status


async def h2_upload(nursery: trio.Nursery, port: int) -> int:
    client = await H2Client.connect(nursery, port)
    try:
        r = await client.request("POST", TARGET, [("content-type", "application/json")], BODY)
    finally:
        await client.aclose()
    return r.status


@pytest.mark.parametrize("kind", ["chunked", "content-length", "h2"])
async def test_retained_bodies_are_bounded_and_given_back(nursery: trio.Nursery, kind: str) -> None:
    fake_port = free_port()
    fake = await spawn_trioproxy(
        "fake-upstream", "--listen", f"127.0.0.1:{fake_port}", env=clean_env()
    )
    try:
        assert fake.stderr is not None
        with trio.fail_after(20):
            await read_until(fake.stderr, rb"listening on", bytearray())
        env = clean_env(
            TRIOPROXY_UPSTREAM=f"http://127.0.0.1:{fake_port}",
            TRIOPROXY_LIMITS_RETAINED_BODY_BYTES=str(64 * MIB),
            TRIOPROXY_WORKERS="1",
        )
        async with serving(env=env) as proxy:
            worker = worker_of(proxy.proc.pid)
            assert await h1_upload(proxy.port, chunked=False) == 200  # warm: pools, imports
            start = rss(worker)
            peak = start
            statuses: list[int] = []

            async def sample() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, rss(worker))
                    await trio.sleep(0.02)

            async def one() -> None:
                if kind == "h2":
                    statuses.append(await h2_upload(nursery, proxy.port))
                else:
                    statuses.append(await h1_upload(proxy.port, chunked=kind == "chunked"))

            async with trio.open_nursery() as inner:
                inner.start_soon(sample)
                async with trio.open_nursery() as uploads:
                    for _ in range(UPLOADS):
                        uploads.start_soon(one)
                inner.cancel_scope.cancel()
            assert statuses == [200] * UPLOADS
            grew = peak - start
            assert grew <= 128 * MIB, f"the worker grew {grew / MIB:.0f} MiB"
            for _ in range(60):  # up to 30 s: memory is polled, there is no event for it
                after = rss(worker)
                if after <= start + 64 * MIB:
                    break
                await trio.sleep(0.5)
            assert after <= start + 64 * MIB, (
                f"{(after - start) / MIB:.0f} MiB not given back (peak +{grew / MIB:.0f} MiB)"
            )
            # Some uploads did not fit the 64 MiB budget: counted, and said so.
            with trio.fail_after(10):
                await proxy.logged(rb'"retention_skipped":true')
    finally:
        await stop(fake)
