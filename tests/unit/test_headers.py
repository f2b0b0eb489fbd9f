from hypothesis import example, given
from hypothesis import strategies as st

from trioproxy.config.providers import parse_origin
from trioproxy.proto.events import RequestHead
from trioproxy.proto.headers import request_headers_for_upstream, response_headers_for_client
from trioproxy.rules.upstream_head import upstream_head

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


NAMES = [
    b"connection",
    b"keep-alive",
    b"te",
    b"transfer-encoding",
    b"upgrade",
    b"proxy-x",
    b"host",
    b"expect",
    b"x-a",
    b"x-b",
    b":path",
    b"x-trioproxy-key",
    b"content-type",
]
VALUES = [
    b"keep-alive",
    b"Keep-Alive",
    b"close",
    b"x-a",
    b"keep-alive, x-b",
    b" TE ,x-a",
    b"trailers",
    b"v",
]


def _reference(headers: list[tuple[bytes, bytes]], *, h2: bool, request: bool) -> list:
    """The rule as RFC 9110 7.6.1 states it, one header at a time."""
    named = {t.strip().lower() for n, v in headers if n == b"connection" for t in v.split(b",")} - {
        b"",
        b"keep-alive",
        b"close",
    }
    hop = {b"connection", b"keep-alive", b"te", b"transfer-encoding", b"upgrade", b"http2-settings"}
    owned = {b"host", b"expect", b"x-trioproxy-provider", b"x-trioproxy-key"} if request else set()
    out = []
    for n, v in headers:
        if n.startswith(b":") or n in owned:
            continue
        if n in hop or n in named or n.startswith(b"proxy-"):
            if request and h2 and n == b"te" and v.strip().lower() == b"trailers":
                out.append((n, b"trailers"))
            continue
        out.append((n, v))
    return out


@given(
    st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES)), max_size=12),
    st.booleans(),
)
@example([(b"connection", b" TE ,x-a"), (b"te", b"trailers"), (b"x-a", b"v")], True)
@example([(b"connection", b"keep-alive"), (b"connection", b"x-b"), (b"x-b", b"v")], False)
def test_filtering_matches_the_rule_for_any_header_list(
    headers: list[tuple[bytes, bytes]], h2: bool
) -> None:
    assert request_headers_for_upstream(headers, upstream_is_h2=h2) == _reference(
        headers, h2=h2, request=True
    )
    assert response_headers_for_client(headers) == _reference(headers, h2=False, request=False)
