"""Providers over real sockets: several fake upstreams on their own ports as
providers, the proxy in front, real HTTP clients."""

from __future__ import annotations

import socket
import sys
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from tests.helpers import H1Client, H1Response, Running, h1_request, make_config, start_fake
from trioproxy.server import Server

MESSAGE = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 20,
    "messages": [{"role": "user", "content": "hi"}],
}
BODY = orjson.dumps(MESSAGE)
STREAM_BODY = orjson.dumps({**MESSAGE, "stream": True})


def provider(name: str, fake: Running | str, **opts: Any) -> dict[str, Any]:
    url = fake if isinstance(fake, str) else fake.url
    return {"name": name, "base_url": url, **opts}


async def start_router(
    nursery: trio.Nursery, providers: list[dict[str, Any]], **cfg: Any
) -> Running:
    server = Server(make_config(providers=providers, **cfg))
    server.router.rand = lambda: 0.5  # no jitter: delays are exact
    port = await nursery.start(server.serve)
    return Running(server, port)


def refused_url() -> str:
    """A port nobody listens on."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


async def post(
    proxy: Running, body: bytes = BODY, headers: list[tuple[str, str]] | None = None
) -> H1Response:
    return await h1_request(proxy.port, "POST", "/v1/messages", headers or [], body)


async def admin(proxy: Running, token: str | None = None) -> dict[str, Any]:
    auth = [("authorization", f"Bearer {token}")] if token else []
    r = await h1_request(proxy.port, "GET", "/admin/providers", auth)
    assert r.status == 200, r.body
    doc: dict[str, Any] = orjson.loads(r.body)
    return {p["name"]: p for p in doc["providers"]} | {"_mode": doc["mode"]}


def served(fake: Running) -> int:
    assert fake.fake is not None
    return fake.fake.requests


@pytest.mark.parametrize("code", ["429", "500", "502", "503", "504", "529"])
async def test_fails_over_on_each_trigger_and_streams_verbatim(
    nursery: trio.Nursery, code: str
) -> None:
    a, b = await start_fake(nursery), await start_fake(nursery)
    assert a.fake is not None
    a.fake.default_faults = code.encode()
    proxy = await start_router(
        nursery, [provider("a", a, priority=1), provider("b", b, priority=2)], routing__retries=0
    )
    via = await post(proxy, STREAM_BODY)
    assert via.status == 200 and served(a) == 1 and served(b) == 1
    direct = await h1_request(b.port, "POST", "/v1/messages", [], STREAM_BODY)
    assert via.body == direct.body  # the SSE stream exactly as b sent it
    state = await admin(proxy)
    assert state["a"]["failovers"] == 1 and state["a"]["last_error"] == f"HTTP {code}"
    assert state["a"]["state"] == ("cooldown" if code == "429" else "healthy")


async def test_connection_errors_are_retried_then_failed_over(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    mock_clock.autojump_threshold = 0.05
    b = await start_fake(nursery)
    proxy = await start_router(
        nursery, [provider("a", refused_url()), provider("b", b, priority=200)]
    )
    t0 = trio.current_time()
    r = await post(proxy)
    assert r.status == 200 and served(b) == 1
    assert 1.5 <= trio.current_time() - t0 < 1.6  # two retries: 0.5 s, 1 s
    state = (await admin(proxy))["a"]
    assert "cannot be reached" in state["last_error"] and state["retries"] == 2
    # Three attempts, one request: the breaker counts it once.
    assert state["consecutive_failures"] == 1 and state["window_failures"] == 1
    assert state["state"] == "healthy"


async def test_connection_lost_before_the_response_fails_over(nursery: trio.Nursery) -> None:
    a, b = await start_fake(nursery), await start_fake(nursery)
    assert a.fake is not None
    a.fake.default_faults = b"hang-up"
    proxy = await start_router(
        nursery, [provider("a", a), provider("b", b, priority=200)], routing__retries=0
    )
    r = await post(proxy, STREAM_BODY)
    assert r.status == 200 and served(a) == 1 and served(b) == 1


async def test_response_header_timeout_fails_over(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    mock_clock.autojump_threshold = 0.05
    a, b = await start_fake(nursery), await start_fake(nursery)
    assert a.fake is not None
    a.fake.default_faults = b"slow-headers=30"
    proxy = await start_router(
        nursery, [provider("a", a, response_headers_timeout=2), provider("b", b, priority=200)]
    )
    t0 = trio.current_time()
    r = await post(proxy)
    assert r.status == 200 and served(b) == 1 and served(a) == 1  # a timeout is not retried
    assert 2.0 <= trio.current_time() - t0 < 2.1
    assert "no response headers within 2 s" in (await admin(proxy))["a"]["last_error"]


@pytest.mark.parametrize("code", ["400", "401", "403", "404", "413"])
async def test_client_errors_go_back_unchanged_without_failover(
    nursery: trio.Nursery, code: str
) -> None:
    a, b = await start_fake(nursery), await start_fake(nursery)
    assert a.fake is not None
    a.fake.default_faults = code.encode()
    proxy = await start_router(nursery, [provider("a", a), provider("b", b, priority=200)])
    r = await post(proxy)
    direct = await h1_request(a.port, "POST", "/v1/messages", [], BODY)
    assert r.status == int(code) and served(b) == 0
    assert r.body.replace(b"000001", b"000002") == direct.body
    assert r.header(b"x-trioproxy-error") is None


async def test_retries_with_backoff_then_fails_over(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    mock_clock.autojump_threshold = 0.05  # virtual time jumps over the backoff sleeps
    a, b = await start_fake(nursery), await start_fake(nursery)
    assert a.fake is not None
    a.fake.default_faults = b"503"
    proxy = await start_router(nursery, [provider("a", a), provider("b", b, priority=200)])
    t0 = trio.current_time()
    r = await post(proxy)
    elapsed = trio.current_time() - t0
    assert r.status == 200 and served(a) == 3 and served(b) == 1  # 1 + 2 retries
    assert 1.5 <= elapsed < 1.6, elapsed  # 0.5 s, then 1 s (no jitter here)
    state = (await admin(proxy))["a"]
    assert state["retries"] == 2 and state["window_failures"] == 1  # one request, once


async def test_529_fails_over_at_once_when_another_provider_can_serve(
    nursery: trio.Nursery,
) -> None:
    """An overloaded upstream is not asked again: the load goes elsewhere."""
    a, b = await start_fake(nursery), await start_fake(nursery)
    assert a.fake is not None
    a.fake.default_faults = b"529"
    proxy = await start_router(nursery, [provider("a", a), provider("b", b, priority=200)])
    r = await post(proxy)
    assert r.status == 200 and served(a) == 1 and served(b) == 1
    assert (await admin(proxy))["a"]["retries"] == 0


async def test_retry_after_is_honoured_up_to_the_cap(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    mock_clock.autojump_threshold = 0.05
    a, b = await start_fake(nursery), await start_fake(nursery)
    assert a.fake is not None
    a.fake.script.extend([b"503=3"])  # then healthy
    proxy = await start_router(nursery, [provider("a", a), provider("b", b, priority=200)])
    t0 = trio.current_time()
    r = await post(proxy)
    assert r.status == 200 and served(a) == 2 and served(b) == 0
    assert 3.0 <= trio.current_time() - t0 < 3.1
    # Over the cap (10 s): no waiting, fail over, and a sits out for that long.
    a.fake.script.extend([b"529=30"])
    t0 = trio.current_time()
    r = await post(proxy)
    assert r.status == 200 and served(a) == 3 and served(b) == 1
    assert trio.current_time() - t0 < 0.1
    state = await admin(proxy)
    assert state["a"]["state"] == "cooldown"
    await post(proxy)
    assert served(a) == 3 and served(b) == 2  # skipped while cooling down
    await trio.sleep(30)
    await post(proxy)
    assert served(a) == 4


async def test_429_without_retry_after_is_a_spend_cap(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    mock_clock.autojump_threshold = 0.05
    a, b = await start_fake(nursery), await start_fake(nursery)
    assert a.fake is not None
    a.fake.script.extend([b"503=0", b"429"])  # a 429 from the fake says retry-after 1
    proxy = await start_router(
        nursery,
        [provider("a", a, cooldown_s=1800), provider("b", b, priority=200)],
    )
    r = await post(proxy)
    assert r.status == 200 and served(a) == 2 and served(b) == 1  # 503 retried, 429 not
    state = await admin(proxy)
    assert state["a"]["state"] == "cooldown"
    assert state["a"]["cooldown_until"] is not None
    await trio.sleep(1.5)  # its retry-after (1 s) passed
    await post(proxy)
    assert served(a) == 3


async def test_breaker_opens_then_lets_exactly_one_trial_through(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    mock_clock.autojump_threshold = 0.05
    a, b = await start_fake(nursery), await start_fake(nursery)
    assert a.fake is not None
    assert b.fake is not None
    a.fake.default_faults = b"500"
    b.fake.script.extend([b"500"] * 4)  # b fails as often, so a stays first in line
    proxy = await start_router(
        nursery,
        [provider("a", a, open_s=30), provider("b", b, priority=200, open_s=1)],
        routing__breaker_min_requests=4,
    )
    states = []
    for _ in range(4):
        r = await post(proxy)
        assert r.status == 500 and r.header(b"x-trioproxy-error") is None  # b's own answer
        states.append((await admin(proxy))["a"]["state"])
    assert states == ["healthy", "healthy", "degraded", "open"]  # 4 of 4 requests failed
    assert (await admin(proxy))["b"]["state"] == "open"
    # Both open: the proxy does not answer for them, it asks the one that
    # becomes available first (b, open for 1 s) and that one is healthy again.
    both_open = await post(proxy)
    assert both_open.status == 200 and served(a) == 4 and served(b) == 5
    assert (await admin(proxy))["b"]["state"] == "open"  # not the trial: it stays open
    await trio.sleep(1)
    assert (await post(proxy)).status == 200  # b's trial closes b; a is still open
    assert served(a) == 4 and served(b) == 6
    assert (await admin(proxy))["b"]["state"] == "healthy"
    await trio.sleep(29)
    assert (await admin(proxy))["a"]["state"] == "half-open"
    # The trial is slow; meanwhile another request must not reach a.
    a.fake.default_faults = None
    a.fake.script.append(b"slow-headers=5")
    async with trio.open_nursery() as inner:
        results: list[H1Response] = []

        async def one() -> None:
            results.append(await post(proxy))

        inner.start_soon(one)
        await a.fake.wait_for(lambda f: f.requests == 5)
        before_b = served(b)
        await post(proxy)
        assert served(a) == 5 and served(b) == before_b + 1
    assert results[0].status == 200
    state = (await admin(proxy))["a"]
    assert state["state"] == "healthy" and state["consecutive_failures"] == 0


async def test_a_single_provider_is_asked_even_when_its_breaker_is_open(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    """With nobody else to try, health never stands between the client and
    the upstream: every request gets the upstream's own answer."""
    mock_clock.autojump_threshold = 0.05
    a = await start_fake(nursery)
    assert a.fake is not None
    a.fake.default_faults = b"502"
    proxy = await start_router(
        nursery, [provider("a", a, open_s=10)], routing__breaker_min_requests=4
    )
    for _ in range(4):
        r = await post(proxy)
        assert r.status == 502 and r.header(b"x-trioproxy-error") is None  # its answer
    assert (await admin(proxy))["a"]["state"] == "open"
    r = await post(proxy)
    assert r.status == 502 and r.header(b"x-trioproxy-error") is None and served(a) == 5
    await trio.sleep(10)
    assert (await post(proxy)).status == 502  # the half-open trial: fails
    state = (await admin(proxy))["a"]
    assert state["state"] == "open" and state["consecutive_failures"] == 6
    a.fake.default_faults = None
    assert (await post(proxy)).status == 200 and served(a) == 7  # still asked, still open
    assert (await admin(proxy))["a"]["state"] == "open"  # only a trial closes it
    await trio.sleep(10)
    assert (await post(proxy)).status == 200
    assert (await admin(proxy))["a"]["state"] == "healthy"


async def test_quota_crossing_skips_the_provider_until_the_window_resets(
    nursery: trio.Nursery,
) -> None:
    a, b = await start_fake(nursery), await start_fake(nursery)
    # The fake reports about len(body)/4 input tokens plus a few output ones.
    proxy = await start_router(
        nursery,
        [
            provider("a", a, quota={"tokens": 40, "window": "daily", "threshold": 0.9}),
            provider("b", b, priority=200),
        ],
    )
    day = 1_795_000_000 // 86400 * 86400  # a midnight UTC
    proxy.server.router.wall = lambda: day + 3600.0
    r = await post(proxy)
    assert r.status == 200 and served(a) == 1
    quota = (await admin(proxy))["a"]["quota"]
    assert quota["used"] >= 36 and quota["over"] and quota["reset_at"] == day + 86400
    assert (await admin(proxy))["a"]["state"] == "over_quota"
    await post(proxy)
    assert served(a) == 1 and served(b) == 1
    proxy.server.router.wall = lambda: day + 86400.0 + 1  # the next day
    await post(proxy)
    assert served(a) == 2


async def test_abandoned_stream_counts_against_the_quota(nursery: trio.Nursery) -> None:
    a = await start_fake(nursery)
    proxy = await start_router(
        nursery, [provider("a", a, quota={"tokens": 10**6, "window": "weekly"})]
    )
    client = await H1Client.connect(proxy.port)
    await client.send_request(
        "POST", "/v1/messages", [("x-fake-fault", "event-delay=0.2")], STREAM_BODY
    )
    seen = b""
    with trio.fail_after(5):
        while b"message_start" not in seen:
            seen += await client.receive_some()
    await client.aclose()  # hang up mid-stream
    with trio.fail_after(5):
        # The proxy exposes no event for "usage recorded": poll its admin API.
        while (await admin(proxy))["a"]["quota"]["used"] == 0:  # noqa: ASYNC110
            await trio.sleep(0.02)
    assert (await admin(proxy))["a"]["quota"]["used"] > 0


async def test_session_stays_on_its_provider(nursery: trio.Nursery) -> None:
    a, b = await start_fake(nursery), await start_fake(nursery)
    assert a.fake is not None
    proxy = await start_router(
        nursery, [provider("a", a), provider("b", b, priority=200)], routing__retries=0
    )
    a.fake.script.append(b"503")
    s1 = [("x-claude-code-session-id", "sess-1")]
    await post(proxy, headers=s1)  # a fails: the session moves to b
    assert (served(a), served(b)) == (1, 1)
    await post(proxy, headers=s1)  # a is fine again, but the session stays on b
    assert (served(a), served(b)) == (1, 2)
    await post(proxy, headers=[("x-claude-code-session-id", "sess-2")])  # a new one: a
    assert (served(a), served(b)) == (2, 2)
    # the session id inside metadata.user_id counts too
    meta = orjson.dumps({**MESSAGE, "metadata": {"user_id": "user_x_account_y_session_sess-3000"}})
    a.fake.script.append(b"503")
    await post(proxy, meta)
    await post(proxy, meta)
    assert (served(a), served(b)) == (3, 4)


THINKING_BODY = (
    b'{"model":"claude-sonnet-4-5","max_tokens":20,"thinking":{"type":"enabled","budget_tokens":1024},'
    b'"messages":[{"role":"user","content":"q"},{"role":"assistant","content":['
    b'{"type":"thinking","thinking":"hmm","signature":"EqQBCkYIARgCIkDx"},{"type":"text","text":"a"}]},'
    b'{"role":"user","content":"again"}]}'
)


@pytest.mark.parametrize("same_family", [True, False])
async def test_thinking_blocks_stripped_only_on_a_family_change(
    nursery: trio.Nursery, same_family: bool
) -> None:
    a, b = await start_fake(nursery), await start_fake(nursery)
    assert a.fake is not None and b.fake is not None
    a.fake.default_faults = b"529"
    proxy = await start_router(
        nursery,
        [
            provider("a", a, family="anthropic"),
            provider("b", b, priority=200, family="anthropic" if same_family else "minimax"),
        ],
        routing__retries=0,
    )
    r = await post(proxy, THINKING_BODY)
    assert r.status == 200 and served(b) == 1
    if same_family:
        assert b.fake.last_body == THINKING_BODY
    else:
        assert b'thinking","thinking' not in b.fake.last_body
        assert b'"signature"' not in b.fake.last_body
        assert b.fake.last_body == THINKING_BODY.replace(
            b'{"type":"thinking","thinking":"hmm","signature":"EqQBCkYIARgCIkDx"},', b""
        )
    assert a.fake.last_body == THINKING_BODY  # the first try had them all


ODD_BODY = (
    b'{"max_tokens": 20, "model" : "opus",\n"big":18446744073709551616123,"f":1.0,'
    b'"messages":[{"role":"user","content":[{"type":"text","text":"\\u00e9\\ud83d\\ude00 \\"x\\"",'
    b'"cache_control":{"type":"ephemeral"}}]}], "unknown_field": {"keep": [1, 2.50]}}'
)


async def test_model_mapping_changes_only_the_model_value(nursery: trio.Nursery) -> None:
    a = await start_fake(nursery)
    assert a.fake is not None
    proxy = await start_router(
        nursery,
        [provider("a", a, models={"claude-opus-4-5": "MiniMax-M2", "default": "MiniMax-lite"})],
        aliases={"opus": "claude-opus-4-5"},
    )
    r = await post(proxy, ODD_BODY)
    assert r.status == 200
    assert a.fake.last_body == ODD_BODY.replace(b'"opus"', b'"MiniMax-M2"')
    assert orjson.loads(r.body)["model"] == "MiniMax-M2"
    seen = a.fake.seen[-1]
    assert (b"content-length", str(len(a.fake.last_body)).encode()) in seen.headers


async def test_drop_fields_and_betas_for_one_provider(nursery: trio.Nursery) -> None:
    a, b = await start_fake(nursery), await start_fake(nursery)
    assert a.fake is not None and b.fake is not None
    a.fake.default_faults = b"500"
    proxy = await start_router(
        nursery,
        [
            provider("a", a),
            provider(
                "b",
                b,
                priority=200,
                drop_fields=["context_management"],
                drop_betas=["context-management-2025-06-27"],
            ),
        ],
    )
    body = orjson.dumps({**MESSAGE, "context_management": {"edits": []}})
    betas = ("anthropic-beta", "oauth-2025-04-20, context-management-2025-06-27")
    r = await post(proxy, body, [betas])
    assert r.status == 200
    assert a.fake.last_body == body
    assert b.fake.last_body == orjson.dumps(MESSAGE)
    assert (b"anthropic-beta", b"oauth-2025-04-20") in b.fake.seen[-1].headers


async def test_every_provider_failing_returns_the_last_answer_verbatim(
    nursery: trio.Nursery,
) -> None:
    a, b = await start_fake(nursery), await start_fake(nursery)
    assert a.fake is not None and b.fake is not None
    a.fake.default_faults, b.fake.default_faults = b"500", b"503"
    proxy = await start_router(
        nursery, [provider("a", a), provider("b", b, priority=200)], routing__retries=0
    )
    r = await post(proxy)
    direct = await h1_request(b.port, "POST", "/v1/messages", [], BODY)
    assert r.status == 503 and r.body.replace(b"000001", b"000002") == direct.body
    assert r.header(b"x-trioproxy-error") is None
    # b answered, then c could not be reached: b's answer still goes back
    proxy2 = await start_router(
        nursery,
        [provider("b", b), provider("c", refused_url(), priority=200)],
        routing__retries=0,
    )
    r = await post(proxy2)
    assert r.status == 503 and b"Internal server error (fake 503)" in r.body


async def test_no_provider_answering_is_a_502_naming_them(nursery: trio.Nursery) -> None:
    proxy = await start_router(
        nursery,
        [provider("a", refused_url()), provider("b", refused_url(), priority=200)],
        routing__retries=0,
    )
    r = await post(proxy)
    err = orjson.loads(r.body)["error"]
    assert r.status == 502 and err["type"] == "api_error"
    assert "providers tried: a, b" in err["message"]


async def test_single_mode_never_fails_over(nursery: trio.Nursery) -> None:
    a, b = await start_fake(nursery), await start_fake(nursery)
    assert b.fake is not None
    b.fake.default_faults = b"500"
    proxy = await start_router(
        nursery,
        [provider("a", a), provider("b", b, priority=200)],
        routing__mode="single",
        routing__provider="b",
    )
    r = await post(proxy)
    assert r.status == 500 and served(a) == 0 and served(b) == 1


async def test_pin_header(nursery: trio.Nursery) -> None:
    a, b = await start_fake(nursery), await start_fake(nursery)
    providers = [provider("a", a), provider("b", b, priority=200)]
    closed = await start_router(nursery, providers)
    r = await post(closed, headers=[("x-trioproxy-provider", "b")])
    assert r.status == 403 and orjson.loads(r.body)["error"]["type"] == "permission_error"
    opened = await start_router(nursery, providers, routing__allow_pin=True)
    r = await post(opened, headers=[("x-trioproxy-provider", "b")])
    assert r.status == 200 and served(b) == 1 and served(a) == 0
    assert b.fake is not None
    assert all(name != b"x-trioproxy-provider" for name, _ in b.fake.seen[-1].headers)
    r = await post(opened, headers=[("x-trioproxy-provider", "zzz")])
    assert r.status == 400 and b"known: a, b" in r.body


async def test_switch_by_admin_api_and_cli_survives_a_restart(
    nursery: trio.Nursery, tmp_path: Any
) -> None:
    a, b = await start_fake(nursery), await start_fake(nursery)
    providers = [provider("a", a), provider("b", b, priority=200)]
    state_dir = str(tmp_path / "state")
    token = "admin-token-0123456789abcdef"
    opts = {"state_dir": state_dir, "admin__token": token}
    async with trio.open_nursery() as first:
        proxy = await start_router(first, providers, **opts)
        auth = [("authorization", f"Bearer {token}")]
        bad = await h1_request(
            proxy.port, "POST", "/admin/route", auth, b'{"mode":"single","provider":"zz"}'
        )
        assert bad.status == 400 and b"no provider named 'zz'" in bad.body
        r = await h1_request(
            proxy.port, "POST", "/admin/route", auth, b'{"mode":"single","provider":"b"}'
        )
        assert r.status == 200 and orjson.loads(r.body) == {"mode": "single", "provider": "b"}
        await post(proxy)
        assert (served(a), served(b)) == (0, 1)
        # the CLI, as a real process, switches back
        cli = await trio.run_process(
            [
                sys.executable,
                "-m",
                "trioproxy",
                "switch",
                "--failover",
                "--url",
                f"http://127.0.0.1:{proxy.port}",
                "--token",
                token,
            ],
            capture_stdout=True,
            capture_stderr=True,
        )
        assert b"routing: failover" in cli.stdout and b"healthy" in cli.stdout
        await post(proxy)
        assert (served(a), served(b)) == (1, 1)
        cli = await trio.run_process(
            [
                sys.executable,
                "-m",
                "trioproxy",
                "switch",
                "b",
                "--url",
                f"http://127.0.0.1:{proxy.port}",
                "--token",
                token,
            ],
            capture_stdout=True,
        )
        assert b"routing: single (b)" in cli.stdout
        first.cancel_scope.cancel()
    # a new server on the same state directory: still single (b)
    proxy = await start_router(nursery, providers, **opts)
    assert (await admin(proxy, token))["_mode"] == "single"
    await post(proxy)
    assert (served(a), served(b)) == (1, 2)
    # ... unless the configured routing changed since the switch: config wins
    proxy = await start_router(
        nursery, providers, routing__mode="single", routing__provider="a", **opts
    )
    await post(proxy)
    assert (served(a), served(b)) == (2, 2)


async def test_quota_counts_survive_a_restart(nursery: trio.Nursery, tmp_path: Any) -> None:
    a = await start_fake(nursery)
    providers = [provider("a", a, quota={"tokens": 10**6, "window": "weekly"})]
    state_dir = str(tmp_path / "state")
    async with trio.open_nursery() as first:
        proxy = await start_router(first, providers, state_dir=state_dir)
        await post(proxy)
        used = (await admin(proxy))["a"]["quota"]["used"]
        assert used > 0
        first.cancel_scope.cancel()  # the last counts are written on the way out
    proxy = await start_router(nursery, providers, state_dir=state_dir)
    assert (await admin(proxy))["a"]["quota"]["used"] == used


async def test_one_callers_429_does_not_hold_back_another_callers_key(
    nursery: trio.Nursery,
) -> None:
    """Passthrough: a 429 is about the credential that got it, so only that
    caller's requests go elsewhere while it cools down."""
    a, b = await start_fake(nursery), await start_fake(nursery)
    assert a.fake is not None
    a.fake.script.append(b"429=30")
    proxy = await start_router(nursery, [provider("a", a), provider("b", b, priority=200)])
    alice, bob = [("x-api-key", "sk-alice-key")], [("x-api-key", "sk-bob-key")]
    assert (await post(proxy, headers=alice)).status == 200
    assert (served(a), served(b)) == (1, 1)  # a said 429 to alice: she went to b
    assert (await post(proxy, headers=bob)).status == 200
    assert (served(a), served(b)) == (2, 1)  # bob's own key is fine on a
    assert (await post(proxy, headers=alice)).status == 200
    assert (served(a), served(b)) == (2, 2)  # alice's key still cools down on a
    state = (await admin(proxy))["a"]
    assert state["state"] == "healthy" and state["credentials_cooling"] == 1


@pytest.mark.parametrize("two_providers", [False, True], ids=["one-provider", "failover"])
async def test_scattered_upstream_faults_never_become_an_outage(
    nursery: trio.Nursery, two_providers: bool
) -> None:
    """One request in six fails upstream. With one provider, clients see
    exactly those failures (the upstream's own answers) and nothing more;
    with two, failover hides them. No breaker opens either way."""
    a, b = await start_fake(nursery), await start_fake(nursery)
    providers = [provider("a", a)] + ([provider("b", b, priority=200)] if two_providers else [])
    proxy = await start_router(nursery, providers, routing__retries=0)
    assert a.fake is not None
    faults = ["500", "529", "502", "503", "504", "429=0"]
    statuses = []
    for i in range(60):
        fault = faults[(i // 6) % len(faults)] if i % 6 == 5 else ""
        if fault:
            a.fake.script.append(fault.encode())  # this request, on a only
        r = await post(proxy)
        statuses.append(r.status)
        if not two_providers and fault:
            assert r.status == int(fault[:3]) and r.header(b"x-trioproxy-error") is None
    errors = sum(s != 200 for s in statuses)
    assert errors == (0 if two_providers else 10)
    state = await admin(proxy)
    assert state["a"]["breaker"] == "closed" and served(a) == 60


async def test_retries_stay_within_the_retry_budget(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    """40 requests at once against a provider answering 503: at most
    max(3, 0.2 x requests in flight) same-provider retries run at a time; the
    rest fail over at once instead of hitting the struggling upstream again."""
    mock_clock.autojump_threshold = 0.05
    a, b = await start_fake(nursery), await start_fake(nursery)
    assert a.fake is not None
    a.fake.default_faults = b"503,slow-headers=0.5"  # all 40 are on a before any fails
    proxy = await start_router(
        nursery,
        [provider("a", a), provider("b", b, priority=200)],
        routing__breaker_min_requests=1000,  # the breaker stays out of this
    )
    router = proxy.server.router
    most = 0

    def sample(_fake: Any) -> bool:
        """Called whenever a request reaches a (retries included)."""
        nonlocal most
        most = max(most, router.retrying)
        return False

    async def watch() -> None:
        assert a.fake is not None
        await a.fake.wait_for(sample)

    async with trio.open_nursery() as inner:
        inner.start_soon(watch)
        async with trio.open_nursery() as clients:
            for _ in range(40):
                clients.start_soon(post, proxy)
        inner.cancel_scope.cancel()
    assert 0 < most <= 8, most  # 0.2 x 40 requests in flight
    retries = served(a) - 40
    assert served(b) == 40 and 0 < retries < 2 * 40  # unbudgeted: 80 retries
    assert router.retrying == 0 and router.forwarding == 0
