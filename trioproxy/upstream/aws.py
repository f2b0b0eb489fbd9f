"""AWS credentials and SigV4 signing for Bedrock providers, with botocore.

botocore resolves credentials through AWS's standard chain: the
environment, the shared config and credentials files (profiles, the SSO
cache, ``credential_process``), web identity, the ECS and instance
metadata endpoints. Each of those may read files, run a program or call an
endpoint, so botocore is only ever called in a worker thread
(``AwsCredentials.resolve``), and what it gives is kept in memory as frozen
credentials (access key, secret, session token): botocore refreshes
temporary ones from ``ADVISORY_S`` before they expire, and the watcher asks
it again every ``upstream.credentials_check_s``, so a request never waits on it.

Signing is then a pure function of the request head, its body and those
frozen credentials (``sign``), done on the loop once per attempt, where the
head is final: botocore's ``SigV4Auth`` hashes and HMACs, and with frozen
credentials it has nothing to refresh or read.

Nothing here logs or returns a secret; a failure is described by its kind
and the setting to check.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Mapping
from functools import partial

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials
from botocore.exceptions import BotoCoreError, ClientError, ProfileNotFound
from botocore.session import Session

from trioproxy.bedrock.request import SIGNING_NAME
from trioproxy.config.model import ProviderConfig
from trioproxy.proto.events import RequestHead

Signer = Callable[[RequestHead, bytes], RequestHead]

log = logging.getLogger("trioproxy.aws")

ADVISORY_S = 15 * 60  # botocore refreshes temporary credentials this long before expiry
# Headers the signature covers besides host and the x-amz-* ones botocore adds.
SIGNED = (b"content-type", b"accept", b"content-length")


class AwsCredentials:
    """One Bedrock provider's credentials: resolved in a thread, read on the
    loop. ``problem`` says why there are none (empty: there are)."""

    def __init__(self, profile: str = "") -> None:
        self.profile = profile
        self._source: Credentials | None = None  # botocore's, maybe refreshable
        self.frozen: ReadOnlyCredentials | None = None
        self.expires_at: float | None = None  # wall time; None: static credentials
        self.refreshed_at: float | None = None
        self.problem = ""
        self.failures = 0  # resolutions that failed, in a row

    def resolve(self) -> None:
        """Blocking (botocore): call in a worker thread. Keeps the last good
        credentials when a refresh fails and they have not expired."""
        try:
            if self._source is None:
                session = Session(profile=self.profile or None)
                source = session.get_credentials()
                if source is None:
                    raise LookupError(
                        "no AWS credentials found (environment, shared files"
                        + (f" for profile {self.profile}" if self.profile else "")
                        + ", web identity, container or instance metadata)"
                    )
                self._source = source
            frozen = self._source.get_frozen_credentials()
            if not frozen.access_key or not frozen.secret_key:
                raise LookupError("the AWS credentials found are incomplete")
        except (BotoCoreError, ClientError, ProfileNotFound, LookupError, OSError) as exc:
            self.failures += 1
            self.problem = _described(exc)
            if self.expires_at is not None and self.expires_at <= time.time():
                self.frozen = None  # expired: nothing usable is left
            return
        self.frozen = frozen
        expiry = getattr(self._source, "_expiry_time", None)
        self.expires_at = expiry.timestamp() if isinstance(expiry, datetime.datetime) else None
        self.refreshed_at = time.time()
        self.problem = ""
        self.failures = 0

    @property
    def usable(self) -> bool:
        return self.frozen is not None

    def same_source(self, provider: ProviderConfig) -> bool:
        """Whether a reloaded ``provider`` takes its credentials from here."""
        return provider.kind == "bedrock" and provider.aws_profile == self.profile

    def signer(self, provider: ProviderConfig) -> Signer | None:
        if self.frozen is None:
            return None
        return partial(sign, credentials=self.frozen, region=provider.region, service=SIGNING_NAME)

    def state(self) -> dict[str, object]:
        """For /admin/providers: never a key, only where things stand."""
        return {
            "valid": self.frozen is not None,
            "expires_at": self.expires_at,
            "refreshed_at": self.refreshed_at,
            "problem": self.problem,
            "failures": self.failures,
        }


def sign(
    head: RequestHead,
    body: bytes,
    credentials: ReadOnlyCredentials,
    *,
    region: str,
    service: str,
) -> RequestHead:
    """``head`` with SigV4's ``authorization``, ``x-amz-date`` and (for
    temporary credentials) ``x-amz-security-token``, signed over the host,
    the method, the path, the query, ``SIGNED`` headers and the body."""
    host = head.authority.decode("latin-1")
    signed = {n.decode(): v.decode("latin-1") for n, v in head.headers if n in SIGNED}
    signed["host"] = host
    request = AWSRequest(
        method=head.method.decode(),
        url=f"{head.scheme.decode()}://{host}{head.target.decode('latin-1')}",
        data=body,
        headers=signed,
    )
    SigV4Auth(credentials, service, region).add_auth(request)
    added = [
        (name.lower().encode(), value.encode() if isinstance(value, str) else value)
        for name, value in request.headers.items()
        if name.lower() in ("authorization", "x-amz-date", "x-amz-security-token")
    ]
    unsigned_kept = [(n, v) for n, v in head.headers if n not in (b"authorization",)]
    return RequestHead(
        method=head.method,
        target=head.target,
        headers=unsigned_kept + added,
        http_version=head.http_version,
        authority=head.authority,
        scheme=head.scheme,
    )


# Keys of a profile that give credentials, and what each is called.
_PROFILE_SOURCES = (
    ("aws_access_key_id", "static keys"),
    ("credential_process", "credential_process"),
    ("sso_session", "SSO"),
    ("sso_start_url", "SSO"),
    ("role_arn", "an assumed role"),
    ("web_identity_token_file", "web identity"),
)


def credential_source(profile: str, env: Mapping[str, str]) -> str:
    """Where botocore's chain would find credentials, from the environment
    and the shared files only (for check-config: no endpoint is called, no
    program run). Raises LookupError when nothing there gives any."""
    if not profile and env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return "the environment (AWS_ACCESS_KEY_ID)"
    name = profile or env.get("AWS_PROFILE") or "default"
    try:
        scoped = Session(profile=profile or None).get_scoped_config()
    except ProfileNotFound:
        raise LookupError(f"AWS profile {name!r} is in neither shared file") from None
    for key, what in _PROFILE_SOURCES:
        if scoped.get(key):
            return f"profile {name}: {what}"
    if env.get("AWS_WEB_IDENTITY_TOKEN_FILE") and env.get("AWS_ROLE_ARN"):
        return "web identity (AWS_WEB_IDENTITY_TOKEN_FILE)"
    if env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") or env.get(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI"
    ):
        return "the container credentials endpoint"
    if env.get("AWS_EC2_METADATA_DISABLED", "").lower() != "true":
        return "instance metadata (not checked here: only an EC2 instance has it)"
    raise LookupError(
        "no AWS credentials: none in the environment, "
        f"profile {name!r} gives none, no web identity or container endpoint, "
        "and instance metadata is disabled"
    )


def _described(exc: BaseException) -> str:
    """What went wrong, for the log and /admin/providers. botocore's
    messages name settings and files, never secret values."""
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) < 300 else text[:297] + "..."
