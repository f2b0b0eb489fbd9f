"""The diagnostic line of a failed forward: one per failure (the proxy's
or the upstream's side, never the client's), with what was asked and never
a secret; and the body traits it reports, at any chunking."""

from __future__ import annotations

import logging
import socket

import orjson
import pytest
import trio
import trio.testing

from tests.helpers import h1_request, start_fake, start_proxy
from trioproxy.rules.traits import BodyTraits

ALICE = "alice-secret-0123456789"
BODY = (
    b'{"model":"claude-opus-4-1","max_tokens":64,"stream":true,'
    b'"thinking":{"type":"enabled","budget_tokens":1024},'
    b'"messages":[{"role":"user","content":"say \\"stream\\":true please"}]}'
)
HEADERS = [
    ("x-api-key", ALICE),
    ("anthropic-beta", "interleaved-thinking-2025-05-14,context-1m-2025-08-07"),
    ("content-type", "application/json"),
]


def refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def diag_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [orjson.loads(r.getMessage()) for r in caplog.records if r.name == "trioproxy.diag"]


async def wait_lines(caplog: pytest.LogCaptureFixture, n: int) -> list[dict[str, object]]:
    """The handler logs after the client got its last byte: once every task
    is blocked, it has."""
    await trio.testing.wait_all_tasks_blocked()
    lines = diag_lines(caplog)
    assert len(lines) == n
    return lines


async def test_a_failed_forward_logs_one_diagnostic_line(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    fake = await start_fake(nursery)
    proxy = await start_proxy(
        nursery, fake.url, auth__secrets=f"alice:{ALICE}", upstream__api_key="sk-provider-xyz"
    )
    headers = [*HEADERS, ("x-fake-fault", "500")]  # every try: the last answer goes back
    r = await h1_request(proxy.port, "POST", "/v1/messages?beta=true&key=leaky", headers, BODY)
    assert r.status == 500
    (line,) = await wait_lines(caplog, 1)
    assert line["event"] == "forward_failed"
    assert line["request_id"].startswith("req_trioproxy_")  # type: ignore[union-attr]
    assert line["model"] == "claude-opus-4-1" and line["stream"] is True
    assert line["has_thinking"] is True and line["body_bytes"] == len(BODY)
    assert line["anthropic_beta"] == "interleaved-thinking-2025-05-14,context-1m-2025-08-07"
    assert line["query"] == "beta=true&key=<redacted>"
    assert line["status"] == 500 and line["providers_tried"] == "default"
    assert isinstance(line["elapsed_s"], float)
    # The access line says what the client asked for: a stream, though the
    # answer was a JSON error.
    for _ in range(100):  # the journal writes its batches every 0.2 s
        access = [
            orjson.loads(r.getMessage()) for r in caplog.records if r.name == "trioproxy.access"
        ]
        if access:
            break
        await trio.sleep(0.05)
    assert [(a["status"], a["stream"]) for a in access] == [(500, True)]
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    for secret in (ALICE, "sk-provider-xyz", "leaky"):
        assert secret not in logged


async def test_a_connect_failure_before_the_body_was_read(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    url = refused_url()
    proxy = await start_proxy(nursery, url, routing__retries=0)
    r = await h1_request(proxy.port, "POST", "/v1/messages", HEADERS[1:], BODY)
    assert r.status == 502
    (line,) = await wait_lines(caplog, 1)
    assert line["request_id"] == (r.header(b"request-id") or b"").decode()
    assert line["stream"] is None and line["has_thinking"] is None  # not read: not known
    # The log names the address; the client's error text does not.
    assert "cannot be reached" in str(line["error"]) and url in str(line["error"])
    message = orjson.loads(r.body)["error"]["message"]
    assert "cannot be reached" in message and url not in message and "127.0.0.1" not in message


async def test_mid_stream_failure_logs_it_and_client_errors_do_not(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    fake = await start_fake(nursery)
    proxy = await start_proxy(nursery, fake.url)
    plain = (
        b'{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}'
    )
    r = await h1_request(proxy.port, "POST", "/v1/messages", [("x-fake-fault", "400")], plain)
    assert r.status == 400
    r = await h1_request(proxy.port, "POST", "/v1/messages", [("x-fake-fault", "413")], plain)
    assert r.status == 413
    await trio.testing.wait_all_tasks_blocked()
    assert diag_lines(caplog) == []  # the client's own mistakes: the access line is enough
    stream = plain.replace(b'"max_tokens"', b'"stream":true,"max_tokens"')
    fault = [("x-fake-fault", "drop-mid-stream=3")]
    r = await h1_request(proxy.port, "POST", "/v1/messages", fault, stream)
    assert r.status == 200
    (line,) = await wait_lines(caplog, 1)
    assert line["stream"] is True and line["has_thinking"] is False
    assert str(line["error"]).startswith("upstream failed mid-response")


def test_body_traits_at_every_split() -> None:
    for body, stream, thinking in (
        (BODY, True, True),
        (b'{"stream" : true, "messages":[]}', True, False),
        (
            b'{"stream":false,"messages":[{"content":[{"type": "thinking","thinking":"x"}]}]}',
            False,
            True,
        ),
        (b'{"messages":[{"content":"\\"stream\\":true and \\"thinking\\":{"}]}', False, False),
        # top-level keys either side of a messages array far longer than the windows
        (
            b'{"thinking":{"type":"enabled"},"messages":["' + b"x" * 100_000 + b'"],"stream":true}',
            True,
            True,
        ),
    ):
        for i in range(0, len(body) + 1, max(1, len(body) // 300)):
            t = BodyTraits()
            t.feed(body[:i])
            t.feed(body[i:])
            assert (t.stream, t.thinking) == (stream, thinking), (body, i)
