"""The fake Google Cloud Vertex AI, with its own token endpoint
(``trioproxy fake-upstream --vertex``): Claude's ``rawPredict``,
``streamRawPredict`` and ``count-tokens:rawPredict``, offline.

It checks what Google checks: the bearer token must be one its own token
endpoint (``POST /token``) issued and not yet expired, and the token
endpoint grants one only for a JWT assertion signed by the private key of
a service account it made (``service_account_key``), with Google's
audience and a fresh ``exp``, so google-auth's real flow runs against it.
The body must carry ``anthropic_version: "vertex-2023-10-16"``, no
``model`` (but for token counting), and none of the fields and betas the
cloud rejects. Answers are the Anthropic fake's, a stream as SSE byte for
byte; faults (``x-fake-fault``) in Google's shapes (quota, unavailable) or
Claude's own (529, a cut, an error event mid-stream).
"""

from __future__ import annotations

import json
import secrets
import time
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import exceptions as auth_exceptions
from google.auth import jwt

from trioproxy.fake.app import FakeUpstream, send_paced
from trioproxy.fake.bedrock_app import bridge_rejects
from trioproxy.fake.faults import Faults, FaultSyntaxError
from trioproxy.fake.messages import (
    error_json,
    message_json,
    plan_for,
    stream_events,
    with_call,
)
from trioproxy.inbound.exchange import ClientExchange, respond
from trioproxy.proto.events import Headers, ResponseHead
from trioproxy.vertex.request import ANTHROPIC_VERSION

GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"  # what google-auth puts in `aud`
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FAKE_PROJECT = "fake-project"
_VERBS = ("rawPredict", "streamRawPredict")


class VertexFake(FakeUpstream):
    def __init__(
        self,
        *,
        faults: bytes | None = None,
        tools: bool = True,
        token_seconds: int = 3600,
        call: tuple[str, dict[str, Any]] | None = None,
    ) -> None:
        """``token_seconds``: the lifetime of the tokens it issues.
        ``call``: answer a first turn with this tool call when offered."""
        super().__init__(faults=faults, tools=tools, call=call)
        self.token_seconds = token_seconds
        self._keys: dict[str, rsa.RSAPublicKey] = {}  # service account email -> its key
        self._tokens: dict[str, float] = {}  # access token -> expiry (wall time)
        self.issued = 0  # tokens granted
        self.refused: deque[str] = deque(maxlen=100)

    def service_account_key(self, path: Path, token_uri: str, email: str = "") -> None:
        """Write a service account's JSON key, of an account this fake
        knows, whose ``token_uri`` is this fake's token endpoint."""
        email = email or f"trioproxy-{len(self._keys)}@{FAKE_PROJECT}.iam.gserviceaccount.com"
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._keys[email] = key.public_key()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        doc = {
            "type": "service_account",
            "project_id": FAKE_PROJECT,
            "private_key_id": secrets.token_hex(20),
            "private_key": pem,
            "client_email": email,
            "client_id": "100000000000000000001",
            "token_uri": token_uri,
        }
        path.write_text(json.dumps(doc))
        path.chmod(0o600)

    async def _route(self, ex: ClientExchange, body: bytes, rid: str) -> None:
        head = ex.head
        if head.path == b"/token" and head.method == b"POST":
            await self._token(ex, body, rid)
            return
        self.bodies.append(body)
        auth = (head.header(b"authorization") or b"").decode("latin-1")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        if self._tokens.get(token, 0.0) <= time.time():
            await _google_error(
                ex,
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token.",
                rid,
            )
            return
        parts = head.path.decode("latin-1").split("/")
        # /v1/projects/P/locations/L/publishers/anthropic/models/M:VERB
        if (
            len(parts) != 10
            or parts[1:3] != ["v1", "projects"]
            or parts[4] != "locations"
            or parts[6:9] != ["publishers", "anthropic", "models"]
            or ":" not in parts[9]
        ):
            await _google_error(ex, 404, "NOT_FOUND", "The requested URL was not found.", rid)
            return
        model, verb = unquote(parts[9]).rsplit(":", 1)
        if head.method != b"POST" or verb not in _VERBS:
            await _google_error(ex, 404, "NOT_FOUND", "The requested URL was not found.", rid)
            return
        counting = model == "count-tokens"
        betas = [
            b.strip()
            for n, v in head.headers
            if n == b"anthropic-beta"
            for b in v.decode("latin-1").split(",")
            if b.strip()
        ]
        problem, doc = predict_problem(body, betas, counting=counting)
        if problem:
            self.refused.append(problem)
            await _google_error(ex, 400, "INVALID_ARGUMENT", problem, rid)
            return
        if counting:
            await _json(ex, 200, orjson.dumps({"input_tokens": max(1, len(body) // 4)}), rid)
            return
        try:
            faults = self.faults_for(head.header(b"x-fake-fault"))
        except FaultSyntaxError as exc:
            await _google_error(ex, 400, "INVALID_ARGUMENT", str(exc), rid)
            return
        if faults.hang_up:
            await ex.abort()
            return
        if faults.status is not None:
            await self._vertex_fault(ex, faults.status, rid)
            return
        request = {**doc, "model": model}
        plan = plan_for(
            request,
            body,
            text_bytes=faults.text_bytes,
            tools=self.tools,
            max_tokens_cut=faults.max_tokens_cut,
        )
        plan = with_call(plan, request, self.call)
        if not request.get("stream"):
            if faults.slow_headers:
                await trio.sleep(faults.slow_headers)
            await _json(ex, 200, message_json(plan), rid)
            return
        await self._stream(ex, stream_events(plan, delta_chars=faults.delta_chars), faults, rid)

    async def _token(self, ex: ClientExchange, body: bytes, rid: str) -> None:
        form = {k: v[0] for k, v in parse_qs(body.decode("latin-1")).items()}
        if form.get("grant_type") != JWT_GRANT:
            await _oauth_error(ex, "unsupported_grant_type", "only the JWT bearer grant", rid)
            return
        assertion = form.get("assertion", "")
        try:
            unverified = jwt.decode(assertion, verify=False)
            key = self._keys.get(str(unverified.get("iss")))
            if key is None:
                raise ValueError("no such service account")
            pem = key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            claims = jwt.decode(assertion, certs=pem.decode(), audience=GOOGLE_TOKEN_AUDIENCE)
        except (ValueError, auth_exceptions.GoogleAuthError) as exc:
            await _oauth_error(ex, "invalid_grant", f"Invalid JWT Signature. ({exc})", rid)
            return
        if "cloud-platform" not in str(claims.get("scope", "")):
            await _oauth_error(ex, "invalid_scope", "the cloud-platform scope is needed", rid)
            return
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        self._tokens[token] = time.time() + self.token_seconds
        self.issued += 1
        answer = {"access_token": token, "expires_in": self.token_seconds, "token_type": "Bearer"}
        await _json(ex, 200, orjson.dumps(answer), rid)

    async def _vertex_fault(self, ex: ClientExchange, status: int, rid: str) -> None:
        if status == 429:
            await _google_error(
                ex, 429, "RESOURCE_EXHAUSTED", "Quota exceeded for aiplatform (fake).", rid
            )
        elif status == 529:  # Claude's own overload passes through Vertex as Anthropic's
            body = error_json("overloaded_error", "Overloaded (fake)", rid)
            await _json(ex, 529, body, rid)
        elif status >= 500:
            await _google_error(ex, 503, "UNAVAILABLE", "The service is unavailable (fake).", rid)
        else:
            await _google_error(ex, status, "INVALID_ARGUMENT", f"fake {status}", rid)

    async def _stream(
        self, ex: ClientExchange, events: list[bytes], faults: Faults, rid: str
    ) -> None:
        await ex.send_head(
            ResponseHead(
                200, [(b"content-type", b"text/event-stream"), (b"x-request-id", rid.encode())]
            )
        )
        if faults.slow_headers:
            await trio.sleep(faults.slow_headers)
        overloaded = {"type": "overloaded_error", "message": "Overloaded (fake, mid-stream)"}
        error = b"event: error\ndata: " + orjson.dumps({"type": "error", "error": overloaded})
        await send_paced(ex, events, faults, error + b"\n\n")


def predict_problem(body: bytes, betas: list[str], *, counting: bool) -> tuple[str, dict[str, Any]]:
    """Why Vertex would refuse this body ("" if it would not)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "Invalid JSON payload received.", {}
    if not isinstance(doc, dict):
        return "Invalid JSON payload received: expected an object.", {}
    if doc.get("anthropic_version") != ANTHROPIC_VERSION:
        return f"anthropic_version: must be {ANTHROPIC_VERSION}", doc
    if "model" in doc and not counting:
        return "model: Extra inputs are not permitted", doc
    rejected = bridge_rejects(doc, betas)
    if rejected is not None and rejected[0] == "field":
        return f"{rejected[1]}: Extra inputs are not permitted", doc
    if rejected is not None:
        return f"Unexpected value(s) `{rejected[1]}` for the `anthropic-beta` header.", doc
    return "", doc


async def _google_error(ex: ClientExchange, status: int, kind: str, message: str, rid: str) -> None:
    body = orjson.dumps({"error": {"code": status, "message": message, "status": kind}})
    await _json(ex, status, body, rid)


async def _oauth_error(ex: ClientExchange, error: str, description: str, rid: str) -> None:
    body = orjson.dumps({"error": error, "error_description": description})
    await _json(ex, 400, body, rid)


async def _json(
    ex: ClientExchange, status: int, body: bytes, rid: str, extra: Headers | None = None
) -> None:
    headers: Headers = [
        (b"content-type", b"application/json; charset=UTF-8"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", rid.encode()),
        *(extra or []),
    ]
    await respond(ex, ResponseHead(status, headers), body)
