"""What AWS checks of a signed request, for the Bedrock fake (pure but
for botocore, which recomputes the signature exactly as AWS does).

The fake "issues" credentials: any access key id that starts with
``FAKE_PREFIXES`` has the secret (and, for temporary ``ASIA`` keys, the
session token) that ``issued`` derives from it with a key only the fake
and the tests know. So a test's ``credential_process`` can mint fresh,
valid credentials, and a wrong secret fails as it would on AWS.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import re
import time
from dataclasses import dataclass

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

FAKE_PREFIXES = ("AKIAFAKE", "ASIAFAKE")
_MINT = b"trioproxy-fake-aws-issuer"
SKEW_S = 300  # AWS refuses a signature more than 5 minutes off its clock
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=([A-Z0-9]+)/(\d{8})/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request,"
    r"\s*SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$"
)


@dataclass(frozen=True, slots=True)
class Refusal:
    """How AWS says no: its error type, status and words."""

    errortype: str
    status: int
    message: str


def issued(access_key: str) -> tuple[str, str | None]:
    """(secret, session token or None) of a key id the fake issued."""
    digest = hmac.new(_MINT, access_key.encode(), hashlib.sha256).digest()
    secret = base64.b64encode(digest).decode()[:40]
    token = None
    if access_key.startswith("ASIA"):
        token = "FakeSessionToken/" + hashlib.sha256(digest).hexdigest()[:32]
    return secret, token


def verify(
    method: str,
    target: str,
    headers: dict[str, str],
    body: bytes,
    *,
    region: str,
    service: str,
    now: float | None = None,
) -> Refusal | None:
    """None when the request is signed as AWS requires; else why not.
    ``headers``: lower-case names (the first value of each)."""
    m = _AUTH.match(headers.get("authorization", ""))
    if m is None:
        return Refusal("MissingAuthenticationTokenException", 403, "Missing Authentication Token")
    key_id, day, scope_region, scope_service, signed, signature = m.groups()
    if not key_id.startswith(FAKE_PREFIXES):
        return Refusal(
            "UnrecognizedClientException",
            403,
            "The security token included in the request is invalid.",
        )
    if scope_region != region or scope_service != service:
        return Refusal(
            "InvalidSignatureException",
            403,
            f"Credential should be scoped to a valid region and service ({region}/{service}).",
        )
    amz_date = headers.get("x-amz-date", "")
    try:
        stamp = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        return Refusal("IncompleteSignatureException", 403, "x-amz-date is missing or malformed.")
    if abs((time.time() if now is None else now) - stamp) > SKEW_S or amz_date[:8] != day:
        return Refusal("InvalidSignatureException", 403, "Signature expired or not yet current.")
    names = signed.split(";")
    if "host" not in names or "x-amz-date" not in names or any(n not in headers for n in names):
        return Refusal("InvalidSignatureException", 403, "SignedHeaders must include host.")
    secret, token = issued(key_id)
    if token is not None and headers.get("x-amz-security-token") != token:
        return Refusal(
            "UnrecognizedClientException",
            403,
            "The security token included in the request is invalid.",
        )
    request = AWSRequest(
        method=method,
        url=f"http://{headers['host']}{target}",
        data=body,
        headers={n: headers[n] for n in names},
    )
    request.context["timestamp"] = amz_date
    auth = SigV4Auth(Credentials(key_id, secret, token), service, region)
    canonical = auth.canonical_request(request)
    expected = auth.signature(auth.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, signature):
        return Refusal(
            "InvalidSignatureException",
            403,
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method.",
        )
    return None
