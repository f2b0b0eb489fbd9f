"""[[routes]]: parsing and check-config errors, every matcher, first match
wins, and a subagent recognised from its definition file the way Claude
Code 2.1.330 sends it (the prompt at the start of a system block, its own
text after)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from trioproxy.config import ConfigError, effective_settings, load_config
from trioproxy.routing.routes import RequestFacts, choose

AGENT = "---\nname: reviewer\ndescription: Reviews code\ntools: Read\n---\n\nYou are a meticulous code reviewer.\nLook for bugs first.\n\nThen style.\n"
PROMPT = "You are a meticulous code reviewer.\nLook for bugs first.\n\nThen style."
PROVIDERS = [
    {"name": "anthropic", "base_url": "https://api.anthropic.com"},
    {"name": "gpt", "base_url": "https://api.openai.com/v1", "kind": "openai"},
    {"name": "local", "base_url": "http://127.0.0.1:11434/v1", "kind": "openai"},
]


def config(tmp_path: Path, routes: list[dict[str, Any]]) -> Any:
    agents = tmp_path / "agents"
    agents.mkdir(exist_ok=True)
    (agents / "reviewer.md").write_text(AGENT)
    (agents / "plain.md").write_text("Just a prompt, no front matter.\n")
    return load_config(
        env={},
        overrides={
            "providers": PROVIDERS,
            "routes": routes,
            "routing.agents_dirs": str(agents),
        },
    )


def facts(
    doc: dict[str, Any], *, caller: str = "-", headers: Any = (), size: int = 100
) -> RequestFacts:
    model = str(doc.get("model", "claude-sonnet-4-6"))
    return RequestFacts(doc, size, caller, list(headers), model)


def subagent_request() -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-6",
        "system": [
            {
                "type": "text",
                "text": "x-anthropic-billing-header: cc_version=2.1.330.e58; cc_is_subagent=true;",
            },
            {
                "type": "text",
                "text": "You are a Claude agent, built on Anthropic's Claude Agent SDK.",
            },
            {
                "type": "text",
                "text": PROMPT + "\n\nMessages from the agent that launched you — your task ...",
                "cache_control": {"type": "ephemeral"},
            },
        ],
        "messages": [{"role": "user", "content": "review"}],
    }


def test_each_matcher_and_first_match_wins(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        [
            {
                "name": "review",
                "match": {"subagent": "reviewer"},
                "provider": "gpt",
                "model": "gpt-4o",
            },
            {"name": "plain", "match": {"subagent": "plain"}, "provider": "local"},
            {"name": "haiku", "match": {"model": "claude-haiku-*"}, "provider": "local"},
            {"name": "think", "match": {"thinking": True}, "provider": "anthropic"},
            {"name": "long", "match": {"min_input_tokens": 1000}, "provider": "gpt"},
            {"name": "search", "match": {"tools_include": "web_search*"}, "provider": "anthropic"},
            {
                "name": "ci",
                "match": {"caller": "ci", "header": "x-job=nightly"},
                "provider": "local",
            },
            {"name": "any-job", "match": {"header": "x-job"}, "provider": "gpt"},
        ],
    )
    routes = cfg.routing.routes

    def route(f: RequestFacts) -> str | None:
        r = choose(routes, f)
        return None if r is None else r.name

    base = {"model": "claude-sonnet-4-6", "messages": []}
    assert route(facts(subagent_request())) == "review"
    main_agent = subagent_request()
    main_agent["system"][2]["text"] = "You are an agent working with the user ..."
    assert route(facts(main_agent)) is None
    assert (
        route(
            facts(
                {
                    **base,
                    "system": [{"type": "text", "text": "Just a prompt, no front matter. More."}],
                }
            )
        )
        == "plain"
    )
    assert route(facts({**base, "model": "claude-haiku-4-5"})) == "haiku"
    assert route(facts({**base, "thinking": {"type": "enabled", "budget_tokens": 100}})) == "think"
    assert route(facts(base, size=4000)) == "long" and route(facts(base, size=3996)) is None
    assert (
        route(facts({**base, "tools": [{"type": "web_search_20250305", "name": "web_search"}]}))
        == "search"
    )
    assert route(facts(base, caller="ci", headers=[(b"x-job", b"nightly")])) == "ci"
    assert route(facts(base, caller="ci", headers=[(b"x-job", b"weekly")])) == "any-job"
    assert route(facts(base, caller="bob", headers=[(b"x-job", b"nightly")])) == "any-job"
    assert route(facts(base)) is None
    # A subagent that also asks for Haiku: the earlier rule wins.
    assert route(facts({**subagent_request(), "model": "claude-haiku-4-5"})) == "review"


def test_check_config_prints_the_rules_in_order(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        [
            {
                "match": {"subagent": "reviewer"},
                "provider": "gpt",
                "model": "gpt-4o",
                "fallbacks": ["anthropic"],
            },
            {"name": "cheap", "match": {"model": "claude-haiku-*"}, "provider": "local"},
        ],
    )
    rows = [r for r in effective_settings(cfg) if r[0].startswith("routes[")]
    assert rows == [
        ("routes[0]", "routes[0]", "subagent=reviewer -> gpt (model gpt-4o), then anthropic"),
        ("routes[1]", "cheap", "model=claude-haiku-* -> local"),
    ]


@pytest.mark.parametrize(
    ("route", "says"),
    [
        ({"provider": "nope"}, "routes[0].provider: 'nope' is not a provider"),
        ({"provider": "gpt", "fallbacks": ["nope"]}, "routes[0].fallbacks"),
        ({"provider": "gpt", "match": {"subagent": "ghost"}}, "no agent named 'ghost'"),
        (
            {"provider": "gpt", "match": {"colour": "red"}},
            "routes[0].match.colour: unknown matcher",
        ),
        ({"provider": "gpt", "match": {"thinking": "yes"}}, "routes[0].match.thinking"),
        ({"provider": "gpt", "match": {"header": "a b=c"}}, "routes[0].match.header"),
        ({"provider": "gpt", "when": {}}, "routes[0].when: unknown key"),
    ],
)
def test_bad_rules_are_refused_naming_the_key(
    tmp_path: Path, route: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigError) as info:
        config(tmp_path, [route])
    assert says in str(info.value)


def test_claude_code_hint_headers_route_requests(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        [
            {"name": "cheap", "match": {"request_class": "auxiliary"}, "provider": "local"},
            {"name": "explorers", "match": {"agent_type": "Explore*"}, "provider": "gpt"},
        ],
    )
    routes = cfg.routing.routes

    def route(headers: list[tuple[bytes, bytes]]) -> str | None:
        chosen = choose(routes, facts({"model": "claude-opus-5-5"}, headers=headers))
        return None if chosen is None else chosen.name

    assert route([(b"x-claude-code-request-class", b"auxiliary")]) == "cheap"
    assert route([(b"x-claude-code-request-class", b"main")]) is None
    assert route([(b"x-claude-code-agent-type", b"Explore")]) == "explorers"
    assert route([]) is None  # no hint header: neither matches
    assert "request_class=auxiliary -> local" in routes[0].describe()
    with pytest.raises(ConfigError, match="request_class: expected"):
        config(tmp_path, [{"match": {"request_class": 3}, "provider": "gpt"}])
