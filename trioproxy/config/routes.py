"""``[[routes]]``: rules that send a kind of request to a chosen provider,
and the Claude Code agent definitions they recognise subagents by.

A rule::

    [[routes]]
    name = "review"                              # optional; default routes[N]
    match = { subagent = "reviewer" }            # every matcher given must hold
    provider = "gpt"
    model = "gpt-4o"                             # optional: the model asked of it
    fallbacks = ["anthropic"]                    # optional: tried after it

Matchers: ``subagent`` (an agent in ``routing.agents_dirs``), ``model`` (a
glob on the requested model), ``thinking`` (true/false), ``min_input_tokens``
(estimated from the body size), ``tools_include`` (a glob on tool names),
``caller``, ``header`` ("name=value", or "name" for present),
``request_class`` and ``agent_type`` (globs on what Claude Code's hint
headers say: ``x-claude-code-request-class``, ``x-claude-code-agent-type``;
a request without the header matches neither).

Subagents: Claude Code does not send an agent's name. A subagent's request
carries the body of its definition file (after the front matter, trimmed)
at the start of a system block, followed by Claude Code's own text (seen
with 2.1.330). So each agent is kept as (length, keyed digest of its
prompt), and a request is recognised by hashing that many leading
characters of its system blocks: one short hash per block and prompt
length, never the whole prompt. An agent whose prompt is edited is picked
up at the next reload (SIGHUP).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trioproxy.config.model import Route

AGENT_KEY = b"trioproxy/agent-prompt/v1"
MATCHERS = (
    "subagent",
    "model",
    "thinking",
    "min_input_tokens",
    "tools_include",
    "caller",
    "header",
    "request_class",
    "agent_type",
)
ACTION_KEYS = ("name", "match", "provider", "model", "fallbacks")
_FRONT = re.compile(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)", re.DOTALL)


def prompt_digest(text: str) -> bytes:
    return hmac.new(AGENT_KEY, text.encode(), hashlib.sha256).digest()


def load_agents(dirs: Sequence[str]) -> dict[str, str]:
    """Agent name -> its prompt (the file's body after the front matter,
    trimmed, as Claude Code sends it). The name is the front matter's
    ``name``, else the file's stem; the first directory that has it wins."""
    agents: dict[str, str] = {}
    for d in dirs:
        path = Path(d).expanduser()
        if not path.is_dir():
            raise ValueError(f"routing.agents_dirs: {d} is not a directory")
        for f in sorted(path.glob("*.md")):
            try:
                text = f.read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"routing.agents_dirs: cannot read {f}: {exc.strerror}") from None
            name, body = f.stem, text
            m = _FRONT.match(text)
            if m is not None:
                body = text[m.end() :]
                for line in m.group(1).splitlines():
                    key, sep, value = line.partition(":")
                    if sep and key.strip() == "name" and value.strip():
                        name = value.strip().strip("'\"")
            agents.setdefault(name, body.strip())
    return agents


def parse_routes(
    raw: object, providers: Sequence[str], agents: Mapping[str, str]
) -> tuple[Route, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
        raise ValueError("routes: expected [[routes]] tables")
    return tuple(_route(r, i, providers, agents) for i, r in enumerate(raw))


def _route(r: dict[str, Any], i: int, providers: Sequence[str], agents: Mapping[str, str]) -> Route:
    key = f"routes[{i}]"
    unknown = sorted(set(r) - set(ACTION_KEYS))
    if unknown:
        raise ValueError(f"{key}.{unknown[0]}: unknown key (known: {', '.join(ACTION_KEYS)})")
    name = r.get("name", key)
    provider = r.get("provider")
    if not isinstance(provider, str) or provider not in providers:
        raise ValueError(
            f"{key}.provider: {provider!r} is not a provider (known: {', '.join(providers)})"
        )
    fallbacks = r.get("fallbacks", [])
    if not isinstance(fallbacks, list) or not all(isinstance(f, str) for f in fallbacks):
        raise ValueError(f"{key}.fallbacks: expected a list of provider names")
    for f in fallbacks:
        if f not in providers:
            raise ValueError(f"{key}.fallbacks: {f!r} is not a provider")
    model = r.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise ValueError(f"{key}.model: expected a model name")
    match = r.get("match", {})
    if not isinstance(match, dict):
        raise ValueError(f"{key}.match: expected a table of matchers")
    bad = sorted(set(match) - set(MATCHERS))
    if bad:
        raise ValueError(f"{key}.match.{bad[0]}: unknown matcher (known: {', '.join(MATCHERS)})")
    subagent = _str(match, "subagent", key)
    prompt = None
    if subagent is not None:
        if subagent not in agents:
            raise ValueError(
                f"{key}.match.subagent: no agent named {subagent!r} in routing.agents_dirs"
                + (f" (found: {', '.join(sorted(agents))})" if agents else "")
            )
        text = agents[subagent]
        if not text:
            raise ValueError(f"{key}.match.subagent: agent {subagent!r} has an empty prompt")
        prompt = (len(text), prompt_digest(text))
    thinking = match.get("thinking")
    if thinking is not None and not isinstance(thinking, bool):
        raise ValueError(f"{key}.match.thinking: expected true or false")
    tokens = match.get("min_input_tokens")
    if tokens is not None and (
        not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1
    ):
        raise ValueError(f"{key}.match.min_input_tokens: expected a whole number >= 1")
    header = _str(match, "header", key)
    parsed_header = None
    if header is not None:
        hname, sep, hvalue = header.partition("=")
        if not hname.strip() or any(c in hname for c in " :\r\n"):
            raise ValueError(f'{key}.match.header: expected "name=value" or "name"')
        parsed_header = (hname.strip().lower().encode(), hvalue.strip().encode() if sep else None)
    return Route(
        name=str(name),
        provider=provider,
        model=model,
        fallbacks=tuple(f for f in fallbacks if f != provider),
        subagent=subagent,
        subagent_prompt=prompt,
        match_model=_str(match, "model", key),
        thinking=thinking,
        min_input_tokens=tokens,
        tools_include=_str(match, "tools_include", key),
        caller=_str(match, "caller", key),
        header=parsed_header,
        request_class=_str(match, "request_class", key),
        agent_type=_str(match, "agent_type", key),
    )


def _str(match: Mapping[str, Any], name: str, key: str) -> str | None:
    value = match.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"{key}.match.{name}: expected a non-empty string")
    return value
