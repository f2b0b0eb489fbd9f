"""SigV4: the proxy's signature (botocore's signer over the final head)
passes the Bedrock fake's check (botocore's recomputation, as AWS does),
and every tampering or wrong secret fails it."""

from __future__ import annotations

import time

import pytest
from botocore.credentials import ReadOnlyCredentials

from trioproxy.fake.sigv4 import issued, verify
from trioproxy.proto.events import RequestHead
from trioproxy.upstream.aws import sign

BODY = b'{"anthropic_version":"bedrock-2023-05-31","messages":[]}'
HEAD = RequestHead(
    method=b"POST",
    target=b"/model/us.anthropic.claude-opus-5-5-v1%3A0/invoke-with-response-stream",
    headers=[
        (b"host", b"127.0.0.1:9999"),
        (b"content-type", b"application/json"),
        (b"accept", b"application/vnd.amazon.eventstream"),
        (b"content-length", str(len(BODY)).encode()),
        (b"x-stainless-lang", b"js"),
    ],
    authority=b"127.0.0.1:9999",
)


def _creds(key: str, secret: str | None = None) -> ReadOnlyCredentials:
    real_secret, token = issued(key)
    return ReadOnlyCredentials(key, secret or real_secret, token)


def _checked(head: RequestHead, body: bytes = BODY, region: str = "us-east-1") -> str | None:
    headers: dict[str, str] = {}
    for n, v in head.headers:
        headers.setdefault(n.decode(), v.decode())
    refusal = verify(
        head.method.decode(), head.target.decode(), headers, body, region=region, service="bedrock"
    )
    return None if refusal is None else refusal.errortype


@pytest.mark.parametrize("key", ["AKIAFAKE0000000001", "ASIAFAKE0000000002"])
def test_a_signed_request_passes(key: str) -> None:
    signed = _checked(sign(HEAD, BODY, _creds(key), region="us-east-1", service="bedrock"))
    assert signed is None
    names = [
        n for n, _ in sign(HEAD, BODY, _creds(key), region="us-east-1", service="bedrock").headers
    ]
    assert (b"x-amz-security-token" in names) == key.startswith("ASIA")


def test_tampering_or_a_wrong_secret_fails() -> None:
    good = sign(HEAD, BODY, _creds("AKIAFAKE0000000001"), region="us-east-1", service="bedrock")
    assert _checked(good, BODY + b" ") == "InvalidSignatureException"  # the body
    moved = RequestHead(
        good.method,
        good.target.replace(b"invoke-with", b"invokx-with"),
        good.headers,
        authority=good.authority,
    )
    assert _checked(moved) == "InvalidSignatureException"  # the path
    typed = [(n, b"text/plain" if n == b"content-type" else v) for n, v in good.headers]
    assert (
        _checked(RequestHead(good.method, good.target, typed, authority=good.authority))
        == "InvalidSignatureException"
    )
    assert _checked(good, region="eu-west-1") == "InvalidSignatureException"  # the scope
    wrong = sign(
        HEAD, BODY, _creds("AKIAFAKE0000000001", "x" * 40), region="us-east-1", service="bedrock"
    )
    assert _checked(wrong) == "InvalidSignatureException"
    stranger = sign(HEAD, BODY, _creds("AKIAREAL0000000001"), region="us-east-1", service="bedrock")
    assert _checked(stranger) == "UnrecognizedClientException"
    unsigned = RequestHead(HEAD.method, HEAD.target, HEAD.headers, authority=HEAD.authority)
    assert _checked(unsigned) == "MissingAuthenticationTokenException"


def test_an_old_signature_is_refused() -> None:
    good = sign(HEAD, BODY, _creds("AKIAFAKE0000000001"), region="us-east-1", service="bedrock")
    headers = {n.decode(): v.decode() for n, v in good.headers}
    later = time.time() + 600
    refusal = verify(
        "POST",
        good.target.decode(),
        headers,
        BODY,
        region="us-east-1",
        service="bedrock",
        now=later,
    )
    assert refusal is not None and "expired" in refusal.message
