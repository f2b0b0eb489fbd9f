"""Fault parity: the official Python SDK at its default retry settings, run
against a faulty fake upstream directly and through the proxy, at the same
time. What the client sees must match: the exception class (or success),
the status, the attempts it made (its own retries), and the events a stream
delivered. With one provider the upstream also sees the same number of
requests: the proxy adds none and answers none for it.

Where two providers make the proxy better than direct (it fails over to
the healthy one), the test says so: then the client succeeds at the first
attempt where going direct it retried or failed.

Configurations: one provider and two (failover), each over HTTP/1.1 and
h2c (prior knowledge) to the proxy; and over HTTP/1.1, caller auth with a
provider key injected, scrubbing on, and TLS to the proxy."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import anthropic
import pytest
import trio
import trustme

from tests.helpers import Running, make_config, start_fake
from trioproxy.server import Server

CALLER = "sk-team-caller-0123456789"
HMAC = "cd" * 32
SECRET_TEXT = "deploy with ghp_a1B2c3D4e5a1B2c3D4e5a1B2c3D4e5f6G7h8 and mail ops@example.com"


@dataclass(frozen=True)
class Outcome:
    result: str  # "ok", or the exception's class name
    status: int | None
    attempts: int  # requests the SDK made (1 + its own retries)
    events: int  # stream events delivered before the end or the failure


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: bytes  # x-fake-fault syntax, applied at the upstream
    once: bool  # the next request only (then healthy), else every request
    # What the SDK sees direct, pinned: a fake that stopped injecting the
    # fault would make proxy and direct agree on the wrong thing.
    direct: Outcome
    stream: bool = False
    timeout: float | None = None  # the SDK's own timeout (default: 10 minutes)
    slower_than: float = 0.0  # seconds the direct call must take (a slow fault happened)

    @property
    def status_fault(self) -> bool:
        return self.fault[:3].isdigit()


SCENARIOS = [
    # The SDK retries 429 and 5xx twice (3 attempts), honouring retry-after.
    Scenario("429-retry-after-once", b"429=0.5", once=True, direct=Outcome("ok", None, 2, 0)),
    Scenario(
        "429-no-retry-after",
        b"429,no-retry-after",
        once=False,
        direct=Outcome("RateLimitError", 429, 3, 0),
    ),
    Scenario("529-once", b"529", once=True, direct=Outcome("ok", None, 2, 0)),
    Scenario("529-always", b"529", once=False, direct=Outcome("OverloadedError", 529, 3, 0)),
    Scenario("500-always", b"500", once=False, direct=Outcome("InternalServerError", 500, 3, 0)),
    # A stream is not retried once it began: two events, then the cut.
    Scenario(
        "cut-mid-stream",
        b"drop-mid-stream=3",
        once=False,
        stream=True,
        direct=Outcome("APIConnectionError", None, 1, 2),
    ),
    Scenario(
        "slow-headers",
        b"slow-headers=1",
        once=False,
        direct=Outcome("ok", None, 1, 0),
        slower_than=1.0,
    ),
    Scenario(
        "slow-headers-past-client-timeout",
        b"slow-headers=2",
        once=False,
        timeout=0.6,
        direct=Outcome("APITimeoutError", None, 3, 0),
    ),
]
CONFIGS = [
    ("one-provider", "h1"),
    ("one-provider", "h2c"),
    ("failover", "h1"),
    ("failover", "h2c"),
    ("auth-inject", "h1"),
    ("scrub", "h1"),
    ("tls", "h1"),
]


def call_sdk(
    url: str,
    scenario: Scenario,
    *,
    h2: bool,
    api_key: str,
    verify: ssl.SSLContext | bool,
    text: str,
) -> Outcome:
    attempts = 0

    def count(_request: Any) -> None:
        nonlocal attempts
        attempts += 1

    http = anthropic.DefaultHttpxClient(
        http1=not h2, http2=h2, verify=verify, event_hooks={"request": [count]}
    )
    options: dict[str, Any] = {} if scenario.timeout is None else {"timeout": scenario.timeout}
    client = anthropic.Anthropic(base_url=url, api_key=api_key, http_client=http, **options)
    events = 0
    try:
        messages: Any = [{"role": "user", "content": text}]
        if scenario.stream:
            stream = client.messages.create(
                model="claude-sonnet-4-6", max_tokens=20, messages=messages, stream=True
            )
            for _ in stream:
                events += 1
        else:
            client.messages.create(model="claude-sonnet-4-6", max_tokens=20, messages=messages)
        return Outcome("ok", None, attempts, events)
    except Exception as exc:  # the outcome is what we compare, whatever it is
        return Outcome(type(exc).__name__, getattr(exc, "status_code", None), attempts, events)
    finally:
        client.close()


def fault(fake: Running, scenario: Scenario) -> None:
    assert fake.fake is not None
    if scenario.once:
        fake.fake.script.append(scenario.fault)
    else:
        fake.fake.default_faults = scenario.fault


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    server.set_alpn_protocols(["h2", "http/1.1"])
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
@pytest.mark.parametrize(("config", "inbound"), CONFIGS, ids=[f"{c}-{i}" for c, i in CONFIGS])
async def test_the_sdk_sees_what_it_would_see_direct(
    nursery: trio.Nursery, config: str, inbound: str, scenario: Scenario
) -> None:
    server_tls, client_tls = tls_contexts() if config == "tls" else (None, None)
    direct = await start_fake(nursery, ssl_context=server_tls)  # the same upstream, unproxied
    behind = await start_fake(nursery)  # the proxy's (first) provider
    fault(direct, scenario)
    fault(behind, scenario)
    settings: dict[str, Any] = {"upstream__url": behind.url}
    api_key = "sk-ant-direct-key"
    if config == "failover":
        healthy = await start_fake(nursery)
        settings = {
            "providers": [
                {"name": "flaky", "base_url": behind.url, "priority": 1},
                {"name": "healthy", "base_url": healthy.url, "priority": 2},
            ]
        }
    elif config == "auth-inject":
        settings |= {"auth__secrets": f"team:{CALLER}", "upstream__api_key": "sk-provider"}
        api_key = CALLER
    elif config == "scrub":
        settings |= {"scrub__mode": "pseudonymize", "scrub__hmac_key": HMAC}
    proxy = Server(make_config(**settings), ssl_context=server_tls)
    proxy_port = await nursery.start(proxy.serve)
    scheme = "https" if config == "tls" else "http"
    verify: ssl.SSLContext | bool = client_tls if client_tls is not None else True
    h2 = inbound == "h2c"
    text = SECRET_TEXT if config == "scrub" else "hi"
    results: dict[str, Outcome] = {}
    took: dict[str, float] = {}

    async def run(name: str, url: str, key: str) -> None:
        t0 = trio.current_time()
        results[name] = await trio.to_thread.run_sync(
            lambda: call_sdk(url, scenario, h2=h2, api_key=key, verify=verify, text=text)
        )
        took[name] = trio.current_time() - t0

    with trio.fail_after(30):
        async with trio.open_nursery() as both:  # side by side: same timing
            both.start_soon(run, "direct", f"{scheme}://127.0.0.1:{direct.port}", "sk-ant-x")
            both.start_soon(run, "proxy", f"{scheme}://127.0.0.1:{proxy_port}", api_key)
    assert direct.fake is not None and behind.fake is not None
    assert results["direct"] == scenario.direct, results  # the fault did happen
    assert direct.fake.requests == scenario.direct.attempts
    assert took["direct"] >= scenario.slower_than, took
    if config == "failover" and scenario.status_fault:
        # Better than direct, on purpose: the healthy provider answers at once.
        assert results["proxy"] == Outcome("ok", None, 1, 0), results
        assert results["direct"] != results["proxy"], results
        return
    assert results["proxy"] == results["direct"], results
    if config != "failover":  # nothing added, nothing answered for the upstream
        assert behind.fake.requests == direct.fake.requests, (
            behind.fake.requests,
            direct.fake.requests,
        )
