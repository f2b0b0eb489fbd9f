"""Sign-in through an identity provider, the pure parts: a token's shape,
the issuer's key set, and a user's policy merged from their groups."""

from __future__ import annotations

import pytest

from trioproxy.config.callers import parse_caller_groups
from trioproxy.config.model import Budget, OIDCConfig
from trioproxy.fake.idp import FakeIdP
from trioproxy.oidc.policy import Refused, policy_for
from trioproxy.oidc.tokens import Identity, key_set, looks_like_jwt

OIDC = OIDCConfig("https://idp.example", "trioproxy", allowed_domains=("example.com",))
GROUPS = parse_caller_groups(
    [
        {
            "name": "eng",
            "match": "eng",
            "models": ["claude-sonnet-*"],
            "rpm": 60,
            "budget": {"usd": 100, "window": "monthly"},
        },
        {
            "name": "ops",
            "match": "ops-*",
            "models": ["claude-haiku-*"],
            "rpm": 10,
            "tpm": 5000,
            "budget": {"usd": 10, "window": "daily"},
        },
        {
            "name": "robots",
            "match": "robots",
            "upstream_credential": "own",
            "budget": {"tokens": 10**6, "window": "daily"},
        },
    ]
)


def user(*groups: str, name: str = "alice@example.com") -> Identity:
    return Identity(name, groups, 2_000_000_000.0)


def test_a_user_gets_the_most_generous_of_each_key_of_their_groups() -> None:
    one = policy_for(user("eng"), OIDC, GROUPS)
    assert (one.name, one.models, one.rpm, one.tpm) == (
        "alice@example.com",
        ("claude-sonnet-*",),
        60,
        None,
    )
    assert one.expires == 2_000_000_000.0 + OIDC.leeway_s and not one.digests
    both = policy_for(user("eng", "ops-berlin"), OIDC, GROUPS)
    assert both.models == ("claude-sonnet-*", "claude-haiku-*")  # the union
    assert both.rpm == 60 and both.tpm is None  # the highest; no limit beats any
    # $10 a day is more than $100 a month: compared per day.
    assert both.budget == Budget("daily", usd=10)
    assert not both.own_credential
    assert policy_for(user("robots"), OIDC, GROUPS).own_credential
    assert policy_for(user("robots", "eng"), OIDC, GROUPS).models == ()  # robots: every model


def test_a_user_in_no_group_or_outside_the_domains_is_refused_with_why() -> None:
    with pytest.raises(Refused, match=r"in no group .*sales"):
        policy_for(user("sales"), OIDC, GROUPS)
    with pytest.raises(Refused, match="not at an allowed domain"):
        policy_for(user("eng", name="mallory@example.org"), OIDC, GROUPS)


def test_group_settings_are_checked() -> None:
    with pytest.raises(ValueError, match=r"caller_groups\[x\]\.match"):
        parse_caller_groups([{"name": "x"}])
    with pytest.raises(ValueError, match=r"caller_groups\[x\]\.secrets: unknown key"):
        parse_caller_groups([{"name": "x", "match": "x", "secrets": ["s"]}])
    with pytest.raises(ValueError, match="used twice"):
        parse_caller_groups([{"name": "x", "match": "a"}, {"name": "x", "match": "b"}])


def test_tokens_and_key_sets() -> None:
    idp = FakeIdP("https://idp.example")
    token = idp.token("alice@example.com", ["eng"]).encode()
    assert looks_like_jwt(token)
    assert not looks_like_jwt(b"sk-ant-api03-abc") and not looks_like_jwt(b"eyJ.x" * 5000)
    jwks = idp.jwks()
    jwks["keys"].append({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"})
    jwks["keys"].append({"kty": "RSA", "kid": "enc", "use": "enc", "n": "x", "e": "AQAB"})
    keys = key_set(jwks)
    assert list(keys) == [idp.keys[-1][0]] and keys[idp.keys[-1][0]].alg == "RS256"
