"""CORS decisions as pure functions of the head."""

from __future__ import annotations

import pytest

from trioproxy.config import ConfigError, load_config
from trioproxy.proto.events import RequestHead, ResponseHead
from trioproxy.rules.cors import allowed_origin, is_preflight, preflight_answer, with_cors

APP = (b"origin", b"https://App.example")


def head(*headers: tuple[bytes, bytes], method: bytes = b"POST") -> RequestHead:
    return RequestHead(method, b"/v1/messages", list(headers))


def test_listed_origins_only() -> None:
    allow = ("https://app.example",)
    assert allowed_origin(head(APP), allow) == b"https://App.example"  # case-insensitive
    assert allowed_origin(head((b"origin", b"https://app.example/")), allow) is not None
    assert allowed_origin(head((b"origin", b"https://evil.example")), allow) is None
    assert allowed_origin(head(), allow) is None
    assert allowed_origin(head(APP), ()) is None  # nothing listed: CORS is not ours
    assert allowed_origin(head((b"origin", b"null")), ("*",)) == b"null"


def test_preflight_and_answers() -> None:
    pre = head(APP, (b"access-control-request-method", b"POST"), method=b"OPTIONS")
    assert is_preflight(pre) and not is_preflight(head(APP, method=b"OPTIONS"))
    answer = preflight_answer(pre, b"https://App.example")
    assert answer.status == 204
    assert answer.header(b"access-control-allow-methods") == b"POST"
    assert answer.header(b"access-control-allow-headers") is None  # none asked for
    upstream = ResponseHead(
        200, [(b"access-control-allow-origin", b"*"), (b"request-id", b"r1"), (b"vary", b"a")]
    )
    marked = with_cors(upstream, b"https://App.example")
    assert [v for n, v in marked.headers if n == b"access-control-allow-origin"] == [
        b"https://App.example"
    ]  # one, ours: the upstream's wildcard replaced
    assert marked.header(b"request-id") == b"r1" and marked.header(b"vary") == b"a"


def test_origins_setting() -> None:
    cfg = load_config(env={"TRIOPROXY_CORS_ALLOW_ORIGINS": "https://A.example/, http://x:8080"})
    assert cfg.cors_allow_origins == ("https://a.example", "http://x:8080")
    for bad in ("app.example", "https://app.example/path", "ftp://x"):
        with pytest.raises(ConfigError, match="TRIOPROXY_CORS_ALLOW_ORIGINS"):
            load_config(env={"TRIOPROXY_CORS_ALLOW_ORIGINS": bad})
