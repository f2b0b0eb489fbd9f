"""Browser clients: CORS preflights from listed origins are answered by the
proxy before auth (never forwarded, never counted); answers to those
origins are readable by the page; everything else is as before. Checked
over real sockets and in a real headless Chromium making a cross-origin
fetch, as a browser app using the SDK with dangerouslyAllowBrowser does."""

from __future__ import annotations

from functools import partial

import orjson
import trio

from tests.browser import Browser, require_chromium
from tests.helpers import Running, h1_request, start_fake, start_proxy

KEY = "sk-browser-app-0123456789"
APP = "https://app.example"
PREFLIGHT = [
    ("origin", APP),
    ("access-control-request-method", "POST"),
    ("access-control-request-headers", "x-api-key,anthropic-version,content-type"),
]
BODY = orjson.dumps({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})


async def proxy_with_auth(nursery: trio.Nursery, fake: Running, origins: str) -> Running:
    return await start_proxy(
        nursery,
        fake.url,
        auth__secrets=f"web:{KEY}",
        upstream__api_key="sk-provider",
        cors__allow_origins=origins,
    )


async def test_preflight_from_a_listed_origin_is_answered_without_a_credential(
    nursery: trio.Nursery,
) -> None:
    fake = await start_fake(nursery)
    proxy = await proxy_with_auth(nursery, fake, f"https://other.example, {APP}")
    r = await h1_request(proxy.port, "OPTIONS", "/v1/messages", PREFLIGHT)
    assert r.status == 204 and r.body == b""
    assert r.header(b"access-control-allow-origin") == APP.encode()
    assert r.header(b"access-control-allow-methods") == b"POST"
    assert r.header(b"access-control-allow-headers") == b"x-api-key,anthropic-version,content-type"
    assert r.header(b"access-control-max-age") == b"86400"
    assert fake.fake is not None and fake.fake.requests == 0  # never forwarded
    metrics = orjson.loads((await h1_request(proxy.port, "GET", "/metrics.json")).body)
    assert metrics["requests"] == []  # never counted as a caller's request


async def test_answers_to_a_listed_origin_are_readable(nursery: trio.Nursery) -> None:
    fake = await start_fake(nursery)
    proxy = await proxy_with_auth(nursery, fake, APP)
    headers = [("origin", APP), ("x-api-key", KEY), ("content-type", "application/json")]
    ok = await h1_request(proxy.port, "POST", "/v1/messages", headers, BODY)
    assert ok.status == 200 and ok.header(b"access-control-allow-origin") == APP.encode()
    assert ok.header(b"access-control-expose-headers") == b"*" and ok.header(b"vary") == b"Origin"
    denied = await h1_request(proxy.port, "POST", "/v1/messages", headers[:1], BODY)
    assert denied.status == 401  # an error the page can read too
    assert denied.header(b"access-control-allow-origin") == APP.encode()
    plain = await h1_request(proxy.port, "POST", "/v1/messages", headers[1:], BODY)
    assert plain.status == 200 and plain.header(b"access-control-allow-origin") is None


async def test_other_origins_and_no_list_are_as_before(nursery: trio.Nursery) -> None:
    fake = await start_fake(nursery)
    assert fake.fake is not None
    listed = await proxy_with_auth(nursery, fake, APP)
    unlisted = [("origin", "https://evil.example"), *PREFLIGHT[1:]]
    r = await h1_request(listed.port, "OPTIONS", "/v1/messages", unlisted)
    assert r.status == 401 and r.header(b"access-control-allow-origin") is None
    # Without a list (and without caller auth) a preflight is forwarded like any request.
    open_proxy = await start_proxy(nursery, fake.url)
    r = await h1_request(open_proxy.port, "OPTIONS", "/v1/messages", PREFLIGHT)
    assert fake.fake.requests == 1 and fake.fake.seen[-1].method == b"OPTIONS"
    assert r.status == 404  # the fake's answer, verbatim


async def serve_page(nursery: trio.Nursery) -> int:
    """A page on its own origin (another port) for the browser to run in."""
    page = b"<!doctype html><title>app</title><p>browser app</p>"

    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                data += chunk
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n%s" % (len(page), page)
            )

    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    return int(listeners[0].socket.getsockname()[1])


FETCH = """fetch("http://127.0.0.1:%d/v1/messages", {
  method: "POST",
  headers: {"x-api-key": "%s", "anthropic-version": "2023-06-01",
            "content-type": "application/json",
            "anthropic-dangerous-direct-browser-access": "true"},
  body: JSON.stringify({model: "m", max_tokens: 5, messages: [{role: "user", content: "hi"}]}),
}).then(async r => ({status: r.status, id: r.headers.get("request-id"),
                     type: (await r.json()).type}),
        e => ({error: String(e)}))"""


async def test_a_real_browser_calls_the_proxy_cross_origin(nursery: trio.Nursery) -> None:
    exe = require_chromium()
    fake = await start_fake(nursery)
    page_port = await serve_page(nursery)
    origin = f"http://127.0.0.1:{page_port}"
    listed = await proxy_with_auth(nursery, fake, origin)
    unlisted = await proxy_with_auth(nursery, fake, APP)

    def in_browser() -> tuple[object, object]:
        b = Browser(exe)
        try:
            b.open(f"{origin}/")
            b.wait_for("document.readyState === 'complete' && !!document.querySelector('p')")
            return b.evaluate(FETCH % (listed.port, KEY)), b.evaluate(FETCH % (unlisted.port, KEY))
        finally:
            b.close()

    through, refused = await trio.to_thread.run_sync(in_browser)
    assert isinstance(through, dict) and through["status"] == 200, through
    assert through["type"] == "message" and str(through["id"]).startswith("req_fake_")
    # Not listed: the preflight meets caller auth (401, no CORS headers), as before.
    assert isinstance(refused, dict) and "Failed to fetch" in str(refused.get("error")), refused
    assert fake.fake is not None and fake.fake.requests == 1  # only the listed one's POST
