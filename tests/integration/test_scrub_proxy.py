"""The scrubber through the proxy: what the fake upstream received, and what
the client got back (JSON and SSE, placeholders restored)."""

from __future__ import annotations

import orjson
import pytest
import trio

from tests.helpers import h1_request, make_config, start_fake, start_proxy
from trioproxy.config import ConfigError

KEY = "ab" * 32
GH = "ghp_" + "a1B2c3D4e5" * 3 + "f6G7h8"
PEM = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIByz\nAoGCCqGSM49\n-----END EC PRIVATE KEY-----"


def request(text: str, **extra: object) -> bytes:
    return orjson.dumps(
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 50,
            "messages": [{"role": "user", "content": text}],
            **extra,
        }
    )


async def test_upstream_sees_placeholders_client_gets_the_values(nursery: trio.Nursery) -> None:
    fake = await start_fake(nursery)
    assert fake.fake is not None
    proxy = await start_proxy(nursery, fake.url, scrub__mode="pseudonymize", scrub__hmac_key=KEY)
    said = f"repeat after me: token {GH}, key {PEM}, mail bob@example.com"
    r = await h1_request(
        proxy.port, "POST", "/v1/messages", [("accept-encoding", "gzip")], request(said)
    )
    assert r.status == 200
    sent = orjson.loads(fake.fake.last_body)["messages"][0]["content"]
    assert GH not in fake.fake.last_body.decode() and "MHcCAQ" not in fake.fake.last_body.decode()
    assert sent.startswith(
        "repeat after me: token <GITHUB_TOKEN_1>, key <PRIVATE_KEY_1>, mail <EMAIL_HMAC:"
    )
    assert (b"accept-encoding", b"identity") in fake.fake.seen[-1].headers  # so it can be read
    assert orjson.loads(r.body)["content"][0]["text"] == said.removeprefix("repeat after me: ")
    assert int(r.header(b"content-length") or 0) == len(r.body)
    # the stream: placeholders split across deltas come back whole
    r = await h1_request(proxy.port, "POST", "/v1/messages", [], request(said, stream=True))
    text = ""
    for block in r.body.split(b"\n\n"):
        for line in block.split(b"\n"):
            if line.startswith(b"data: "):
                doc = orjson.loads(line[6:])
                if (
                    doc.get("type") == "content_block_delta"
                    and doc["delta"]["type"] == "text_delta"
                ):
                    text += doc["delta"]["text"]
    assert text == said.removeprefix("repeat after me: ")
    assert b"event: message_stop" in r.body


async def test_restore_off_leaves_placeholders_and_nothing_to_scrub_is_byte_identical(
    nursery: trio.Nursery,
) -> None:
    fake = await start_fake(nursery)
    assert fake.fake is not None
    proxy = await start_proxy(
        nursery, fake.url, scrub__mode="pseudonymize", scrub__hmac_key=KEY, scrub__restore=False
    )
    r = await h1_request(proxy.port, "POST", "/v1/messages", [], request(f"repeat after me: {GH}"))
    assert orjson.loads(r.body)["content"][0]["text"] == "<GITHUB_TOKEN_1>"
    clean = b'{"model":"m",  "max_tokens":5,"messages":[{"role":"user","content":"hi \\u00e9"}]}'
    await h1_request(proxy.port, "POST", "/v1/messages", [], clean)
    assert fake.fake.last_body == clean
    metrics = (await h1_request(proxy.port, "GET", "/metrics")).body
    assert b'trioproxy_scrub_hits_total{detector="github_token"} 1' in metrics


async def test_a_json_answer_too_large_to_hold_is_restored_as_it_streams(
    nursery: trio.Nursery,
) -> None:
    fake = await start_fake(nursery)
    assert fake.fake is not None
    proxy = await start_proxy(nursery, fake.url, scrub__mode="pseudonymize", scrub__hmac_key=KEY)
    # The fake echoes it: an answer of 1.3 MB (over the 1 MiB held whole),
    # placeholders all through it, so some fall across chunk boundaries.
    said = " ".join(f"{GH} line {i} {'y' * 40}" for i in range(18_000))
    r = await h1_request(
        proxy.port, "POST", "/v1/messages", [], request(f"repeat after me: {said}")
    )
    assert r.status == 200 and len(r.body) > 1024 * 1024
    assert r.header(b"content-length") is None  # its length changed as it went
    assert orjson.loads(r.body)["content"][0]["text"] == said
    assert GH not in fake.fake.last_body.decode()


async def test_oversize_and_non_json_pass_unchanged(nursery: trio.Nursery) -> None:
    fake = await start_fake(nursery)
    assert fake.fake is not None
    proxy = await start_proxy(
        nursery,
        fake.url,
        scrub__mode="pseudonymize",
        scrub__hmac_key=KEY,
        scrub__max_body_bytes=200,
    )
    big = request(f"{GH} " + "x" * 300)
    await h1_request(proxy.port, "POST", "/v1/messages", [], big)
    assert fake.fake.last_body == big
    raw = f"not json {GH}".encode()
    await h1_request(proxy.port, "POST", "/echo", [], raw)
    assert fake.fake.last_body == raw
    metrics = (await h1_request(proxy.port, "GET", "/metrics")).body
    assert b'trioproxy_scrub_skipped_total{reason="too_large"} 1' in metrics
    assert b'trioproxy_scrub_skipped_total{reason="not_json"} 1' in metrics


@pytest.mark.parametrize(
    ("key", "message"),
    [("", "scrub.hmac_key: required"), ("abc", "expected 64 hex"), ("zz" * 32, "expected 64 hex")],
)
def test_hmac_key_is_checked_at_start(key: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_config(scrub__mode="pseudonymize", scrub__hmac_key=key)


async def test_claude_codes_own_coauthor_line_passes_unchanged(nursery: trio.Nursery) -> None:
    """With scrubbing on, a request that holds nothing but Claude Code's own
    `Co-Authored-By: Claude <noreply@anthropic.com>` reaches the upstream
    byte for byte (its prompt-cache prefix stays the same)."""
    fake = await start_fake(nursery)
    assert fake.fake is not None
    proxy = await start_proxy(nursery, fake.url, scrub__mode="pseudonymize", scrub__hmac_key=KEY)
    sent = request("Commit with:\n\nCo-Authored-By: Claude <noreply@anthropic.com>\n")
    r = await h1_request(proxy.port, "POST", "/v1/messages", [], sent)
    assert r.status == 200 and fake.fake.last_body == sent
    other = request("mail noreply@anthropic.com and bob@example.com")
    await h1_request(proxy.port, "POST", "/v1/messages", [], other)
    text = orjson.loads(fake.fake.last_body)["messages"][0]["content"]
    assert text.startswith("mail noreply@anthropic.com and <EMAIL_HMAC:")
