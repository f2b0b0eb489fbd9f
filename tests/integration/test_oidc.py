"""Callers who sign in through an identity provider ([auth.oidc]), against
a fake IdP (trioproxy/fake/idp.py) that serves a discovery document and a
JWKS, rotates its keys, and counts what the proxy fetches from it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
import trio
from cryptography.hazmat.primitives import serialization

from tests.helpers import Running, h1_request, make_config, start_fake, unless_in_ci
from tests.integration.test_auth import access_lines
from tests.integration.test_claude_code import CLAUDE, claude, refuse
from trioproxy.fake.app import FakeUpstream
from trioproxy.fake.idp import AUDIENCE, FakeIdP
from trioproxy.server import Server

ROBOT = "robot-secret-0123456789abcdef"  # a shared-secret caller beside the users
GROUPS = [
    {"name": "engineering", "match": "eng", "models": ["claude-sonnet-*"], "rpm": 100},
    {"name": "ops", "match": "ops-*", "models": ["claude-haiku-*"], "rpm": 2},
    {"name": "leads", "match": "leads", "models": ["claude-opus-*"], "rpm": 1000},
]


def body(model: str) -> bytes:
    return orjson.dumps(
        {"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    )


async def rig(nursery: trio.Nursery, **cfg: Any) -> tuple[FakeIdP, Running, Running]:
    idp = FakeIdP()
    idp.at(await nursery.start(Server(make_config()).serve_app, idp))
    fake = await start_fake(nursery)
    server = Server(
        make_config(
            upstream__url=fake.url,
            upstream__api_key="sk-ant-provider",
            auth__oidc__issuer=idp.issuer,
            auth__oidc__audience=AUDIENCE,
            auth__oidc__leeway_s=0,
            caller_groups=GROUPS,
            auth__secrets=f"robot:{ROBOT}",
            **cfg,
        )
    )
    proxy = Running(server, await nursery.start(server.serve))
    signin = server.state.signin
    assert signin is not None
    with trio.fail_after(5):
        while not signin.issuer.keys:  # noqa: ASYNC110 (fetched in a thread at start)
            await trio.sleep(0.02)
    return idp, proxy, fake


async def ask(
    proxy: Running, token: str, model: str = "claude-sonnet-4-5", header: str = "authorization"
) -> tuple[int, str]:
    value = f"Bearer {token}" if header == "authorization" else token
    r = await h1_request(proxy.port, "POST", "/v1/messages", [(header, value)], body(model))
    message = orjson.loads(r.body)["error"]["message"] if r.status >= 400 else ""
    return r.status, message


async def test_users_get_their_groups_policy_and_the_idp_is_not_asked_per_request(
    nursery: trio.Nursery,
) -> None:
    idp, proxy, _ = await rig(nursery)
    fetched = (idp.discovery_fetches, idp.jwks_fetches)
    alice = idp.token("alice@example.com", ["eng"])
    bob = idp.token("bob@example.com", ["ops-berlin"])
    carol = idp.token("carol@example.com", ["eng", "leads"])  # the most generous of both
    for _ in range(3):
        assert await ask(proxy, alice) == (200, "")
    assert await ask(proxy, alice, header="x-api-key") == (200, "")
    status, message = await ask(proxy, alice, "claude-haiku-4-5")
    assert status == 403 and "claude-haiku-4-5" in message
    assert await ask(proxy, bob, "claude-haiku-4-5") == (200, "")
    assert await ask(proxy, bob, "claude-haiku-4-5") == (200, "")
    status, message = await ask(proxy, bob, "claude-haiku-4-5")  # ops: 2 a minute, his own
    assert status == 429 and "rpm" in message
    assert await ask(proxy, carol, "claude-opus-4-5") == (200, "")
    assert await ask(proxy, carol, "claude-sonnet-4-5") == (200, "")
    dave = idp.token("dave@example.com", ["sales"])
    status, message = await ask(proxy, dave)
    assert status == 403 and "dave@example.com is in no group" in message and "sales" in message
    assert (idp.discovery_fetches, idp.jwks_fetches) == fetched  # none per request
    # Each user is a caller of their own: the ledger and metrics say who.
    metrics = proxy.server.state.metrics
    callers = {k[1] for k in metrics.requests}
    assert {"alice@example.com", "bob@example.com", "carol@example.com"} <= callers
    # Shared-secret callers keep working beside them.
    assert await ask(proxy, ROBOT, "claude-opus-4-5", header="x-api-key") == (200, "")
    assert "robot" in {k[1] for k in metrics.requests}


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "audience",
        "issuer",
        "alg-none",
        "hs256-with-the-public-key",
        "not-yet",
        "garbage",
    ],
)
async def test_bad_tokens_are_401s_that_say_why(nursery: trio.Nursery, case: str) -> None:
    idp, proxy, _ = await rig(nursery)
    user, groups = "alice@example.com", ["eng"]
    if case == "expired":
        token, words = idp.token(user, groups, ttl=-10), "expired"
    elif case == "audience":
        token, words = idp.token(user, groups, aud="someone-else"), "another audience"
    elif case == "issuer":
        token, words = idp.token(user, groups, iss="https://evil.example"), "another issuer"
    elif case == "not-yet":
        token, words = idp.token(user, groups, nbf=int(time.time()) + 600), "not valid yet"
    elif case == "alg-none":
        header = b64({"alg": "none", "typ": "JWT", "kid": idp.keys[-1][0]})
        claims = jwt.decode(idp.token(user, groups), options={"verify_signature": False})
        token, words = f"{header}.{b64(claims)}.", "'none'"
    elif case == "hs256-with-the-public-key":
        public = idp.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        claims = jwt.decode(idp.token(user, groups), options={"verify_signature": False})
        header = b64({"alg": "HS256", "typ": "JWT", "kid": idp.keys[-1][0]})
        signing = f"{header}.{b64(claims)}".encode()
        sig = base64.urlsafe_b64encode(hmac.new(public, signing, hashlib.sha256).digest())
        token, words = f"{signing.decode()}.{sig.rstrip(b'=').decode()}", "'HS256'"
    else:
        token, words = "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln", "invalid token"
    status, message = await ask(proxy, token)
    assert status == 401, message
    assert words in message and token not in message


def b64(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


async def test_a_rotated_key_is_fetched_once_when_a_token_names_it(
    nursery: trio.Nursery,
) -> None:
    idp, proxy, _ = await rig(nursery)
    old = idp.token("alice@example.com", ["eng"])
    assert (await ask(proxy, old))[0] == 200
    fetches = idp.jwks_fetches
    idp.rotate(keep=0)  # the old key is gone from the JWKS
    new = idp.token("alice@example.com", ["eng"])
    assert await ask(proxy, new) == (200, "")  # an unknown kid: the keys are fetched again
    assert idp.jwks_fetches == fetches + 1
    for _ in range(3):
        assert (await ask(proxy, new))[0] == 200
    assert idp.jwks_fetches == fetches + 1  # once, not per request
    # A made-up key id does not become a stream of fetches to the IdP.
    forged = idp.token("alice@example.com", ["eng"], headers={"kid": "no-such-key"})
    for _ in range(5):
        status, message = await ask(proxy, forged)
        assert status == 401 and "'no-such-key'" in message
    assert idp.jwks_fetches <= fetches + 2
    # The old key no longer verifies anything: a token checked before is
    # still remembered until it expires, but a new one under it is refused.
    idp.keys[-1], idp.keys[-2] = idp.keys[-2], idp.keys[-1]
    stale = idp.token("bob@example.com", ["eng"])
    status, message = await ask(proxy, stale)
    assert status == 401 and "does not list" in message


@unless_in_ci(not CLAUDE.exists(), "Claude Code is not installed (make js-clients)")
@pytest.mark.timeout(150)
async def test_claude_code_signs_in_with_an_api_key_helper_across_a_token_refresh(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The real Claude Code, its apiKeyHelper a script that asks the IdP
    for a fresh token (4 s long). The first answer takes 5 s, so the token
    has expired when Claude Code sends the tool's result: that is a 401,
    Claude Code runs the helper again, and the turn finishes as alice."""
    caplog.set_level(logging.INFO, logger="trioproxy.access")
    idp = FakeIdP()
    idp.at(await nursery.start(Server(make_config()).serve_app, idp))
    cwd = tmp_path / "work"
    cwd.mkdir()
    notes = cwd / "notes.txt"
    notes.write_text("the launch code is 4217\n")
    fake = FakeUpstream(tools=False, call=("Read", {"file_path": str(notes)}))
    fake.script.append(b"slow-headers=5")  # the first answer outlives the first token
    fake_port = await nursery.start(Server(make_config()).serve_app, fake)
    server = Server(
        make_config(
            upstream__url=f"http://127.0.0.1:{fake_port}",
            upstream__api_key="sk-ant-provider",
            auth__oidc__issuer=idp.issuer,
            auth__oidc__audience=AUDIENCE,
            auth__oidc__leeway_s=0,
            caller_groups=[{"name": "eng", "match": "eng"}],
        )
    )
    proxy = Running(server, await nursery.start(server.serve))
    helper = tmp_path / "token.sh"
    url = f"{idp.issuer}/issue?user=alice@example.com&groups=eng&ttl=4"
    helper.write_text(
        f"#!/bin/sh\nexec {sys.executable} -c "
        f"\"import urllib.request; print(urllib.request.urlopen('{url}').read().decode())\"\n"
    )
    helper.chmod(0o755)
    listeners = await nursery.start(partial(trio.serve_tcp, refuse, 0, host="127.0.0.1"))
    refuser = listeners[0].socket.getsockname()[1]
    settings = orjson.dumps({"apiKeyHelper": str(helper)}).decode()
    result = await claude(
        proxy.url, refuser, api_key="", cwd=str(cwd), args=("--settings", settings)
    )
    assert result["is_error"] is False, result
    assert result["num_turns"] >= 2 and any(b"4217" in b for b in fake.bodies)
    assert idp.issued >= 2 and idp.jwks_fetches == 1  # a new token; the keys fetched once
    with trio.fail_after(5):
        while len(lines := access_lines(caplog)) < 3:  # noqa: ASYNC110 (the journal writes)
            await trio.sleep(0.05)
    got = [(x["status"], x["caller"]) for x in lines]
    assert got == [(200, "alice@example.com"), (401, "-"), (200, "alice@example.com")]
    assert "the token expired" in str(lines[1]["error"])
