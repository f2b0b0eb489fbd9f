"""The one-pass HTTP/2 request field check gives h2's own verdict.

h2.utilities.validate_headers is the reference (RFC 9113 8.2, 8.3): for
every generated header list, our check calls it malformed exactly when h2
raises. The lists are built from the pieces where the rules bite: pseudo
fields out of order, twice, unknown or missing; connection-specific names,
`te`, host against :authority, upper case and separators in names, CR, LF,
NUL and edge whitespace in values."""

from __future__ import annotations

import h2.exceptions
import h2.utilities
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trioproxy.proto.h2fields import request_fields_malformed, response_fields_malformed

FLAGS = h2.utilities.HeaderValidationFlags(
    is_client=False, is_trailer=False, is_response_header=False, is_push_promise=False
)
RESPONSE_FLAGS = h2.utilities.HeaderValidationFlags(
    is_client=True, is_trailer=False, is_response_header=True, is_push_promise=False
)
GOOD = [
    (b":method", b"POST"),
    (b":scheme", b"https"),
    (b":authority", b"api.example"),
    (b":path", b"/v1/messages?beta=true"),
    (b"content-type", b"application/json"),
    (b"x-api-key", b"sk-ant-0123"),
]

names = st.sampled_from(
    [
        b":method", b":scheme", b":authority", b":path", b":status", b":protocol", b":x",
        b":", b"", b"host", b"te", b"connection", b"keep-alive", b"upgrade",
        b"transfer-encoding", b"x-a", b"X-A", b"x a", b"x:a", b"x\x7fa", b"x\"a",
        b"content-length", b"anthropic-beta",
    ]
)  # fmt: skip
values = st.sampled_from(
    [
        b"", b"POST", b"https", b"api.example", b"other.example", b"/v1/messages", b"trailers",
        b"gzip", b" lead", b"trail\t", b"a\r\nb", b"a\x00b", b"a\nb", b"in side", b"x\x01y",
        b"caf\xc3\xa9",
    ]
)  # fmt: skip


def h2_says_malformed(
    headers: list[tuple[bytes, bytes]], flags: h2.utilities.HeaderValidationFlags = FLAGS
) -> bool:
    try:
        list(h2.utilities.validate_headers(headers, flags))
    except h2.exceptions.ProtocolError:
        return True
    return False


@settings(max_examples=3000, deadline=None)
@given(
    st.lists(st.tuples(names, values), max_size=8),
    st.permutations(GOOD).map(list),
    st.integers(0, 6),
)
def test_same_verdict_as_h2(extra: list[tuple[bytes, bytes]], base: list, cut: int) -> None:
    """Mutations of a good list (shuffled, truncated, with fields inserted)."""
    headers = base[:cut] + extra + base[cut:]
    if any(n == b":method" and v == b"CONNECT" for n, v in headers):
        return  # refused before this check
    assert request_fields_malformed(headers) == h2_says_malformed(headers), headers


RESPONSE = [(b":status", b"200"), (b"content-type", b"text/event-stream"), (b"request-id", b"r")]


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.tuples(names, values), max_size=6), st.integers(0, 3))
def test_same_verdict_as_h2_for_responses(extra: list[tuple[bytes, bytes]], cut: int) -> None:
    headers = RESPONSE[:cut] + extra + RESPONSE[cut:]
    assert response_fields_malformed(headers) == h2_says_malformed(headers, RESPONSE_FLAGS), headers


@pytest.mark.parametrize(
    ("headers", "malformed"),
    [
        (GOOD, False),
        (GOOD[1:], True),  # no :method
        ([*GOOD[:4], (b"host", b"api.example"), *GOOD[4:]], False),
        ([*GOOD[:4], (b"host", b"elsewhere"), *GOOD[4:]], True),
        ([*GOOD, (b":path", b"/again")], True),
        ([*GOOD, (b"te", b"Trailers")], False),
        ([*GOOD, (b"te", b"gzip")], True),
        ([*GOOD, (b"X-Upper", b"v")], True),
        ([*GOOD, (b"x-v", b"a\r\nx-injected: 1")], True),
        ([(n, b"") if n == b":path" else (n, v) for n, v in GOOD], True),
    ],
)
def test_transcripts(headers: list[tuple[bytes, bytes]], malformed: bool) -> None:
    assert request_fields_malformed(headers) is malformed
    assert h2_says_malformed(headers) is malformed
