from pathlib import Path

import pytest

from trioproxy.config import ConfigError, binding_problem, effective_settings, load_config
from trioproxy.config.callers import digest, from_secrets, parse_callers
from trioproxy.config.model import Caller
from trioproxy.config.secrets import parse_secrets, secret_name
from trioproxy.errors import AuthenticationFailed
from trioproxy.proto.events import RequestHead
from trioproxy.rules.access import identify
from trioproxy.rules.auth import inject_credential, presented_credential

ALICE = "alice-secret-0123456789"
BOB = "bob-secret-abcdefghijk"


def test_comment_lines_may_contain_commas() -> None:
    secrets = parse_secrets(f"# name:secret, one per line\nalice:{ALICE}\n", "t")
    assert [s.name for s in secrets] == ["alice"]


def test_parse_secrets_pairs_bare_and_comments() -> None:
    secrets = parse_secrets(f"alice:{ALICE}, # not a comment here\n# a comment\n{BOB}\n", "t")
    names = [s.name for s in secrets]
    assert names[0] == "alice"
    assert secret_name(BOB.encode()) in names and all(s.value != b"" for s in secrets)
    assert len(secret_name(BOB.encode())) == len("key-") + 8
    assert BOB not in repr(secrets) and ALICE not in repr(secrets)


@pytest.mark.parametrize("text", ["alice:tiny-s3cr3t", "alice:", f"a:{ALICE},a:{BOB}"])
def test_parse_secrets_rejects_without_quoting(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_secrets(text, "auth.secrets")
    for secret in ("tiny-s3cr3t", ALICE, BOB):
        assert secret not in str(info.value)


def _head(*headers: tuple[bytes, bytes]) -> RequestHead:
    return RequestHead(b"POST", b"/v1/messages", list(headers), b"1.1")


def test_identify_both_header_styles_rotation_and_the_proxy_key() -> None:
    secrets = parse_secrets(f"alice:{ALICE},bob:{BOB}", "t")
    own = parse_callers(
        [{"name": "carol", "secrets": ["carol-secret-0123456789"], "upstream_credential": "own"}],
        "t",
    )
    index = {d: c for c in (*from_secrets(secrets), *own) for d in c.digests}

    def lookup(secret: bytes) -> Caller | None:
        return index.get(digest(secret))

    assert identify(_head((b"x-api-key", ALICE.encode())), lookup).name == "alice"
    assert identify(_head((b"authorization", b"Bearer " + BOB.encode())), lookup).name == "bob"
    assert identify(_head((b"authorization", b"bearer  " + BOB.encode())), lookup).name == "bob"
    # x-trioproxy-key wins: the other credential is the caller's own.
    carol = _head((b"x-trioproxy-key", b"carol-secret-0123456789"), (b"x-api-key", b"sk-ant-own"))
    assert identify(carol, lookup).name == "carol"
    for bad in (
        _head((b"x-api-key", b"wrong-wrong-wrong-wrong")),
        _head((b"x-api-key", ALICE.encode()[:-1])),
        _head((b"authorization", b"Basic " + ALICE.encode())),
        _head(),
        # an own-credential caller must use x-trioproxy-key
        _head((b"x-api-key", b"carol-secret-0123456789")),
    ):
        with pytest.raises(AuthenticationFailed) as info:
            identify(bad, lookup)
        assert ALICE not in info.value.message and "carol-secret" not in info.value.message
    assert presented_credential([(b"authorization", b"Bearer a"), (b"x-api-key", b"b")]) == b"b"


def test_inject_replaces_caller_credentials() -> None:
    headers = [
        (b"x-api-key", b"caller"),
        (b"anthropic-beta", b"x"),
        (b"authorization", b"Bearer caller"),
    ]
    assert inject_credential(headers, b"x-api-key", b"provider") == [
        (b"anthropic-beta", b"x"),
        (b"x-api-key", b"provider"),
    ]


def test_config_auth_rules(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={"TRIOPROXY_AUTH_SECRETS": f"alice:{ALICE}"})
    assert "TRIOPROXY_UPSTREAM_API_KEY" in str(info.value) and ALICE not in str(info.value)
    keyfile = tmp_path / "key"
    keyfile.write_text("sk-ant-provider-key-123\n")
    secfile = tmp_path / "secrets"
    secfile.write_text(f"# team\nbob:{BOB}\n")
    cfg = load_config(
        env={
            "TRIOPROXY_AUTH_SECRETS": f"alice:{ALICE}",
            "TRIOPROXY_AUTH_SECRETS_FILE": str(secfile),
            "TRIOPROXY_UPSTREAM_API_KEY_FILE": str(keyfile),
            "TRIOPROXY_UPSTREAM_AUTH_HEADER": "Authorization",
            "TRIOPROXY_UPSTREAM_AUTH_SCHEME": "Bearer",
            "TRIOPROXY_LISTEN": "0.0.0.0:8787",
        }
    )
    assert [s.name for s in cfg.auth.secrets] == ["alice", "bob"]
    assert cfg.upstream.credential is not None
    assert (cfg.upstream.credential.header, cfg.upstream.credential.value) == (
        b"authorization",
        b"Bearer sk-ant-provider-key-123",
    )
    assert binding_problem(cfg) is None
    printed = repr(cfg) + repr(effective_settings(cfg))
    for secret in (ALICE, BOB, "sk-ant-provider-key-123"):
        assert secret not in printed


def test_binding_policy() -> None:
    open_cfg = load_config(env={"TRIOPROXY_LISTEN": "0.0.0.0:8787"})
    problem = binding_problem(open_cfg)
    assert problem is not None and "TRIOPROXY_AUTH_SECRETS" in problem and "\n" not in problem
    assert (
        binding_problem(
            load_config(
                env={"TRIOPROXY_LISTEN": "0.0.0.0:8787", "TRIOPROXY_TRUST_FRONT_PROXY": "1"}
            )
        )
        is None
    )
    for host in ("127.0.0.1", "127.1.2.3", "[::1]", "localhost"):
        assert binding_problem(load_config(env={"TRIOPROXY_LISTEN": f"{host}:1"})) is None
    assert binding_problem(load_config(env={"TRIOPROXY_LISTEN": "[::]:1"})) is not None
    assert binding_problem(load_config(env={"TRIOPROXY_LISTEN": "example.com:1"})) is not None
