"""The command line: every command's options are accepted before or after
its action, as people type them."""

from __future__ import annotations

import argparse

import pytest

from trioproxy.cli import _parser

# Commands that read no configuration: their settings are their own flags.
NO_CONFIG = {("fake-upstream",), ("demo",), ("dev-cert",)}


def _leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser, list[argparse.ArgumentParser]]]:
    """(command path, its parser, the parsers above it) for every runnable command."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [(path, parser, [])]
    found = []
    for name, child in subs[0].choices.items():
        for leaf_path, leaf, above in _leaves(child, (*path, name)):
            found.append((leaf_path, leaf, [parser, *above]))
    return found


def _positionals(parser: argparse.ArgumentParser) -> list[str]:
    args: list[str] = []
    for action in parser._actions:
        if action.option_strings or isinstance(action, argparse._SubParsersAction):
            continue
        args.append("rpm=1" if action.nargs == "+" else "name")
    return args


LEAVES = [leaf for leaf in _leaves(_parser()) if leaf[0][:1] != ()]


def test_the_walk_finds_every_command() -> None:
    names = {path for path, _, _ in LEAVES}
    assert {("serve",), ("check-config",), ("usage",), ("switch",)} <= names
    assert {("callers", a) for a in ("list", "add", "rotate", "revoke", "set")} <= names
    assert ("log", "export") in names


@pytest.mark.parametrize("leaf", LEAVES, ids=[" ".join(p) for p, _, _ in LEAVES])
def test_config_is_accepted_after_the_arguments(
    leaf: tuple[tuple[str, ...], argparse.ArgumentParser, list[argparse.ArgumentParser]],
) -> None:
    path, parser, _ = leaf
    takes_config = any("--config" in a.option_strings for a in parser._actions)
    if path in NO_CONFIG:
        assert not takes_config
        return
    assert takes_config, f"trioproxy {' '.join(path)} has no --config"
    argv = [*path, *_positionals(parser), "--config", "after.toml"]
    assert _parser().parse_args(argv).config == "after.toml"


def test_a_commands_options_go_before_or_after_its_action() -> None:
    p = _parser()
    before = p.parse_args(["callers", "--config", "a.toml", "--file", "c.toml", "add", "ci"])
    after = p.parse_args(["callers", "add", "ci", "--rpm", "5", "--config", "a.toml"])
    neither = p.parse_args(["callers", "add", "ci"])
    assert (before.config, before.file, before.name) == ("a.toml", "c.toml", "ci")
    assert (after.config, after.rpm, after.file) == ("a.toml", 5, None)
    assert neither.config is None and neither.env_file is None
    both = p.parse_args(["callers", "--config", "a.toml", "rotate", "ci", "--config", "b.toml"])
    assert both.config == "b.toml"  # the later one wins, as with any repeated option
    exported = p.parse_args(["log", "export", "--since", "2d", "--state-dir", "/s"])
    assert (exported.state_dir, exported.since, exported.config) == ("/s", "2d", None)
    assert p.parse_args(["log", "--config", "x.toml", "export"]).config == "x.toml"
