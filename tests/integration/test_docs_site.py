"""The documentation site: it builds strictly (Zensical, offline), every
internal link and anchor of the built pages resolves, a broken link fails
the build, and the pictures script makes every picture the pages embed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.browser import require_chromium

ROOT = Path(__file__).parents[2]
ZENSICAL = Path(sys.executable).parent / "zensical"


class Links(HTMLParser):
    """Each page's links (href, src) and the ids it defines."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name == "id":
                self.ids.add(value)
            elif (name == "href" and tag in ("a", "link")) or (name == "src" and tag == "img"):
                self.links.append(value)


def build(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ZENSICAL), "build", "--strict"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the site's sources (the build writes site/ and .cache/)."""
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "zensical.toml", tmp_path)
    return tmp_path


def test_the_site_builds_and_every_internal_link_resolves(project: Path) -> None:
    done = build(project)
    assert done.returncode == 0, done.stdout + done.stderr
    site = project / "site"
    pages = {p: Links() for p in site.rglob("*.html")}
    for page, parsed in pages.items():
        parsed.feed(page.read_text())
    assert len(pages) >= 25
    checked = 0
    for page, parsed in pages.items():
        for link in parsed.links:
            url = urlsplit(link)
            if url.scheme or url.netloc or link.startswith("//"):
                continue  # outside the site
            base = site if url.path.startswith("/") else page.parent  # 404.html: from the root
            target = (base / unquote(url.path).lstrip("/")).resolve() if url.path else page
            if target.is_dir():
                target = target / "index.html"
            assert target.is_file(), f"{page.relative_to(site)}: {link} leads nowhere"
            if url.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else set()
                assert url.fragment in ids, f"{page.relative_to(site)}: no #{url.fragment}"
            checked += 1
    assert checked > 500


def test_a_broken_link_or_anchor_fails_the_build(project: Path) -> None:
    page = project / "docs" / "routing.md"
    page.write_text(page.read_text() + "\nSee [the callers](callers.md#no-such-section).\n")
    done = build(project)
    assert done.returncode != 0
    assert "anchor does not exist" in re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)


def test_the_pictures_script_makes_every_picture_the_pages_embed(tmp_path: Path) -> None:
    require_chromium()
    from bench.pictures import PICTURES

    done = subprocess.run(
        [sys.executable, "-m", "bench.pictures", "--seconds", "3", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for name in PICTURES:
        picture = (tmp_path / name).read_bytes()
        assert picture.startswith(b"\x89PNG") and len(picture) > 10_000, name
    embedded = set()
    for page in (ROOT / "docs").rglob("*.md"):
        embedded |= set(re.findall(r"\]\(img/([\w.-]+)\)", page.read_text()))
    drawn = {p.name for p in (ROOT / "docs" / "img").glob("*.svg")}
    assert embedded - drawn <= set(PICTURES), embedded - drawn - set(PICTURES)
    assert {"dashboard.png", "viewer-list.png", "viewer.png", "bench.png"} <= embedded
