"""The documentation cannot drift from the code: the reference pages are
what the code generates, every TOML example loads with the project's own
loader, and every `trioproxy ...` command shown parses with the CLI's
parser. (The site's build and link check: tests/integration/test_docs_site.py.)"""

from __future__ import annotations

import json
import re
import shlex
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trioproxy import reference
from trioproxy.accounting.families import FAMILIES
from trioproxy.config import SETTINGS, ConfigError, load_config
from trioproxy.config.settings import Setting, parse_str

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs"
PAGES = [*sorted(DOCS.rglob("*.md")), ROOT / "README.md"]


def blocks(lang: str) -> Iterator[tuple[str, str]]:
    """(where, text) of every fenced block of ``lang`` in the docs."""
    fence = re.compile(rf"^```{lang}\n(.*?)^```", re.S | re.M)
    for page in PAGES:
        text = page.read_text()
        for m in fence.finditer(text):
            line = text[: m.start()].count("\n") + 1
            yield f"{page.relative_to(ROOT)}:{line}", m.group(1)


@pytest.mark.parametrize("name", sorted(reference.PAGES))
def test_reference_pages_are_what_the_code_says(name: str) -> None:
    page = DOCS / "reference" / name
    assert page.read_text() == reference.PAGES[name](), (
        f"{page} is stale: run python -m trioproxy.reference"
    )


def test_a_setting_added_without_regenerating_the_reference_is_caught(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert reference.main(["--check", "--out", str(DOCS / "reference")]) == 0
    new = Setting("new.knob", "TRIOPROXY_NEW_KNOB", parse_str, "", "a knob nobody documented")
    monkeypatch.setattr(reference, "SETTINGS", (*SETTINGS, new))
    assert reference.main(["--check", "--out", str(DOCS / "reference")]) == 1
    assert "settings.md is stale" in capsys.readouterr().err
    # And once regenerated, it is there with its variable and type.
    assert reference.main(["--out", str(tmp_path)]) == 0
    assert (
        "| `new.knob` | `TRIOPROXY_NEW_KNOB` | string |" in (tmp_path / "settings.md").read_text()
    )


def test_every_setting_and_family_is_described() -> None:
    for s in SETTINGS:
        assert reference.setting_type(s) and s.doc, s.key
    for name, f in FAMILIES.items():
        assert f.kind in ("counter", "gauge", "histogram") and f.help, name


# -- TOML examples ---------------------------------------------------------

TOML = list(blocks("toml"))
CREDENTIALS = {
    "claudeAiOauth": {
        "accessToken": "sk-ant-oat01-example",
        "refreshToken": "sk-ant-ort01-example",
        "expiresAt": int((time.time() + 3600) * 1000),
    }
}


def provide(doc: Any, key: str, env: dict[str, str], paths: dict[str, str], tmp: Path) -> None:
    """What an example names and a deployment would provide: each ``*_env``
    variable set, each absolute path made (under ``tmp``: a file holding a
    secret or Claude's credentials, or a directory)."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            provide(v, k, env, paths, tmp)
    elif isinstance(doc, list):
        for v in doc:
            provide(v, key, env, paths, tmp)
    elif isinstance(doc, str):
        if key.endswith("_env"):
            env[doc] = "example-secret-0123456789abcdef"
        elif doc.startswith("/"):
            path = tmp / doc.lstrip("/")
            paths[doc] = str(path)
            if key.endswith("dirs") or key.endswith("_dir"):
                path.mkdir(parents=True, exist_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                if key == "oauth_credentials_file":
                    path.write_text(json.dumps(CREDENTIALS))
                elif path.suffix == ".toml":
                    path.write_text("")  # a callers file with nobody in it yet
                else:
                    path.write_text("example-secret-0123456789abcdef\n")


def test_the_docs_have_toml_examples() -> None:
    assert len(TOML) >= 10


@pytest.mark.parametrize(("where", "text"), TOML, ids=[w for w, _ in TOML])
def test_every_toml_example_loads(where: str, text: str, tmp_path: Path) -> None:
    doc = tomllib.loads(text)  # a syntax error fails here, naming the block
    env = {"HOME": str(tmp_path)}
    if "providers" not in doc:  # the one upstream of the defaults needs its key
        env["TRIOPROXY_UPSTREAM_API_KEY"] = "sk-ant-example-0123456789"
    paths: dict[str, str] = {}
    provide(doc, "", env, paths, tmp_path)
    agents = [made for original, made in paths.items() if original.endswith("/agents")]
    for route in doc.get("routes", []):
        name = route.get("match", {}).get("subagent")
        for folder in agents if name else ():  # the agent's definition file, as Claude Code's
            Path(folder, f"{name}.md").write_text(f"---\nname: {name}\n---\nYou review code.\n")
    for original, made in paths.items():
        text = text.replace(f'"{original}"', json.dumps(made))
    config = tmp_path / "example.toml"
    config.write_text(text)
    try:
        load_config(str(config), env=env)
    except ConfigError as e:
        pytest.fail(f"{where}: {e}")


def test_a_typo_in_an_example_fails(tmp_path: Path) -> None:
    _, text = next((w, t) for w, t in TOML if "[[providers]]" in t and "base_url =" in t)
    env: dict[str, str] = {}
    provide(tomllib.loads(text), "", env, {}, tmp_path)
    config = tmp_path / "typo.toml"
    config.write_text(text.replace("base_url =", "base_ulr =", 1))
    with pytest.raises(ConfigError, match="base_ulr"):
        load_config(str(config), env=env)


# -- commands --------------------------------------------------------------

# A command at the start of a line: after a prompt, sudo, variables or a path.
COMMAND = re.compile(
    r"^(?:\$\s+)?(?:sudo\s+(?:-u\s+\S+\s+)?)?(?:[A-Z_]+=\S+\s+)*(?:\S*/)?trioproxy\s+(.*)$"
)


INLINE = re.compile(r"`(?:\S*/)?trioproxy ([^`]+)`")


def commands() -> list[tuple[str, str]]:
    """Every `trioproxy ...` command line in the docs' shell blocks (the
    line's comment, and a trailing `&` or `\\`, left out), and every one in
    running text (not a usage line with `[`, `|` or `...` in it)."""
    out = []
    for page in PAGES:
        for n, line in enumerate(page.read_text().splitlines(), 1):
            for m in INLINE.finditer(line):
                words = m.group(1).split()
                usage = any(c in m.group(1) for c in ("[", "|", "...", "…"))
                if not usage and re.fullmatch(r"[a-z-]+", words[0]):  # not a bench column's name
                    out.append((f"{page.relative_to(ROOT)}:{n}", m.group(1)))
    for lang in ("sh", "bash", "console"):
        for where, text in blocks(lang):
            for line in text.splitlines():
                line = line.split("  #")[0].split(" # ")[0].rstrip(" &\\")
                m = COMMAND.search(line)
                if m:
                    out.append((where, m.group(1)))
    return out


COMMANDS = commands()


def test_the_docs_show_commands() -> None:
    assert len(COMMANDS) >= 15


@pytest.mark.parametrize(("where", "args"), COMMANDS, ids=[f"{w} {a}" for w, a in COMMANDS])
def test_every_command_shown_parses(where: str, args: str) -> None:
    from trioproxy.cli import _parser

    parser = _parser()
    if args in {name for name, _ in reference._commands(parser)}:
        return  # a command named in running text ("`trioproxy switch` prints ...")
    try:
        parser.parse_args(shlex.split(args))
    except SystemExit:
        pytest.fail(f"{where}: trioproxy {args} is not a valid command")


def test_a_wrong_command_is_caught() -> None:
    from trioproxy.cli import _parser

    with pytest.raises(SystemExit):
        _parser().parse_args(shlex.split("callers add ci --budgte 5"))
