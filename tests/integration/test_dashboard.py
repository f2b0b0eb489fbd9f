"""/dashboard in a real browser (headless Chromium over the DevTools
protocol) against a running proxy with traffic flowing: the charts and
tables must have received data, and the alert banner must come up when the
error rate passes 10 %. The screenshot is kept in the test's temp dir."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import trio

from tests.browser import Browser, require_chromium
from tests.helpers import h1_request, start_fake, start_proxy

ALICE, BOB = "alice-secret-0123456789", "bob-secret-0123456789"
CAROL = "carol-secret-0123456789"


async def traffic(port: int, stop: trio.Event, fault: list[str]) -> None:
    """Two callers, streaming and not, until told to stop; ``fault[0]`` is
    put on every request (the fake upstream answers with it)."""
    i = 0
    while not stop.is_set():
        key = CAROL if i % 5 == 0 else ALICE if i % 3 else BOB
        stream = "true" if i % 2 else "false"
        body = (
            b'{"model":"claude-sonnet-4-5","max_tokens":30,"stream":' + stream.encode() + b","
            b'"messages":[{"role":"user","content":"hello there"}]}'
        )
        headers = [("x-api-key", key), ("content-type", "application/json")]
        if fault[0]:
            headers.append(("x-fake-fault", fault[0]))
        await h1_request(port, "POST", "/v1/messages", headers, body)
        i += 1
        with trio.move_on_after(0.05):
            await stop.wait()


def facts(b: Browser) -> dict[str, object]:
    return b.evaluate(
        """(() => {
          const pts = (id) => +document.getElementById(id).dataset.points;
          const max = (id) => +document.getElementById(id).dataset.max;
          const cells = (id) => [...document.querySelectorAll('#' + id + ' tbody tr')]
              .map((tr) => [...tr.cells].map((td) => td.textContent));
          return {
            snapshots: +document.body.dataset.snapshots,
            status: document.getElementById('status').textContent,
            points: {requests: pts('chart-requests'), tokens: pts('chart-tokens'),
                     latency: pts('chart-latency')},
            max: {requests: max('chart-requests'), tokens: max('chart-tokens')},
            errorsTop: +document.getElementById('chart-errors').dataset.top,
            rps: document.getElementById('t-rps').textContent,
            latency: document.getElementById('t-lat').textContent,
            cache: document.getElementById('t-cache').textContent,
            providers: cells('providers'), codes: cells('codes'), callers: cells('callers'),
            limits: cells('limits'),
            bars: [...document.querySelectorAll('#limits .bar')].map((b) => b.title),
            alert: document.getElementById('alert').className,
            alertText: document.getElementById('alert').textContent,
          };
        })()"""
    )


async def test_the_dashboard_draws_live_data_in_a_real_browser(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    exe = require_chromium()
    fake = await start_fake(nursery)
    proxy = await start_proxy(
        nursery,
        fake.url,
        auth__secrets=f"alice:{ALICE},bob:{BOB}",
        callers=[
            {
                "name": "carol",
                "secret_sha256": [hashlib.sha256(CAROL.encode()).hexdigest()],
                "rpm": 1000,
                "budget": {"usd": 1, "window": "daily"},
            }
        ],
        upstream__api_key="sk-x",
        routing__breaker_window_s=3,  # the failing phase opens the breaker within seconds
    )
    stop, fault = trio.Event(), [""]
    nursery.start_soon(traffic, proxy.port, stop, fault)
    url = f"http://127.0.0.1:{proxy.port}/dashboard"

    def healthy_phase() -> dict[str, object]:
        b = Browser(exe)
        try:
            b.open(url)
            b.wait_for(
                "+document.body.dataset.snapshots >= 4"
                " && +document.getElementById('chart-requests').dataset.points >= 3"
            )
            seen = facts(b)
            b.screenshot(tmp_path / "dashboard.png")
            return seen
        finally:
            b.close()

    seen = await trio.to_thread.run_sync(healthy_phase)
    assert seen["status"] == "live"
    assert seen["points"]["requests"] >= 3 and seen["max"]["requests"] > 0  # type: ignore[index]
    assert seen["points"]["tokens"] >= 3 and seen["max"]["tokens"] > 0  # type: ignore[index]
    assert seen["points"]["latency"] >= 1  # type: ignore[index]
    assert seen["rps"] != "\u2013" and "ms" in str(seen["latency"])
    assert [row[0] for row in seen["providers"]] == ["default"]  # type: ignore[attr-defined]
    assert seen["providers"][0][1] == "anthropic"  # type: ignore[index]
    assert seen["providers"][0][2] == "healthy"  # type: ignore[index]
    assert "200" in [row[0] for row in seen["codes"]]  # type: ignore[attr-defined]
    assert {row[0] for row in seen["callers"]} == {"alice", "bob", "carol"}  # type: ignore[attr-defined]
    # Each caller's use of its limits: carol's rpm and budget are bars.
    assert {row[0] for row in seen["limits"]} == {"alice", "bob", "carol"}  # type: ignore[attr-defined]
    bars = seen["bars"]
    assert any("requests in the last minute" in t for t in bars)  # type: ignore[attr-defined]
    assert any("USD daily" in t for t in bars)  # type: ignore[attr-defined]
    assert seen["alert"] == ""  # nothing wrong yet
    png = (tmp_path / "dashboard.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000

    # Now every request fails upstream: the banner comes up within seconds
    # (a fresh page, so the last minute it sees is failures only).
    fault[0] = "500"

    def failing_phase() -> dict[str, object]:
        b = Browser(exe)
        try:
            b.open(url)
            b.wait_for(
                "document.getElementById('alert').textContent.includes('error rate')"
                " && document.getElementById('alert').textContent.includes('circuit open')"
            )
            return facts(b)
        finally:
            b.close()

    seen = await trio.to_thread.run_sync(failing_phase)
    stop.set()
    assert seen["alert"] == "on" and "error rate" in str(seen["alertText"])
    # the failures also opened the breaker (the only provider is still asked:
    # its own 500s reach the clients)
    assert "provider default: circuit open" in str(seen["alertText"])
    assert 0 < float(seen["errorsTop"]) <= 1  # the error-rate axis stops at 100 %
    assert "500" in [row[0] for row in seen["codes"]]  # type: ignore[attr-defined]


async def test_dashboard_and_stream_ask_a_browser_for_the_admin_token(
    nursery: trio.Nursery,
) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url, admin__token="adm-0123456789abcdef")
    for path in ("/dashboard", "/metrics/stream"):
        r = await h1_request(proxy.port, "GET", path)
        assert r.status == 401
        assert r.header(b"www-authenticate") == b'Basic realm="trioproxy admin"'
    wrong = base64.b64encode(b"me:nope").decode()
    r = await h1_request(proxy.port, "GET", "/dashboard", [("authorization", f"Basic {wrong}")])
    assert r.status == 401
    right = base64.b64encode(b"anyone:adm-0123456789abcdef").decode()
    r = await h1_request(proxy.port, "GET", "/dashboard", [("authorization", f"Basic {right}")])
    assert r.status == 200 and b"<canvas" in r.body
    assert r.header(b"content-type") == b"text/html; charset=utf-8"
    assert b"http://" not in r.body and b"https://" not in r.body  # nothing fetched from outside
    # The JSON endpoints keep their plain 401 (no browser prompt for scripts).
    r = await h1_request(proxy.port, "GET", "/metrics.json")
    assert r.status == 401 and r.header(b"www-authenticate") is None


async def test_history_survives_a_reload_and_the_window_selector(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """The charts' history comes from the usage ledger: after the traffic
    stopped, a freshly loaded page still draws it; the window selector
    changes the charts and the tables; an error links to its log entry."""
    exe = require_chromium()
    fake = await start_fake(nursery)
    proxy = await start_proxy(
        nursery,
        fake.url,
        auth__secrets=f"alice:{ALICE},bob:{BOB},carol:{CAROL}",
        upstream__api_key="sk-x",
        log_bodies="errors",
    )
    stop, fault = trio.Event(), [""]
    with trio.move_on_after(2.0):
        await traffic(proxy.port, stop, fault)
    fault[0] = "429"
    with trio.move_on_after(0.5):
        await traffic(proxy.port, stop, fault)
    wrong = [("x-api-key", "not-a-caller")]
    assert (await h1_request(proxy.port, "POST", "/v1/messages", wrong, b"{}")).status == 401
    journal = proxy.server.state.journal
    with trio.fail_after(10):
        while journal.log_written < 2:  # noqa: ASYNC110 (a worker thread writes)
            await trio.sleep(0.05)
    await trio.sleep(0.5)  # the last ledger batch
    url = f"http://127.0.0.1:{proxy.port}/dashboard"

    def drive() -> dict[str, object]:
        b = Browser(exe)
        seen: dict[str, object] = {}
        try:
            for attempt in ("first", "reloaded"):
                b.open(url)  # a new page load each time: nothing kept in the page
                b.wait_for(
                    "+document.body.dataset.history >= 1 && document.body.dataset.usage === '15m'"
                    " && document.querySelectorAll('#errors tbody tr').length >= 2"
                )
                seen[attempt] = b.evaluate(
                    """(() => {
                      const c = (id) => document.getElementById(id).dataset;
                      const cells = (id) => [...document.querySelectorAll('#' + id + ' tbody tr')]
                        .map((tr) => [...tr.children].map((td) => td.textContent));
                      return {
                        snapshots: +(document.body.dataset.snapshots || 0),
                        requestsMax: +c('chart-requests').max, tokensMax: +c('chart-tokens').max,
                        errorsTop: +c('chart-errors').top, window: +c('chart-requests').window,
                        callers: cells('callers'), models: cells('models'), codes: cells('codes'),
                        links: [...document.querySelectorAll('#errors a')].map((a) => a.getAttribute('href')),
                      };
                    })()"""
                )
            b.screenshot(tmp_path / "dashboard-15m.png")
            b.evaluate("document.querySelector('#window [data-w=\"1h\"]').click()")
            b.wait_for(
                "document.getElementById('chart-requests').dataset.window === '3600'"
                " && document.body.dataset.usage === '1h'"
            )
            seen["hour"] = b.evaluate(
                "[document.querySelector('#window .on').textContent,"
                " document.querySelector('.wlabel').textContent,"
                " +document.getElementById('chart-requests').dataset.max]"
            )
            b.evaluate("document.querySelector('#window [data-w=\"24h\"]').click()")
            b.wait_for("document.getElementById('chart-requests').dataset.window === '86400'")
            b.screenshot(tmp_path / "dashboard-24h.png")
            link = seen["reloaded"]["links"][0]  # type: ignore[index]
            b.open(f"http://127.0.0.1:{proxy.port}{link}")
            b.wait_for("document.querySelector('#detail h2') !== null")
            seen["opened"] = b.evaluate(
                "[...document.querySelectorAll('#detail .fact .v')].map((e) => e.textContent)"
            )
            return seen
        finally:
            b.close()

    seen = await trio.to_thread.run_sync(drive)
    for attempt in ("first", "reloaded"):
        page = seen[attempt]
        assert isinstance(page, dict)
        # Drawn from the ledger: no traffic has flowed since, live rates are zero.
        assert page["requestsMax"] > 0 and page["tokensMax"] > 0, page
        assert page["window"] == 900 and 0 < page["errorsTop"] <= 1
        named = [r for r in page["callers"] if r[0] != "-"]  # "-": the refused 401, no caller
        assert {r[0] for r in named} == {"alice", "bob", "carol"}
        assert all(float(r[5]) > 0 for r in named)  # cost per caller
        assert [r[0] for r in page["models"]] == [
            "claude-sonnet-4-5",
            "-",
        ]  # "-": the 401 (no body read)
        codes = {r[0] for r in page["codes"]}
        assert {"200", "429", "401 (proxy)"} <= codes  # the proxy's own apart
        assert page["links"] and all(x.startswith("/admin/requests#id=req_") for x in page["links"])
    assert seen["hour"][:2] == ["1 h", "(last 1 h)"] and seen["hour"][2] > 0  # type: ignore[index]
    opened = seen["opened"]
    assert isinstance(opened, list) and any(v.startswith("4") for v in opened)  # a 429 or the 401
    for name in ("dashboard-15m.png", "dashboard-24h.png"):
        png = (tmp_path / name).read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 20_000
