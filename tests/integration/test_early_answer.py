"""Keep-alive after an answer that goes out before the request body arrived
(a 401, the proxy's own 429, a 413 by Content-Length): the client writes the
head, gets the answer, then writes the body and its next request on the same
connection. The next request is answered, or the early answer said
`connection: close` and the connection closed: never a silent drop."""

from __future__ import annotations

from typing import Any

import anthropic
import h11
import orjson
import pytest
import trio

from tests.helpers import H1Client, H1Response, Running, make_config, start_fake
from trioproxy.server import Server

KEY = "sk-caller-0123456789abcdef"


def message(size: int) -> bytes:
    """A Messages request of about ``size`` bytes."""
    pad = "x" * max(0, size - 100)
    doc = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": pad}]}
    return orjson.dumps(doc)


async def start(nursery: trio.Nursery, fake: Running, **cfg: Any) -> int:
    server = Server(make_config(**cfg))
    port: int = await nursery.start(server.serve)
    return port


async def early_then_next(
    port: int, headers: list[tuple[str, str]], body: bytes
) -> tuple[H1Response, H1Response | None]:
    """Head first; read the early answer; then the body and a next request."""
    c = await H1Client.connect(port)
    try:
        hdrs = [("host", "x"), ("content-length", str(len(body))), *headers]
        await c.stream.send_all(
            c.conn.send(h11.Request(method="POST", target="/v1/messages", headers=hdrs))
        )
        with trio.fail_after(5):
            first = await c.read_response()
        closing = c.conn.their_state is h11.MUST_CLOSE
        try:
            await c.stream.send_all(c.conn.send(h11.Data(data=body)))
            await c.stream.send_all(c.conn.send(h11.EndOfMessage()))
        except trio.BrokenResourceError:
            assert closing
        if closing:
            with trio.fail_after(5):  # it said so, and it does close
                while await c.stream.receive_some(65536):
                    pass
            return first, None
        c.conn.start_next_cycle()
        with trio.fail_after(5):
            second = await c.request("GET", "/api/hello", [("x-api-key", KEY)])
        return first, second
    finally:
        await c.aclose()


@pytest.mark.parametrize("size", [1_000, 60_000], ids=["1KB-body", "60KB-body"])
async def test_keep_alive_after_a_401(nursery: trio.Nursery, size: int) -> None:
    fake = await start_fake(nursery)
    port = await start(
        nursery, fake, upstream__url=fake.url, auth__secrets=f"team:{KEY}", upstream__api_key="k"
    )
    first, second = await early_then_next(
        port, [("x-api-key", "sk-wrong-key-0000000000")], message(size)
    )
    assert first.status == 401 and first.header(b"connection") is None
    assert second is not None and second.status == 200


async def test_keep_alive_after_the_proxys_own_429(nursery: trio.Nursery) -> None:
    fake = await start_fake(nursery)
    quota = {"tokens": 1, "window": "daily", "threshold": 1.0}
    port = await start(
        nursery, fake, providers=[{"name": "a", "base_url": fake.url, "quota": quota}]
    )
    c = await H1Client.connect(port)  # spends the quota
    assert (await c.request("POST", "/v1/messages", [], message(200))).status == 200
    await c.aclose()
    first, second = await early_then_next(port, [], message(1_000))
    assert first.status == 429 and first.header(b"x-trioproxy-error") == b"1"
    # answered too (the quota is still spent: the same 429, on the same connection)
    assert second is not None and second.status == 429 and second.complete


async def test_keep_alive_after_a_413_by_content_length(nursery: trio.Nursery) -> None:
    fake = await start_fake(nursery)
    port = await start(nursery, fake, upstream__url=fake.url, limits__max_body_bytes=1_000)
    first, second = await early_then_next(port, [], message(2_000))
    assert first.status == 413 and first.header(b"connection") is None
    assert second is not None and second.status == 200
    assert fake.fake is not None and fake.fake.requests == 1  # only the GET went upstream


async def test_a_large_unread_body_gets_connection_close(nursery: trio.Nursery) -> None:
    """Too much left to discard: the answer says the connection closes, and
    it does; the client knows to open a new one."""
    fake = await start_fake(nursery)
    port = await start(nursery, fake, upstream__url=fake.url, limits__max_body_bytes=100_000)
    first, second = await early_then_next(port, [], message(300_000))
    assert first.status == 413 and first.header(b"connection") == b"close"
    assert second is None


async def test_the_sdk_reuses_its_connection_after_a_401(nursery: trio.Nursery) -> None:
    fake = await start_fake(nursery)
    port = await start(
        nursery, fake, upstream__url=fake.url, auth__secrets=f"team:{KEY}", upstream__api_key="k"
    )

    def use_sdk() -> str:
        with anthropic.Anthropic(
            base_url=f"http://127.0.0.1:{port}", api_key="sk-wrong-key-0000000000", max_retries=0
        ) as wrong:
            big = "x" * 200_000  # sent after the head; the 401 comes first
            for _ in range(3):
                with pytest.raises(anthropic.AuthenticationError):
                    wrong.messages.create(
                        model="m", max_tokens=5, messages=[{"role": "user", "content": big}]
                    )
                right = wrong.with_options(api_key=KEY)  # the same connection pool
                msg = right.messages.create(
                    model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
                )
            block = msg.content[0]
            assert block.type == "text"
            return block.text

    assert await trio.to_thread.run_sync(use_sdk)
