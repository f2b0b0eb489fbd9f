"""Building the upstream request head from the client's (forwarding rules)."""

from __future__ import annotations

from trioproxy.config.model import Credential, Origin
from trioproxy.errors import RequestTooLarge
from trioproxy.proto.events import RequestHead
from trioproxy.proto.headers import content_length, request_headers_for_upstream
from trioproxy.rules.auth import inject_credential
from trioproxy.rules.transform import drop_betas

CHAT_PATH = b"/chat/completions"  # appended to an OpenAI-style base URL (".../v1")
# What a cloud gets from the proxy instead: credentials, and the type headers.
_CLOUD_OWN = frozenset(
    {b"authorization", b"x-api-key", b"content-type", b"accept", b"x-amz-security-token"}
)


def upstream_head(
    head: RequestHead,
    origin: Origin,
    *,
    upstream_is_h2: bool,
    credential: Credential | None = None,
    body_length: int | None = None,
    drop_betas: frozenset[bytes] = frozenset(),
    identity: bool = False,
    add_beta: bytes = b"",
    chat: bool = False,
    cloud_target: bytes | None = None,
    cloud_headers: tuple[tuple[bytes, bytes], ...] = (),
    traceparent: bytes | None = None,
) -> RequestHead:
    """Method, path and query byte-exact (prefixed by the origin's base path);
    end-to-end headers verbatim and in order; `host` set to the upstream's.
    With a ``credential`` (inject mode) the caller's own credentials are
    replaced by it; without, they pass through untouched. ``body_length``:
    the body was rewritten for this provider and is sent with this length.
    ``drop_betas``: `anthropic-beta` values this provider rejects.
    ``identity``: ask for an uncompressed response (the proxy must read it
    to put scrubbed values back). ``add_beta``: an `anthropic-beta` value
    the credential needs, added unless the client sent it. ``chat``: the
    provider speaks Chat Completions: the request goes to its
    ``/chat/completions``, without Anthropic's own headers. ``cloud_target``:
    the path a cloud provider takes the request at (its model in it), sent
    as JSON without Anthropic's headers or the caller's credentials, with
    ``cloud_headers`` instead (what the cloud's dialect asks for: an
    ``accept``, the betas it takes); the cloud's credential is added once
    the head is final. ``traceparent`` (tracing on) replaces the client's."""
    headers = request_headers_for_upstream(head.headers, upstream_is_h2=upstream_is_h2)
    if credential is not None:
        headers = inject_credential(headers, credential.header, credential.value)
    if body_length is not None:
        headers = [(n, v) for n, v in headers if n != b"content-length"]
        headers.append((b"content-length", str(body_length).encode()))
    if drop_betas:
        headers = _without_betas(headers, drop_betas)
    if add_beta:
        headers = _with_beta(headers, add_beta)
    if identity:
        headers = [(n, v) for n, v in headers if n != b"accept-encoding"]
        headers.append((b"accept-encoding", b"identity"))
    if chat:
        headers = [(n, v) for n, v in headers if not n.startswith(b"anthropic-")]
    if cloud_target is not None:
        headers = [
            (n, v) for n, v in headers if not n.startswith(b"anthropic-") and n not in _CLOUD_OWN
        ]
        headers.append((b"content-type", b"application/json"))
        headers.extend(cloud_headers)
    if traceparent is not None:  # the proxy's attempt is the upstream's parent now
        headers = [(n, v) for n, v in headers if n != b"traceparent"]
        headers.append((b"traceparent", traceparent))
    if not upstream_is_h2:
        headers.insert(0, (b"host", origin.authority))
    if cloud_target is not None:
        target = origin.base_path.encode() + cloud_target
    elif chat:
        target = origin.base_path.encode() + CHAT_PATH
    else:
        target = origin.base_path.encode() + head.target if origin.base_path else head.target
    return RequestHead(
        method=head.method,
        target=target,
        headers=headers,
        http_version=b"2" if upstream_is_h2 else b"1.1",
        authority=origin.authority,
        scheme=origin.scheme.encode(),
    )


def check_declared_length(head: RequestHead, max_body_bytes: int) -> int | None:
    """The declared Content-Length (None if the body is chunked or absent);
    413 before anything goes upstream when it is already over the limit."""
    declared = content_length(head.headers)
    if declared is not None and declared > max_body_bytes:
        raise RequestTooLarge(
            f"request body of {declared} bytes exceeds the proxy's limit of {max_body_bytes} bytes"
        )
    return declared


def _without_betas(
    headers: list[tuple[bytes, bytes]], drop: frozenset[bytes]
) -> list[tuple[bytes, bytes]]:
    out = []
    for name, value in headers:
        if name == b"anthropic-beta":
            value = drop_betas(value, drop)
            if not value:
                continue
        out.append((name, value))
    return out


def _with_beta(headers: list[tuple[bytes, bytes]], beta: bytes) -> list[tuple[bytes, bytes]]:
    values = [v for n, v in headers if n == b"anthropic-beta"]
    if any(beta == item.strip() for v in values for item in v.split(b",")):
        return headers
    if not values:
        return [*headers, (b"anthropic-beta", beta)]
    out, done = [], False
    for name, value in headers:
        if name == b"anthropic-beta" and not done:
            value, done = value + b"," + beta, True
        out.append((name, value))
    return out
