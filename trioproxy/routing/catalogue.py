"""The models the proxy can serve, as ``GET /v1/models`` lists them (pure).

Claude Code asks for them (``CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1``:
``GET /v1/models?limit=1000`` with a 3 s limit) and offers them in
``/model``; an OpenAI client asks for them without ``anthropic-version``.
The proxy answers from its configuration, in memory, never from an
upstream (whose list is not what the proxy serves): the aliases, the model
names the providers' ``models`` tables map (exact names; a glob names no
model), and the models ``[[routes]]`` match by exact name. A caller with a
model allowlist sees only what it may ask for.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from trioproxy.config.model import RoutingConfig

CREATED = "1970-01-01T00:00:00Z"  # the API's field; the proxy knows no release dates
MAX_LIMIT = 1000  # the API's own cap on limit
DEFAULT_LIMIT = 20  # the API's default
_GLOB = re.compile(r"[*?\[]")
_VERSION = re.compile(r"^\d+$")


@dataclass(frozen=True, slots=True)
class Model:
    id: str
    display_name: str
    serves: str  # what the proxy asks for when this is requested (an alias's model)


def catalogue(routing: RoutingConfig) -> list[Model]:
    """Every model a client may name, once each, aliases first."""
    out: dict[str, Model] = {}
    for short, full in routing.aliases:
        out.setdefault(short, Model(short, f"{display_name(full)} ({short})", full))
    names: list[str] = []
    for p in routing.providers:
        if p.enabled:
            names += [pattern for pattern, _ in p.models]
    names += [r.match_model for r in routing.routes if r.match_model]
    for name in names:
        if not _GLOB.search(name):
            out.setdefault(name, Model(name, display_name(name), name))
    return list(out.values())


def display_name(model: str) -> str:
    """``claude-opus-5-5`` -> ``Claude Opus 5.5``; other names as they are."""
    parts = model.split("-")
    if not parts or parts[0] != "claude":
        return model
    words: list[str] = []
    version: list[str] = []
    for part in parts:
        if _VERSION.match(part) and len(part) <= 2:
            version.append(part)
        elif version or (len(part) == 8 and part.isdigit()):
            break  # a date stamp or anything after the version
        else:
            words.append(part.capitalize())
    return " ".join(words + ([".".join(version)] if version else []))


def visible(models: list[Model], allowed: Callable[[str], bool]) -> list[Model]:
    """The models ``allowed`` lets a caller ask for (judged by what each serves)."""
    return [m for m in models if allowed(m.serves)]


def anthropic_page(models: list[Model], query: dict[str, str]) -> bytes:
    """The Models API's list: ``limit``, ``after_id`` and ``before_id`` as
    the API pages it."""
    try:
        limit = max(1, min(MAX_LIMIT, int(query.get("limit", DEFAULT_LIMIT))))
    except ValueError:
        limit = DEFAULT_LIMIT
    ids = [m.id for m in models]
    lower, end = 0, len(models)
    if query.get("after_id") in ids:
        lower = ids.index(query["after_id"]) + 1
    backwards = query.get("before_id") in ids
    if backwards:
        end = ids.index(query["before_id"])
    start = max(lower, end - limit) if backwards else lower
    page = models[start:end][:limit]
    # has_more: more in the direction paged (before the page when paging back)
    more = start > lower if backwards else start + len(page) < end
    return orjson.dumps(
        {
            "data": [anthropic_model(m) for m in page],
            "has_more": more,
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
        }
    )


def anthropic_model(m: Model) -> dict[str, str]:
    return {"type": "model", "id": m.id, "display_name": m.display_name, "created_at": CREATED}


def openai_list(models: list[Model]) -> bytes:
    return orjson.dumps(
        {
            "object": "list",
            "data": [
                {"id": m.id, "object": "model", "created": 0, "owned_by": "trioproxy"}
                for m in models
            ],
        }
    )


def openai_model(m: Model) -> bytes:
    return orjson.dumps({"id": m.id, "object": "model", "created": 0, "owned_by": "trioproxy"})


GEOGRAPHIES = ("us", "eu", "apac", "global")  # Bedrock's cross-region profile prefixes
_ARN = "arn:aws:bedrock:{region}:000000000000:inference-profile/{id}"


def bedrock_profiles(models: list[Model], region: str = "us-east-1") -> list[dict[str, object]]:
    """Each Claude model of the catalogue as Bedrock's system-defined
    inference profiles, one per geography (``us.anthropic.claude-opus-5-5``):
    what a Bedrock-format client looks its model up in."""
    out: list[dict[str, object]] = []
    for m in models:
        if not m.id.startswith("claude"):
            continue
        for geo in GEOGRAPHIES:
            pid = f"{geo}.anthropic.{m.id}"
            out.append(
                {
                    "inferenceProfileName": f"{geo.upper()} {m.display_name}",
                    "description": f"{m.display_name}, served by trioproxy",
                    "inferenceProfileArn": _ARN.format(region=region, id=pid),
                    "inferenceProfileId": pid,
                    "models": [
                        {"modelArn": f"arn:aws:bedrock:{region}::foundation-model/anthropic.{m.id}"}
                    ],
                    "status": "ACTIVE",
                    "type": "SYSTEM_DEFINED",
                }
            )
    return out
