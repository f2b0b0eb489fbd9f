"""An IdP's JWT, checked (pure): its signature with the issuer's keys, its
``iss``, ``aud``, ``exp``, ``nbf`` and ``iat`` (with ``leeway_s``), and an
algorithm from the asymmetric ones only: never ``none``, and never an
HMAC, whose "secret" would be the issuer's public key.

PyJWT does the JOSE work (with ``cryptography``): a maintained library
whose ``decode`` checks every registered claim, rather than hand-written
signature code. Every refusal names what is wrong with the token, never
the token itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import jwt

from trioproxy.config.model import OIDCConfig

ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
_SHAPE = re.compile(rb"^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$")
MAX_TOKEN = 16 * 1024  # bytes; an IdP's tokens are a few KiB


class TokenRejected(ValueError):
    """Why the token is refused (a 401), in words for the caller."""


class UnknownKey(TokenRejected):
    """The token names a key the issuer's key set does not have (yet)."""


@dataclass(frozen=True, slots=True)
class Key:
    """One of the issuer's keys; ``alg`` as its JWK declares it ("" if not)."""

    jwk: jwt.PyJWK
    alg: str = ""


def key_set(jwks: object) -> dict[str, Key]:
    """The keys of a JWKS document that can verify signatures, by ``kid``
    (one key without a kid: ""); unusable entries are skipped."""
    out: dict[str, Key] = {}
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    for entry in keys if isinstance(keys, list) else ():
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        alg = str(entry.get("alg") or "")
        if alg and alg not in ALGORITHMS:
            continue
        try:
            jwk = jwt.PyJWK.from_dict(entry)
        except jwt.PyJWTError:
            continue
        kid = entry.get("kid")
        out[kid if isinstance(kid, str) else ""] = Key(jwk, alg)
    return out


@dataclass(frozen=True, slots=True)
class Identity:
    user: str  # the user claim
    groups: tuple[str, ...]  # the groups claim
    expires: float  # the token's exp, epoch seconds


def looks_like_jwt(credential: bytes) -> bool:
    """A compact JWS (three base64url parts, a JSON header): what is tried
    against the issuer when no caller secret matches."""
    return len(credential) <= MAX_TOKEN and _SHAPE.match(credential) is not None


def verify(token: str, keys: Mapping[str, Key], oidc: OIDCConfig, issuer: str) -> Identity:
    """The identity in ``token``, or TokenRejected. ``keys``: the issuer's
    keys by ``kid``; ``issuer``: the ``iss`` its discovery document names."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenRejected("the token is not a signed JWT") from None
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise TokenRejected(
            f"the token is signed with {alg!r}; this proxy accepts only the IdP's "
            f"asymmetric algorithms ({', '.join(ALGORITHMS)})"
        )
    kid = header.get("kid")
    key = keys.get(kid if isinstance(kid, str) else "")
    if key is None:
        raise UnknownKey(f"the token names a signing key ({kid!r}) the issuer does not list")
    if key.alg and key.alg != alg:
        raise TokenRejected(f"the token's algorithm {alg} is not its key's ({key.alg})")
    try:
        claims = jwt.decode(
            token,
            key=key.jwk.key,
            algorithms=[alg],
            audience=oidc.audience,
            issuer=issuer,
            leeway=oidc.leeway_s,
            options={"require": ["exp", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenRejected("the token expired: sign in again (a fresh token)") from None
    except jwt.ImmatureSignatureError:
        raise TokenRejected("the token is not valid yet (nbf or iat in the future)") from None
    except jwt.InvalidAudienceError:
        raise TokenRejected(f"the token is for another audience (not {oidc.audience!r})") from None
    except jwt.InvalidIssuerError:
        raise TokenRejected(f"the token is from another issuer (not {issuer!r})") from None
    except jwt.InvalidSignatureError:
        raise TokenRejected("the token's signature does not verify") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenRejected(f"the token has no {exc.claim!r} claim") from None
    except jwt.PyJWTError as exc:
        raise TokenRejected(f"the token is invalid: {exc}") from None
    user = claims.get(oidc.user_claim)
    if not isinstance(user, str) or not user.strip():
        raise TokenRejected(f"the token has no {oidc.user_claim!r} claim to name the caller")
    raw = claims.get(oidc.groups_claim, ())
    if isinstance(raw, str):
        raw = [raw]
    groups = tuple(g for g in raw if isinstance(g, str)) if isinstance(raw, list) else ()
    return Identity(user.strip()[:200], groups, float(claims["exp"]))
