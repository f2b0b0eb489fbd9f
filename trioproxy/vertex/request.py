"""A Messages request as Claude on Vertex AI takes it (pure), edited at the
byte level like Bedrock's (bedrock/request.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import orjson

from trioproxy.bedrock.request import Bridge, bridged

ANTHROPIC_VERSION = "vertex-2023-10-16"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


def model_path(project: str, region: str, model: str, verb: str) -> bytes:
    """``/v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:{verb}``."""
    return (
        f"/v1/projects/{quote(project, safe='')}/locations/{quote(region, safe='')}"
        f"/publishers/anthropic/models/{quote(model, safe='@')}:{verb}"
    ).encode()


def predict_path(project: str, region: str, model: str, *, stream: bool) -> bytes:
    return model_path(project, region, model, "streamRawPredict" if stream else "rawPredict")


def count_tokens_path(project: str, region: str) -> bytes:
    return model_path(project, region, "count-tokens", "rawPredict")


def predict_body(
    raw: bytes,
    doc: dict[str, Any],
    betas: Iterable[str],
    bridge: tuple[Bridge, ...],
    *,
    keep_model: bool = False,
) -> tuple[bytes, list[str], list[str]]:
    """(the body for rawPredict, the betas to send as the header, what the
    bridge removed). ``keep_model``: token counting names the model in the
    body."""
    head = b'"anthropic_version":' + orjson.dumps(ANTHROPIC_VERSION)
    fixed = {"anthropic_version"} | (set() if keep_model else {"model"})
    return bridged(raw, doc, list(betas), bridge, fixed=fixed, head=head)
