"""A fake identity provider, for the tests (and anyone trying sign-in
without an IdP): an OIDC issuer with a discovery document and a JWKS, whose
RSA signing keys rotate, and which issues tokens (``GET /issue``, what an
``apiKeyHelper`` script asks it for). It counts what is fetched from it, so
a test can show the proxy never asks it per request."""

from __future__ import annotations

import time
import urllib.parse
import uuid
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import rsa

from trioproxy.inbound.exchange import ClientExchange, respond
from trioproxy.proto.events import ResponseHead

AUDIENCE = "trioproxy-test"


class FakeIdP:
    def __init__(self, issuer: str = "") -> None:
        """``issuer``: its URL, once its port is known (``at``)."""
        self.issuer = issuer
        self.keys: list[tuple[str, rsa.RSAPrivateKey]] = []  # (kid, key), the signing one last
        self.listed = 0  # how many keys the JWKS lists (the newest)
        self.discovery_fetches = 0
        self.jwks_fetches = 0
        self.issued = 0
        self.rotate(keep=0)

    def at(self, port: int) -> None:
        self.issuer = f"http://127.0.0.1:{port}"

    def rotate(self, *, keep: int = 1) -> str:
        """A new signing key; the JWKS lists it and ``keep`` older ones.
        Returns its kid."""
        kid = f"key-{uuid.uuid4().hex[:8]}"
        self.keys.append((kid, rsa.generate_private_key(public_exponent=65537, key_size=2048)))
        self.listed = 1 + keep
        return kid

    @property
    def private_key(self) -> rsa.RSAPrivateKey:
        return self.keys[-1][1]

    def token(
        self,
        user: str,
        groups: list[str] | None = None,
        *,
        ttl: float = 300.0,
        headers: dict[str, Any] | None = None,
        algorithm: str = "RS256",
        key: Any = None,
        **claims: Any,
    ) -> str:
        """A token for ``user`` (its ``email``), signed with the newest key
        unless ``key`` says otherwise; ``claims`` override the standard ones."""
        now = time.time()
        body: dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": f"sub-{user}",
            "email": user,
            "groups": groups or [],
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now + ttl),
            **claims,
        }
        kid, signing = self.keys[-1]
        self.issued += 1
        return jwt.encode(
            body,
            signing if key is None else key,
            algorithm=algorithm,
            headers={"kid": kid, **(headers or {})},
        )

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self.keys[-self.listed :]:
            jwk = orjson.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": keys}

    async def __call__(self, ex: ClientExchange) -> None:
        while (chunk := await ex.receive_body()) is not None:  # GETs: nothing to keep
            ex.ack(chunk.flow_controlled_length)
        path, _, query = ex.head.target.decode("latin-1").partition("?")
        if path == "/.well-known/openid-configuration":
            self.discovery_fetches += 1
            doc: Any = {
                "issuer": self.issuer,
                "jwks_uri": f"{self.issuer}/jwks",
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        elif path == "/jwks":
            self.jwks_fetches += 1
            doc = self.jwks()
        elif path == "/issue":
            q = dict(urllib.parse.parse_qsl(query))
            token = self.token(
                q.get("user", "alice@example.com"),
                [g for g in q.get("groups", "").split(",") if g],
                ttl=float(q.get("ttl", "300")),
            )
            await _send(ex, 200, token.encode(), b"text/plain")
            return
        else:
            await _send(ex, 404, b'{"error":"not_found"}', b"application/json")
            return
        await _send(ex, 200, orjson.dumps(doc), b"application/json")


async def _send(ex: ClientExchange, status: int, body: bytes, kind: bytes) -> None:
    head = ResponseHead(
        status, [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
    )
    await respond(ex, head, body)
