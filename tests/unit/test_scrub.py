"""The scrubber's sans-IO core: detectors with positive and negative vectors,
placeholders, skip rules, cache-prefix stability, restore in JSON and SSE."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trioproxy.scrub.detectors import DETECTORS, find
from trioproxy.scrub.engine import Scrubber
from trioproxy.scrub.restore import JSONRestorer, SSERestorer, restore_json

KEY = bytes.fromhex("11" * 32)
ANT = "sk-ant-api03-" + "A1b2C3d4E5" * 9 + "-xyzAA"
OAT = "sk-ant-oat01-" + "Zz09" * 20
GH = "ghp_" + "a1B2c3D4e5" * 3 + "f6G7h8"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7\nabcdef==\n-----END RSA PRIVATE KEY-----"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"

POSITIVE = {
    "anthropic_key": [ANT, OAT],
    "openai_key": ["sk-proj-" + "x" * 20 + "T3BlbkFJ" + "y" * 20, "sk-" + "a1" * 24],
    "aws_access_key": ["AKIAIOSFODNN7EXAMPLE", "ASIAY34FZKBOKMUTVV7A"],
    "github_token": [GH, "gho_" + "x" * 36, "github_pat_" + "A" * 82],
    "google_api_key": ["AIza" + "S" * 35],
    "stripe_key": ["sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", "rk_test_" + "a" * 24],
    "private_key": [PEM, PEM.replace("RSA ", "OPENSSH "), PEM.replace("RSA ", "")],
    "jwt": [JWT],
    "db_connection_string": ["postgres://app:s3cr3tpw@db.internal:5432/app"],
    "bearer_token": ["Bearer abcdefghijklmnopqrstuvwxyz012345"],
    "basic_auth": ["Basic dXNlcjpwYXNzd29yZDEyMw=="],
    "sonarqube_token": ["sqp_" + "0123456789abcdef" * 2 + "01234567"],
    "jenkins_api_token": ["jenkins api token: 0123456789abcdef0123456789abcdef"],
    "ansible_vault": ["$ANSIBLE_VAULT;1.1;AES256\n6162636465\n3031323334\n"],
    "hashicorp_vault_token": ["hvs." + "C" * 24, "VAULT_TOKEN=s." + "a" * 24],
    "slack_token": ["xoxb-1234567890-abcdefghij"],
    "gitlab_token": ["glpat-" + "x" * 20],
    "npm_token": ["npm_" + "a" * 36],
    "pypi_token": ["pypi-AgE" + "b" * 60],
    "sendgrid_key": ["SG." + "a" * 22 + "." + "b" * 43],
    "aws_secret_key": ["aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"],
    "azure_storage_key": [
        "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=" + "A" * 86 + "=="
    ],
    "email": ["alice.smith+tag@example.co.uk"],
}
NEGATIVE = {
    "anthropic_key": ["sk-ant-api03-short", "xsk-ant-api03-" + "A" * 40],
    "openai_key": ["sk-short", "task-" + "a" * 48],
    "aws_access_key": ["AKIA123", "XAKIAIOSFODNN7EXAMPLE"],
    "github_token": ["ghp_short", "ghx_" + "a" * 36],
    "google_api_key": ["AIza-too-short"],
    "stripe_key": ["sk_live_", "sk_prod_" + "a" * 24],
    "private_key": ["-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----"],
    "jwt": ["eyJhbGciOiJIUzI1NiJ9", "eyJ.eyJ.x"],
    "db_connection_string": ["postgres://db.internal:5432/app", "https://user:pw@example.com/"],
    "bearer_token": ["Bearer token", "the bearer of bad news"],
    "basic_auth": ["Basic idea", "basic dXNlcjpwYXNzd29yZDEyMw=="],
    "sonarqube_token": ["sqp_123"],
    "jenkins_api_token": ["0123456789abcdef0123456789abcdef"],
    "ansible_vault": ["ANSIBLE_VAULT is a format"],
    "hashicorp_vault_token": ["s." + "a" * 24, "hvs.short"],
    "slack_token": ["xoxq-1234567890-abc"],
    "gitlab_token": ["glpat-short"],
    "npm_token": ["npm_install"],
    "pypi_token": ["pypi-token"],
    "sendgrid_key": ["SG.short.x"],
    "aws_secret_key": ["wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"],
    "azure_storage_key": ["AccountKey=short"],
    "email": ["user@localhost", "@decorator", "a@b"],
}


def names(text: str) -> list[str]:
    return [h.detector.name for h in find(text)]


@pytest.mark.parametrize("detector", [d.name for d in DETECTORS])
def test_every_detector_has_vectors(detector: str) -> None:
    assert POSITIVE[detector] and NEGATIVE[detector]
    for value in POSITIVE[detector]:
        for text in (value, f"x {value} y", f"({value}),", f'"{value}"'):
            hits = find(text)
            assert [h.detector.name for h in hits] == [detector], (text, hits)
    for text in NEGATIVE[detector]:
        assert detector not in names(text), text


def test_the_replaced_part_keeps_context_readable() -> None:
    text = (
        "DATABASE_URL=postgres://app:s3cr3tpw@db:5432/app and Bearer abcdefghijklmnopqrstuvwxyz01"
    )
    hits = find(text)
    assert [text[h.start : h.end] for h in hits] == ["s3cr3tpw", "abcdefghijklmnopqrstuvwxyz01"]


def test_overlap_goes_to_the_earlier_detector() -> None:
    # a JWT after "Bearer ": both match; jwt comes before bearer_token
    assert names(f"Authorization: Bearer {JWT}") == ["jwt"]
    # an Anthropic key also looks like an "sk-" key: anthropic_key wins
    assert names(ANT) == ["anthropic_key"]


def body(**extra: object) -> dict[str, object]:
    return {"model": "claude-sonnet-4-5", "max_tokens": 10, **extra}


def scrub(doc: dict[str, object] | bytes):  # type: ignore[no-untyped-def]
    raw = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return Scrubber(KEY, max_body_bytes=10 * 1024 * 1024).scrub(raw)


def test_secrets_become_numbered_placeholders_same_value_same_number() -> None:
    r = scrub(body(messages=[{"role": "user", "content": f"{GH} then {ANT} then {GH} and {OAT}"}]))
    text = orjson.loads(r.body)["messages"][0]["content"]
    assert (
        text
        == "<GITHUB_TOKEN_1> then <ANTHROPIC_KEY_1> then <GITHUB_TOKEN_1> and <ANTHROPIC_KEY_2>"
    )
    assert r.mapping == {"<GITHUB_TOKEN_1>": GH, "<ANTHROPIC_KEY_1>": ANT, "<ANTHROPIC_KEY_2>": OAT}
    assert r.hits == {"github_token": 2, "anthropic_key": 2}


def test_pem_inside_a_json_escaped_string() -> None:
    raw = orjson.dumps(body(messages=[{"role": "user", "content": "key:\n" + PEM + "\nend"}]))
    assert b"\\n-----END RSA PRIVATE KEY-----" in raw  # escaped in the raw body
    r = scrub(raw)
    assert orjson.loads(r.body)["messages"][0]["content"] == "key:\n<PRIVATE_KEY_1>\nend"


def test_identifiers_hmac_deterministic_and_key_dependent() -> None:
    doc = body(messages=[{"role": "user", "content": "mail bob@example.com"}])
    a, b = scrub(doc), scrub(doc)
    other = Scrubber(bytes(32), max_body_bytes=1 << 20).scrub(orjson.dumps(doc))
    assert a.body == b.body and a.body != other.body
    text = orjson.loads(a.body)["messages"][0]["content"]
    assert text.startswith("mail <EMAIL_HMAC:") and len(text) == len("mail <EMAIL_HMAC:12345678>")


def test_skip_rules_leave_those_bytes_alone() -> None:
    doc = body(
        metadata={"user_id": "bob@example.com"},
        stop_sequences=[GH],
        tools=[{"name": "t", "description": f"uses {GH}", "input_schema": {"description": GH}}],
        system=[{"type": "text", "text": f"sys {GH}", "cache_control": {"type": "ephemeral"}}],
        messages=[
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": f"t {GH}", "signature": GH},
                    {"type": "redacted_thinking", "data": GH},
                    {
                        "type": "tool_use",
                        "id": "tu_1",
                        "name": "bash",
                        "input": {"command": f"export T={GH}", "n": [1, GH]},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "tu_1",
                        "content": [{"type": "text", "text": f"out {GH}"}],
                    },
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "eyJ" + GH},
                    },
                ],
            },
        ],
    )
    r = scrub(doc)
    out = orjson.loads(r.body)
    assert out["metadata"] == doc["metadata"] and out["stop_sequences"] == doc["stop_sequences"]
    assert out["tools"] == doc["tools"]
    assert out["system"][0]["text"] == "sys <GITHUB_TOKEN_1>"
    blocks = out["messages"][0]["content"]
    assert blocks[0] == doc["messages"][0]["content"][0]  # type: ignore[index]
    assert blocks[1]["data"] == GH
    assert blocks[2]["input"] == {
        "command": "export T=<GITHUB_TOKEN_1>",
        "n": [1, "<GITHUB_TOKEN_1>"],
    }
    assert out["messages"][1]["content"][0]["content"][0]["text"] == "out <GITHUB_TOKEN_1>"
    assert out["messages"][1]["content"][1] == doc["messages"][1]["content"][1]  # type: ignore[index]
    assert r.hits["github_token"] == 4


def test_nothing_to_scrub_is_the_original_object_and_oversize_or_non_json_pass() -> None:
    raw = orjson.dumps(body(messages=[{"role": "user", "content": "hello"}]))
    assert scrub(raw).body is raw
    raw2 = orjson.dumps(body(messages=[{"role": "user", "content": "user@localhost Bearer x"}]))
    assert scrub(raw2).body is raw2  # anchors present, nothing real: still the same object
    big = Scrubber(KEY, max_body_bytes=10).scrub(raw)
    assert big.body is raw and big.skipped == "too_large"
    bad = b"not json " + GH.encode()
    assert scrub(bad).body is bad and scrub(bad).skipped == "not_json"


def test_only_changed_strings_change_bytes() -> None:
    raw = (
        b'{"model" : "m", "big": 123456789012345678901234567890, "f": 1.50,'
        b' "messages": [{"role":"user","content":"caf\\u00e9 ' + GH.encode() + b'"}]}'
    )
    r = scrub(raw)
    assert r.body.startswith(b'{"model" : "m", "big": 123456789012345678901234567890, "f": 1.50,')
    assert r.body.endswith(b'"content":"caf\xc3\xa9 <GITHUB_TOKEN_1>"}]}')


def test_cache_prefix_stays_byte_identical_as_the_conversation_grows() -> None:
    turns = [
        {"role": "user", "content": f"here is {GH}"},
        {"role": "assistant", "content": [{"type": "text", "text": f"ok, {ANT} noted"}]},
    ]
    n = body(system=f"sys mentions {OAT}", messages=turns)
    n1 = body(
        system=f"sys mentions {OAT}",
        messages=[*turns, {"role": "user", "content": f"and {'ghs_' + 'q' * 36} too, with {GH}"}],
    )
    a, b = scrub(n), scrub(n1)
    cut = a.body.rindex(b"}]")  # the end of the last turn of N
    assert b.body[:cut] == a.body[:cut]
    assert (
        orjson.loads(b.body)["messages"][2]["content"]
        == "and <GITHUB_TOKEN_2> too, with <GITHUB_TOKEN_1>"
    )
    assert orjson.loads(a.body)["system"] == "sys mentions <ANTHROPIC_KEY_1>"  # system read first


def test_restore_json_escapes_the_original() -> None:
    mapping = {"<PRIVATE_KEY_1>": PEM, "<GITHUB_TOKEN_1>": GH}
    resp = orjson.dumps(
        {
            "content": [
                {"type": "text", "text": "key <PRIVATE_KEY_1>"},
                {"type": "tool_use", "input": {"cmd": "gh auth <GITHUB_TOKEN_1>"}},
            ]
        }
    )
    out = orjson.loads(restore_json(resp, mapping))
    assert out["content"][0]["text"] == "key " + PEM
    assert out["content"][1]["input"]["cmd"] == "gh auth " + GH
    plain = b'{"text":"no placeholders"}'
    assert restore_json(plain, mapping) is plain


def sse(index: int, kind: str, text: str) -> bytes:
    field = "text" if kind == "text_delta" else "partial_json"
    doc = {"type": "content_block_delta", "index": index, "delta": {"type": kind, field: text}}
    return b"event: content_block_delta\ndata: " + orjson.dumps(doc) + b"\n\n"


def stop(index: int) -> bytes:
    return b'event: content_block_stop\ndata: {"type":"content_block_stop","index":%d}\n\n' % index


def run_restore(
    mapping: dict[str, str], events: list[bytes], cuts: list[int] | None = None
) -> bytes:
    r = SSERestorer(mapping)
    stream = b"".join(events)
    pieces = []
    at = 0
    for c in sorted(cuts or []):
        pieces.append(stream[at:c])
        at = c
    pieces.append(stream[at:])
    return b"".join(r.feed(p) for p in pieces) + r.finish()


def deltas(out: bytes) -> dict[int, str]:
    texts: dict[int, str] = {}
    for block in out.split(b"\n\n"):
        for line in block.split(b"\n"):
            if line.startswith(b"data: "):
                doc = orjson.loads(line[6:])
                if doc.get("type") == "content_block_delta":
                    d = doc["delta"]
                    texts[doc["index"]] = texts.get(doc["index"], "") + d.get(
                        "text", d.get("partial_json", "")
                    )
    return texts


def test_sse_restore_at_every_split_position_of_a_placeholder() -> None:
    mapping = {"<GITHUB_TOKEN_1>": GH}
    full = "run gh with <GITHUB_TOKEN_1> now"
    for split in range(len(full) + 1):
        events = [
            b'event: message_start\ndata: {"type":"message_start"}\n\n',
            sse(0, "text_delta", full[:split]),
            sse(0, "text_delta", full[split:]),
            stop(0),
        ]
        out = run_restore(mapping, events)
        assert deltas(out) == {0: f"run gh with {GH} now"}, split
        assert out.startswith(events[0]) and out.endswith(stop(0))


def test_sse_partial_json_restored_json_escaped_and_other_events_identical() -> None:
    mapping = {"<PRIVATE_KEY_1>": PEM}
    events = [
        b'event: ping\ndata: {"type": "ping"}\n\n',
        sse(1, "input_json_delta", '{"key": "<PRIVATE_'),
        sse(1, "input_json_delta", 'KEY_1>"}'),
        stop(1),
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    ]
    for cut in range(0, len(b"".join(events)), 7):  # transport chunking anywhere
        out = run_restore(mapping, events, [cut])
        assert orjson.loads(deltas(out)[1]) == {"key": PEM}
        assert out.startswith(events[0]) and out.endswith(stop(1) + events[4])


def test_sse_without_placeholders_is_byte_identical() -> None:
    events = [sse(0, "text_delta", "a < b and <html>"), stop(0)]
    assert run_restore({"<GITHUB_TOKEN_1>": GH}, events) == b"".join(events)


secret_values = st.sampled_from(
    [GH, ANT, OAT, "AKIAIOSFODNN7EXAMPLE", JWT, "glpat-" + "x" * 20, PEM]
)
filler = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="<"), max_size=30
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(filler, secret_values), min_size=1, max_size=6), filler)
def test_scrub_then_restore_gives_back_the_original(
    parts: list[tuple[str, str]], tail: str
) -> None:
    text = "".join(f"{f} {s} " for f, s in parts) + tail
    r = scrub(body(messages=[{"role": "user", "content": text}]))
    scrubbed = orjson.loads(r.body)["messages"][0]["content"]
    for _, s in parts:
        assert s not in scrubbed
    echoed = orjson.dumps({"content": [{"type": "text", "text": scrubbed}]})
    assert orjson.loads(restore_json(echoed, r.mapping))["content"][0]["text"] == text


def test_json_restored_as_it_streams_at_every_split_position() -> None:
    mapping = {"<GITHUB_TOKEN_1>": GH, "<PRIVATE_KEY_1>": PEM}
    body = orjson.dumps(
        {"content": [{"type": "text", "text": "a <GITHUB_TOKEN_1> b <PRIVATE_KEY_1> <x"}]}
    )
    whole = restore_json(body, mapping)
    assert orjson.loads(whole)["content"][0]["text"] == f"a {GH} b {PEM} <x"
    for i in range(len(body) + 1):
        for j in range(i, len(body) + 1):
            r = JSONRestorer(mapping)
            out = r.feed(body[:i]) + r.feed(body[i:j]) + r.feed(body[j:]) + r.finish()
            assert out == whole, (i, j)
    # only a possible placeholder start is held, never more
    r = JSONRestorer(mapping)
    assert r.feed(b'"text": "abc <GITHUB_TO') == b'"text": "abc '
    assert r.feed(b"x") == b"<GITHUB_TOx"


CO_AUTHORED = "git commit -m 'fix'\n\nCo-Authored-By: Claude <noreply@anthropic.com>"


def test_allowlisted_addresses_and_domains_are_left_alone() -> None:
    doc = body(messages=[{"role": "user", "content": CO_AUTHORED}])
    raw = orjson.dumps(doc)
    allowed = Scrubber(KEY, max_body_bytes=1 << 20, allow=("noreply@anthropic.com",)).scrub(raw)
    assert allowed.body is raw and not allowed.hits and not allowed.mapping  # not even copied
    assert b"<EMAIL_HMAC" in scrub(raw).body  # without the allowlist it would be replaced
    mixed = body(messages=[{"role": "user", "content": CO_AUTHORED + " cc bob@example.com"}])
    r = Scrubber(KEY, max_body_bytes=1 << 20, allow=("noreply@anthropic.com",)).scrub(
        orjson.dumps(mixed)
    )
    text = orjson.loads(r.body)["messages"][0]["content"]
    assert "<noreply@anthropic.com>" in text and "bob@example.com" not in text
    assert r.hits == {"email": 1}
    by_domain = Scrubber(KEY, max_body_bytes=1 << 20, allow=("example.com",))
    doc = body(messages=[{"role": "user", "content": "a@Example.com b@ci.example.com c@x.org"}])
    text = orjson.loads(by_domain.scrub(orjson.dumps(doc)).body)["messages"][0]["content"]
    assert text.startswith("a@Example.com b@ci.example.com <EMAIL_HMAC:")


def test_allowlist_on_the_slow_path_too() -> None:
    """A body with escapes the prefilter cannot see through goes string by
    string: the allowlist applies there as well."""
    raw = orjson.dumps(body(messages=[{"role": "user", "content": CO_AUTHORED}])).replace(
        b"@", b"\\u0040"
    )
    r = Scrubber(KEY, max_body_bytes=1 << 20, allow=("noreply@anthropic.com",)).scrub(raw)
    assert r.body is raw and not r.hits


def test_allow_setting() -> None:
    from trioproxy.config import ConfigError, load_config

    key = {"TRIOPROXY_SCRUB_MODE": "pseudonymize", "TRIOPROXY_SCRUB_HMAC_KEY": "ab" * 32}
    cfg = load_config(env=key)
    assert cfg.scrub is not None and cfg.scrub.allow == ("noreply@anthropic.com",)
    cfg = load_config(env={**key, "TRIOPROXY_SCRUB_ALLOW": "Team.Example, bot@ci.example.org"})
    assert cfg.scrub is not None and cfg.scrub.allow == ("team.example", "bot@ci.example.org")
    with pytest.raises(ConfigError, match="TRIOPROXY_SCRUB_ALLOW"):
        load_config(env={**key, "TRIOPROXY_SCRUB_ALLOW": "not an address"})
