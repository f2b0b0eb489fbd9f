"""The proxy's own model catalogue (pure): what it lists, how it names
them, how the Models API pages them, and what a caller may see."""

from __future__ import annotations

import orjson

from tests.helpers import make_config
from trioproxy.routing.catalogue import (
    anthropic_page,
    catalogue,
    display_name,
    openai_list,
    visible,
)


def routing_with(**cfg: object):  # type: ignore[no-untyped-def]
    return make_config(**cfg).routing


def test_aliases_exact_model_names_and_route_models_are_listed_once() -> None:
    routing = routing_with(
        aliases={"claude-team-fast": "claude-haiku-4-5", "opus": "claude-opus-5-5"},
        providers=[
            {
                "name": "a",
                "base_url": "http://127.0.0.1:1",
                "models": {"claude-opus-5-5": "claude-opus-5-5", "claude-*": "x", "default": "y"},
            },
            {
                "name": "b",
                "base_url": "http://127.0.0.1:2",
                "enabled": False,
                "models": {"claude-secret-1": "z"},
            },
        ],
        routes=[{"match": {"model": "claude-sonnet-4-6"}, "provider": "a"}],
    )
    got = catalogue(routing)
    assert [m.id for m in got] == [
        "claude-team-fast",
        "opus",
        "claude-opus-5-5",
        "claude-sonnet-4-6",
    ]
    assert got[0].display_name == "Claude Haiku 4.5 (claude-team-fast)"
    assert got[0].serves == "claude-haiku-4-5"


def test_display_names() -> None:
    assert display_name("claude-opus-5-5") == "Claude Opus 5.5"
    assert display_name("claude-sonnet-4-5-20250929") == "Claude Sonnet 4.5"
    assert display_name("claude-3-7-sonnet-latest") == "Claude 3.7"
    assert display_name("gpt-4o") == "gpt-4o"


def test_paging_as_the_models_api_does() -> None:
    routing = routing_with(aliases={f"claude-m{i}": "claude-x" for i in range(5)})
    models = catalogue(routing)
    first = orjson.loads(anthropic_page(models, {"limit": "2"}))
    assert [m["id"] for m in first["data"]] == ["claude-m0", "claude-m1"] and first["has_more"]
    assert first["first_id"] == "claude-m0" and first["last_id"] == "claude-m1"
    rest = orjson.loads(anthropic_page(models, {"limit": "1000", "after_id": "claude-m1"}))
    assert [m["id"] for m in rest["data"]] == ["claude-m2", "claude-m3", "claude-m4"]
    assert not rest["has_more"]
    before = orjson.loads(anthropic_page(models, {"limit": "2", "before_id": "claude-m4"}))
    assert [m["id"] for m in before["data"]] == ["claude-m2", "claude-m3"] and before["has_more"]
    empty = orjson.loads(anthropic_page([], {}))
    assert empty == {"data": [], "has_more": False, "first_id": None, "last_id": None}
    assert orjson.loads(openai_list(models[:1]))["data"] == [
        {"id": "claude-m0", "object": "model", "created": 0, "owned_by": "trioproxy"}
    ]


def test_a_caller_sees_what_it_may_ask_for() -> None:
    routing = routing_with(
        aliases={"claude-fast": "claude-haiku-4-5", "claude-big": "claude-opus-5-5"}
    )
    shown = visible(catalogue(routing), lambda model: model.startswith("claude-haiku"))
    assert [m.id for m in shown] == ["claude-fast"]
