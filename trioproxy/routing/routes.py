"""Which ``[[routes]]`` rule a request matches (pure): the first one whose
every matcher holds. See config/routes.py for the rules and for how a
subagent is recognised."""

from __future__ import annotations

import fnmatch
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from trioproxy.config.model import ProviderConfig, Route, RoutingConfig
from trioproxy.config.routes import prompt_digest
from trioproxy.proto.events import Headers

BYTES_PER_TOKEN = 4  # the estimate behind min_input_tokens
REQUEST_CLASS = b"x-claude-code-request-class"  # Claude Code's hint headers
AGENT_TYPE = b"x-claude-code-agent-type"


@dataclass
class RequestFacts:
    """What the matchers look at, each worked out at most once."""

    doc: dict[str, Any]
    body_len: int
    caller: str
    headers: Headers
    model: str  # the requested model, aliases resolved
    _prefixes: dict[int, list[bytes]] = field(default_factory=dict)

    def system_texts(self) -> list[str]:
        system = self.doc.get("system")
        if isinstance(system, str):
            return [system]
        if not isinstance(system, list):
            return []
        return [b["text"] for b in system if isinstance(b, dict) and isinstance(b.get("text"), str)]

    def prefix_digests(self, length: int) -> list[bytes]:
        """The digest of each system block's first ``length`` characters."""
        got = self._prefixes.get(length)
        if got is None:
            got = self._prefixes[length] = [
                prompt_digest(t[:length]) for t in self.system_texts() if len(t) >= length
            ]
        return got


def choose(routes: Sequence[Route], facts: RequestFacts) -> Route | None:
    for route in routes:
        if matches(route, facts):
            return route
    return None


def matches(r: Route, f: RequestFacts) -> bool:
    if r.caller is not None and f.caller != r.caller:
        return False
    for glob, name in ((r.request_class, REQUEST_CLASS), (r.agent_type, AGENT_TYPE)):
        if glob is not None:
            got = next((v for n, v in f.headers if n == name), None)
            if got is None or not fnmatch.fnmatchcase(got.decode("latin-1").strip(), glob):
                return False
    if r.header is not None:
        name, value = r.header
        got = next((v for n, v in f.headers if n == name), None)
        if got is None or (value is not None and got.strip() != value):
            return False
    if r.match_model is not None and not fnmatch.fnmatchcase(f.model, r.match_model):
        return False
    if r.thinking is not None:
        thinking = f.doc.get("thinking")
        on = isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")
        if on != r.thinking:
            return False
    if r.min_input_tokens is not None and f.body_len // BYTES_PER_TOKEN < r.min_input_tokens:
        return False
    if r.tools_include is not None:
        names = [t.get("name") for t in f.doc.get("tools") or [] if isinstance(t, dict)]
        if not any(isinstance(n, str) and fnmatch.fnmatchcase(n, r.tools_include) for n in names):
            return False
    if r.subagent_prompt is not None:
        length, digest = r.subagent_prompt
        if not any(hmac.compare_digest(d, digest) for d in f.prefix_digests(length)):
            return False
    return True


def model_for(
    provider: ProviderConfig, route: Route | None, requested: str, routing: RoutingConfig
) -> str:
    """The model ``provider`` is asked for: the rule's when it routed there,
    else the requested one through the aliases and the provider's table."""
    if route is not None and route.model and provider.name == route.provider:
        return route.model
    return provider.map_model(routing.resolve_alias(requested))
