"""Body edits for providers: model mapping, dropped fields and thinking
blocks, with every other byte as the client sent it."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trioproxy.rules.jsonedit import apply, array_items, object_members, remove_elements
from trioproxy.rules.transform import drop_betas, parse_body, rewrite

# Hand-written, the way no serializer would write it: odd spacing, a 64-bit+
# integer, a float with a trailing zero, unicode escapes, key order, a
# duplicate-free "model" that is not the first key, cache_control markers.
BODY = (
    b'{ "max_tokens" :1024,\n  "model":"claude-sonnet-4-5" , "big": 123456789012345678901234567890,'
    b' "ratio": 1.50, "text": "caf\\u00e9 \\"q\\" \\n", "system": [{"type":"text","text":"S",'
    b'"cache_control":{"type":"ephemeral"}}], "context_management": {"edits": [1, 2]},'
    b' "messages": [ {"role":"user","content":"hi"},'
    b' {"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"sig=="},'
    b'{"type":"text","text":"ok"}, {"type":"redacted_thinking","data":"xx"}]},'
    b' {"role":"user","content":[{"type":"text","text":"more"}]} ],'
    b' "metadata": {"user_id": "user_ab_account_cd_session_0f1e2d3c-aaaa-bbbb-cccc-123456789abc"} }'
)


def parsed():
    p = parse_body(BODY)
    assert p is not None
    return p


def test_model_rewrite_changes_only_the_model_value() -> None:
    out = rewrite(parsed(), model="MiniMax-M2")
    old = b'"model":"claude-sonnet-4-5"'
    assert out == BODY.replace(old, b'"model":"MiniMax-M2"')
    # orjson reads the 30-digit integer as a float; the bytes sent keep it exact.
    assert orjson.loads(out)["big"] == pytest.approx(1.2345678901234568e29)
    assert b"123456789012345678901234567890" in out and b"1.50" in out and b"\\u00e9" in out


def test_nothing_to_change_is_the_same_object() -> None:
    p = parsed()
    assert rewrite(p, model="claude-sonnet-4-5") is p.raw
    assert rewrite(p, drop_fields=frozenset({"absent"})) is p.raw
    assert rewrite(parse_body(b'{"model":"m","messages":[]}'), strip_thinking=True) == (  # type: ignore[arg-type]
        b'{"model":"m","messages":[]}'
    )


def test_drop_fields_removes_the_member_and_its_separator() -> None:
    out = rewrite(parsed(), drop_fields=frozenset({"context_management", "max_tokens"}))
    doc = orjson.loads(out.replace(b"123456789012345678901234567890", b"1"))
    assert "context_management" not in doc and "max_tokens" not in doc
    assert b'"model":"claude-sonnet-4-5" , "big": 123456789012345678901234567890' in out
    assert out.startswith(b'{ "model"')


def test_thinking_stripped_only_from_assistant_turns_other_bytes_kept() -> None:
    p = parsed()
    assert p.has_thinking
    out = rewrite(p, strip_thinking=True)
    assert b"thinking" not in out and b"sig==" not in out
    assert b'{"role":"assistant","content":[{"type":"text","text":"ok"}]}' in out
    # everything before the messages array is byte-identical
    cut = BODY.index(b'"messages"')
    assert out[:cut] == BODY[:cut]
    assert out.endswith(BODY[BODY.index(b' {"role":"user","content":[{"type":"text"') :])


def test_a_turn_of_thinking_only_is_dropped_not_left_empty() -> None:
    """Empty content is a 400 from the API; consecutive user turns are not."""
    body = (
        b'{"model":"m","messages":[{"role":"user","content":"a"},'
        b'{"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"s"},'
        b' {"type":"redacted_thinking","data":"x"}]},'
        b'{"role":"user","content":"b"},'
        b'{"role":"assistant","content":[{"type":"thinking","thinking":"u","signature":"s"},'
        b'{"type":"text","text":"kept"}]},{"role":"user","content":"c"},'
        b'{"role":"assistant","content":[{"type":"thinking","thinking":"v","signature":"s"}]}]}'
    )
    p = parse_body(body)
    assert p is not None
    out = rewrite(p, strip_thinking=True)
    assert out == (
        b'{"model":"m","messages":[{"role":"user","content":"a"},'
        b'{"role":"user","content":"b"},'
        b'{"role":"assistant","content":[{"type":"text","text":"kept"}]},'
        b'{"role":"user","content":"c"}]}'
    )


def test_session_id_from_metadata_user_id_both_formats() -> None:
    assert parsed().session_id == "0f1e2d3c-aaaa-bbbb-cccc-123456789abc"
    inner = orjson.dumps({"device_id": "d", "session_id": "s-123"}).decode()
    p = parse_body(orjson.dumps({"model": "m", "metadata": {"user_id": inner}}))
    assert p is not None and p.session_id == "s-123"
    p = parse_body(b'{"model":"m","metadata":{"user_id":"plain"}}')
    assert p is not None and p.session_id is None


def test_not_an_object_is_not_parsed() -> None:
    assert parse_body(b"[1,2]") is None
    assert parse_body(b"{broken") is None


def test_duplicate_model_key_edits_the_last_one() -> None:
    p = parse_body(b'{"model":"a","x":1,"model":"b"}')
    assert p is not None and p.model == "b"
    assert rewrite(p, model="c") == b'{"model":"a","x":1,"model":"c"}'


def test_drop_betas() -> None:
    assert (
        drop_betas(b"a-1, context-management-2025, b-2", frozenset({b"context-management-2025"}))
        == b"a-1,b-2"
    )
    assert drop_betas(b"x", frozenset({b"x"})) == b""


@pytest.mark.parametrize(
    ("drop", "expected"),
    [
        ({0}, b"[2 , 3,4]"),
        ({1}, b"[1 , 3,4]"),
        ({3}, b"[1 ,2 , 3]"),
        ({0, 1, 2, 3}, b"[]"),
        ({1, 2}, b"[1,4]"),
        ({0, 3}, b"[2 , 3]"),
    ],
)
def test_remove_elements_keeps_valid_json(drop: set[int], expected: bytes) -> None:
    buf = b"[1 ,2 , 3,4]"
    assert apply(buf, remove_elements(array_items(buf, 0), drop)) == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=6), json_values, min_size=1, max_size=6), st.data())
def test_scanner_finds_every_member_and_deletions_parse(doc: dict, data: st.DataObject) -> None:
    raw = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
    members = object_members(raw)
    assert [m.key for m in members] == list(doc)
    for m in members:
        assert orjson.loads(raw[m.value_start : m.end]) == doc[m.key]
    drop = set(data.draw(st.sets(st.integers(0, len(members) - 1))))
    out = apply(raw, remove_elements([(m.start, m.end) for m in members], drop))
    keys = list(doc)
    assert orjson.loads(out) == {k: doc[k] for i, k in enumerate(keys) if i not in drop}
