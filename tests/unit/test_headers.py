from trioproxy.config.providers import parse_origin
from trioproxy.pipeline.forward import upstream_head
from trioproxy.proto.events import RequestHead
from trioproxy.proto.headers import request_headers_for_upstream, response_headers_for_client

CLIENT = [
    (b"host", b"127.0.0.1:8787"),
    (b"x-api-key", b"k"),
    (b"connection", b"keep-alive, x-hop-me"),
    (b"anthropic-beta", b"oauth-2025-04-20,interleaved-thinking-2025-05-14,some-future-beta"),
    (b"x-hop-me", b"1"),
    (b"keep-alive", b"timeout=5"),
    (b"proxy-authorization", b"Basic abc"),
    (b"te", b"trailers"),
    (b"transfer-encoding", b"chunked"),
    (b"upgrade", b"h2c"),
    (b"x-claude-code-session-id", b"sess-1"),
    (b"x-stainless-retry-count", b"0"),
    (b"expect", b"100-continue"),
    (b"x-never-heard-of-it", b"v"),
]
END_TO_END = [
    (b"x-api-key", b"k"),
    (b"anthropic-beta", b"oauth-2025-04-20,interleaved-thinking-2025-05-14,some-future-beta"),
    (b"x-claude-code-session-id", b"sess-1"),
    (b"x-stainless-retry-count", b"0"),
    (b"x-never-heard-of-it", b"v"),
]


def test_request_headers_keep_end_to_end_in_order() -> None:
    assert request_headers_for_upstream(CLIENT, upstream_is_h2=False) == END_TO_END


def test_te_trailers_survives_only_to_h2() -> None:
    out = request_headers_for_upstream(CLIENT, upstream_is_h2=True)
    assert (b"te", b"trailers") in out
    assert [h for h in out if h[0] != b"te"] == END_TO_END
    gzip_te = request_headers_for_upstream([(b"te", b"gzip")], upstream_is_h2=True)
    assert gzip_te == []


def test_response_headers_pass_everything_end_to_end() -> None:
    upstream = [
        (b"content-type", b"text/event-stream"),
        (b"request-id", b"req_1"),
        (b"connection", b"close, x-private"),
        (b"x-private", b"1"),
        (b"retry-after", b"3"),
        (b"anthropic-ratelimit-tokens-remaining", b"100"),
        (b"transfer-encoding", b"chunked"),
        (b"x-should-retry", b"true"),
        (b"content-encoding", b"gzip"),
    ]
    assert response_headers_for_client(upstream) == [
        (b"content-type", b"text/event-stream"),
        (b"request-id", b"req_1"),
        (b"retry-after", b"3"),
        (b"anthropic-ratelimit-tokens-remaining", b"100"),
        (b"x-should-retry", b"true"),
        (b"content-encoding", b"gzip"),
    ]


def test_upstream_head_sets_host_and_keeps_target_exact() -> None:
    head = RequestHead(b"POST", b"/v1/messages?beta=true", CLIENT, authority=b"127.0.0.1:8787")
    origin = parse_origin("https://api.anthropic.com", "t")
    up = upstream_head(head, origin, upstream_is_h2=False)
    assert up.target == b"/v1/messages?beta=true"
    assert up.headers[0] == (b"host", b"api.anthropic.com")
    assert up.headers[1:] == END_TO_END
    h2 = upstream_head(head, origin, upstream_is_h2=True)
    assert h2.authority == b"api.anthropic.com" and not any(k == b"host" for k, _ in h2.headers)


def test_base_path_prefixes_target() -> None:
    origin = parse_origin("https://api.minimax.io/anthropic/", "t")
    head = RequestHead(b"POST", b"/v1/messages?x=1", [], authority=b"h")
    assert upstream_head(head, origin, upstream_is_h2=False).target == b"/anthropic/v1/messages?x=1"
    assert parse_origin("http://127.0.0.1:9000", "t").authority == b"127.0.0.1:9000"
