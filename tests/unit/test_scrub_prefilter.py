"""The scrubber's prefilter: the fast way (cores over raw bytes, then only
the strings they hit) must give exactly what checking every string gives,
however the client escaped its JSON; hyperscan and ``re`` must agree."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_scrub import GH, KEY, POSITIVE, body
from trioproxy.scrub.detectors import DETECTORS, _matches, find
from trioproxy.scrub.engine import Scrubber, ScrubResult
from trioproxy.scrub.prefilter import HyperscanScanner, ReScanner, Scanner

LIMIT = 10 * 1024 * 1024
SCANNERS: list[Scanner] = [ReScanner(), HyperscanScanner()]


def every_string(raw: bytes) -> ScrubResult:
    """The reference: every scrubbable string decoded and checked."""
    return Scrubber(KEY, max_body_bytes=LIMIT, scanner=SCANNERS[0])._scrub_every_string(raw)


def same(a: ScrubResult, b: ScrubResult) -> None:
    assert a.body == b.body
    assert a.mapping == b.mapping
    assert a.hits == b.hits


@pytest.mark.parametrize("scanner", SCANNERS, ids=lambda s: s.name)
@pytest.mark.parametrize("detector", [d.name for d in DETECTORS])
def test_every_positive_vector_is_seen_by_its_core(scanner: Scanner, detector: str) -> None:
    for value in POSITIVE[detector]:
        for encode in (orjson.dumps, lambda d: json.dumps(d, ensure_ascii=True).encode()):
            raw = encode(body(messages=[{"role": "user", "content": f"x\n{value}\ty"}]))
            assert detector in {h.detector.name for h in scanner.scan(raw).hits}, value
            fast = Scrubber(KEY, max_body_bytes=LIMIT, scanner=scanner).scrub(raw)
            assert fast.hits[detector] == 1
            same(fast, every_string(raw))


def test_a_body_without_core_hits_is_not_even_parsed() -> None:
    raw = b'{"messages": [{"role": "user", "content": "hello @decorator https://x.org/a"}]'
    for scanner in SCANNERS:  # invalid JSON on purpose: a parse would say not_json
        r = Scrubber(KEY, max_body_bytes=LIMIT, scanner=scanner).scrub(raw)
        assert r.body is raw and r.skipped == "" and r.doc is None


def test_escapes_the_cores_cannot_see_through_go_the_slow_way() -> None:
    # PHP writes "/" as "\/"; "\u0040" is "@": the cores would miss both.
    raw = (
        b'{"messages": [{"role": "user", "content": '
        b'"db postgres:\\/\\/app:s3cret@db.internal\\/app, mail bob\\u0040example.com"}]}'
    )
    for scanner in SCANNERS:
        scan = scanner.scan(raw)
        assert scan.unusual
        r = Scrubber(KEY, max_body_bytes=LIMIT, scanner=scanner).scrub(raw)
        text = orjson.loads(r.body)["messages"][0]["content"]
        assert text.startswith("db postgres://app:<DB_CONNECTION_1>@db.internal/app, mail <EMAIL")
        assert r.hits == {"db_connection_string": 1, "email": 1}


def test_a_keyword_hit_running_into_the_next_strings() -> None:
    # "api_token" ends one string, the hex value starts the next: the core
    # hit spans both; neither alone is a Jenkins token, and a real one in
    # the second string is still found.
    hexes = "0123456789abcdef" * 2
    doc = body(
        messages=[
            {"role": "user", "content": "see api_token"},
            {"role": "user", "content": f"{hexes} and jenkins token {hexes[::-1]}"},
        ]
    )
    raw = orjson.dumps(doc)
    for scanner in SCANNERS:
        r = Scrubber(KEY, max_body_bytes=LIMIT, scanner=scanner).scrub(raw)
        texts = [m["content"] for m in orjson.loads(r.body)["messages"]]
        assert texts == ["see api_token", f"{hexes} and jenkins token <JENKINS_TOKEN_1>"]


def test_the_same_text_as_a_key_and_as_a_value() -> None:
    doc = body(
        messages=[
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "t", "name": "x", "input": {GH: GH}},
                ],
            }
        ]
    )
    raw = orjson.dumps(doc)
    for scanner in SCANNERS:
        r = Scrubber(KEY, max_body_bytes=LIMIT, scanner=scanner).scrub(raw)
        assert orjson.loads(r.body)["messages"][0]["content"][0]["input"] == {
            GH: "<GITHUB_TOKEN_1>"
        }


SAMPLES = [v for values in POSITIVE.values() for v in values] + [
    "vault token s." + "Ab1" * 8,
    "AWS_SECRET_ACCESS_KEY:\t'" + "Ab/+" * 10 + "'",
]
filler = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
texts = st.lists(st.tuples(filler, st.sampled_from(SAMPLES)), min_size=0, max_size=4).map(
    lambda parts: "".join(f + s for f, s in parts)
)
places = st.sampled_from(["user", "text", "tool_input", "tool_result", "thinking", "system"])


def place(where: str, text: str) -> tuple[str, object]:
    if where == "system":
        return "system", text
    if where == "user":
        return "messages", {"role": "user", "content": text}
    block = {
        "text": {"type": "text", "text": text},
        "tool_input": {"type": "tool_use", "id": "t", "name": "n", "input": {"a": [text]}},
        "tool_result": {"type": "tool_result", "tool_use_id": "t", "content": text},
        "thinking": {"type": "thinking", "thinking": text, "signature": "sig"},
    }[where]
    return "messages", {"role": "assistant", "content": [block]}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(places, texts), min_size=1, max_size=5),
    st.sampled_from(["orjson", "ascii", "spaced"]),
)
def test_fast_way_equals_every_string_way(parts: list[tuple[str, str]], encoding: str) -> None:
    doc: dict[str, object] = body(messages=[])
    for where, text in parts:
        key, value = place(where, text)
        if key == "system":
            doc["system"] = value
        else:
            doc["messages"].append(value)  # type: ignore[attr-defined]
    if encoding == "orjson":
        raw = orjson.dumps(doc)
    elif encoding == "ascii":
        raw = json.dumps(doc, ensure_ascii=True).encode()
    else:
        raw = json.dumps(doc, ensure_ascii=False, indent=1).encode()
    reference = every_string(raw)
    for scanner in SCANNERS:
        same(Scrubber(KEY, max_body_bytes=LIMIT, scanner=scanner).scrub(raw), reference)


def test_caseless_cores_are_written_in_lower_case() -> None:
    # The re scanner runs them over a lower-cased copy of the body.
    assert all(d.core == d.core.lower() for d in DETECTORS if d.caseless)


def naive_find(text: str) -> list[tuple[int, int, str]]:
    """The overlap rule written the obvious quadratic way, over the same
    candidate matches."""
    found = []
    for rank, d in enumerate(DETECTORS):
        if d.locate is not None:
            found.extend((rank, s, e, d.name) for s, e in d.locate(text))
            continue
        for m in _matches(d, text):
            g = d.group if d.group and m.group(d.group) is not None else 0
            if m.end(g) > m.start(g):
                found.append((rank, m.start(g), m.end(g), d.name))
    found.sort()
    taken: list[tuple[int, int, str]] = []
    for _, start, end, name in found:
        if all(end <= s or start >= e for s, e, _ in taken):
            taken.append((start, end, name))
    return sorted(taken)


overlapping = st.lists(
    st.sampled_from(
        [*SAMPLES, "Bearer ", "Authorization: ", "postgres://u:", "@x.org", " ", "\n", "jenkins "]
    ),
    max_size=12,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(overlapping)
def test_find_takes_the_same_spans_as_the_obvious_rule(text: str) -> None:
    assert [(h.start, h.end, h.detector.name) for h in find(text)] == naive_find(text)
