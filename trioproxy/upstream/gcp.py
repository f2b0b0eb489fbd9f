"""Google Cloud access tokens for Vertex AI providers, with google-auth.

A provider's ``credentials_file`` (a service account's JSON key) or, without
one, Application Default Credentials: ``GOOGLE_APPLICATION_CREDENTIALS``
(a key, or a workload identity federation configuration), gcloud's own
application-default login, the metadata server of a Google Cloud VM or
GKE pod. google-auth signs a JWT and calls the token endpoint (or the
metadata server) synchronously, so it is only ever called in a worker
thread (``GoogleCredentials.resolve``); the token it gives is kept in
memory and refreshed ``REFRESH_BEFORE_S`` before it expires, by the same
watcher as AWS's (routing/clouds.py). A request only reads the token.

Nothing here logs or returns a token or a key; a failure is described by
its kind and the setting to check.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import google.auth
import google.auth.exceptions
import urllib3
from google.auth.transport.urllib3 import Request
from google.oauth2 import service_account

from trioproxy.config.model import ProviderConfig
from trioproxy.proto.events import RequestHead
from trioproxy.upstream.aws import Signer
from trioproxy.vertex.request import SCOPES

REFRESH_BEFORE_S = 5 * 60  # a token this close to its expiry is refreshed
_ADC_FILE = Path(".config/gcloud/application_default_credentials.json")


class GoogleCredentials:
    """One Vertex provider's access token: fetched in a thread, read on
    the loop. ``problem`` says why there is none (empty: there is)."""

    def __init__(self, credentials_file: str = "") -> None:
        self.credentials_file = credentials_file
        self._source: Any = None  # google-auth's Credentials, made in a thread
        self._http = urllib3.PoolManager(num_pools=2, timeout=urllib3.Timeout(total=20))
        self.token: str | None = None
        self.expires_at: float | None = None  # wall time
        self.refreshed_at: float | None = None
        self.problem = ""
        self.failures = 0

    def resolve(self) -> None:
        """Blocking (google-auth): call in a worker thread. Refreshes the
        token when it is missing or within REFRESH_BEFORE_S of its expiry;
        keeps the last one when a refresh fails and it has not expired."""
        try:
            if self._source is None:
                if self.credentials_file:
                    self._source = service_account.Credentials.from_service_account_file(
                        self.credentials_file, scopes=list(SCOPES)
                    )
                else:
                    self._source, _ = google.auth.default(scopes=list(SCOPES))
            expires = self.expires_at
            if self.token is None or expires is None or expires - time.time() < REFRESH_BEFORE_S:
                self._source.refresh(Request(self._http))
                token = self._source.token
                if not token:
                    raise google.auth.exceptions.RefreshError("the token endpoint gave no token")
                self.token = token
                expiry = self._source.expiry
                self.expires_at = (
                    expiry.replace(tzinfo=datetime.UTC).timestamp()
                    if isinstance(expiry, datetime.datetime)
                    else None
                )
                self.refreshed_at = time.time()
        except (google.auth.exceptions.GoogleAuthError, OSError, ValueError, KeyError) as exc:
            self.failures += 1
            self.problem = _described(exc)
            if self.expires_at is not None and self.expires_at <= time.time():
                self.token = None  # expired: nothing usable is left
            return
        self.problem = ""
        self.failures = 0

    @property
    def usable(self) -> bool:
        return self.token is not None

    def same_source(self, provider: ProviderConfig) -> bool:
        """Whether a reloaded ``provider`` takes its credentials from here."""
        return provider.kind == "vertex" and provider.credentials_file == self.credentials_file

    def signer(self, provider: ProviderConfig) -> Signer | None:
        del provider
        return None if self.token is None else partial(with_token, token=self.token)

    def state(self) -> dict[str, object]:
        """For /admin/providers: never the token, only where things stand."""
        return {
            "valid": self.token is not None,
            "expires_at": self.expires_at,
            "refreshed_at": self.refreshed_at,
            "problem": self.problem,
            "failures": self.failures,
        }


def with_token(head: RequestHead, body: bytes, *, token: str) -> RequestHead:
    """``head`` with ``authorization: Bearer <token>`` (the body is not
    signed: the token is the credential)."""
    del body
    headers = [(n, v) for n, v in head.headers if n != b"authorization"]
    headers.append((b"authorization", b"Bearer " + token.encode()))
    return RequestHead(
        head.method, head.target, headers, head.http_version, head.authority, head.scheme
    )


def credential_source(credentials_file: str, env: Mapping[str, str]) -> str:
    """Where google-auth would find credentials, from the files and the
    environment only (for check-config: no token endpoint is called).
    Raises LookupError when the given file cannot be a credential."""
    path = credentials_file or env.get("GOOGLE_APPLICATION_CREDENTIALS", "")
    if path:
        kind = _key_file_type(path)
        where = "credentials_file" if credentials_file else "GOOGLE_APPLICATION_CREDENTIALS"
        return f"{where} ({kind})"
    home = env.get("HOME", "")
    if home and (Path(home) / _ADC_FILE).is_file():
        return "gcloud application-default login"
    return "the metadata server (not checked here: only Google Cloud has it)"


def _key_file_type(path: str) -> str:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise LookupError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise LookupError(f"{path} is not JSON") from None
    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind == "service_account":
        for key in ("client_email", "private_key", "token_uri"):
            if not doc.get(key):
                raise LookupError(f"{path}: a service account key without {key}")
        return f"service account {doc['client_email']}"
    if kind in ("external_account", "authorized_user", "impersonated_service_account"):
        return str(kind).replace("_", " ")
    raise LookupError(f"{path}: not a Google credentials file (type {kind!r})")


def _described(exc: BaseException) -> str:
    """google-auth's messages name files and endpoints; a token endpoint's
    refusal may echo its JSON, which carries no secret of ours."""
    text = str(exc).strip() or type(exc).__name__
    text = " ".join(text.split())
    return text if len(text) < 300 else text[:297] + "..."
