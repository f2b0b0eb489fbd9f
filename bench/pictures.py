"""The documentation site's pictures, regenerated: never edited by hand.

    python -m bench.pictures [--seconds 20] [--out docs/img]

Headless Chromium (Debian package) takes the dashboard with traffic
flowing, the conversation log's viewer (its list, and one conversation
open) and its audit trail, through bench/dashboard.py's set-up (fake
upstreams, a proxy with callers, mixed traffic). The bench's chart is
copied from the last `make bench` (bench/results/latest.png): a bench run
takes too long for CI. The request-path diagram (request-path.svg) is
drawn by hand, as a diagram, not a screenshot.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from bench import dashboard

HERE = Path(__file__).resolve().parent
SCREENSHOTS = ("dashboard.png", "viewer-list.png", "viewer.png", "viewer-audit.png")
COPIED = {"bench.png": HERE / "results" / "latest.png"}
PICTURES = (*SCREENSHOTS, *COPIED)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--out", default=str(HERE.parent / "docs" / "img"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    code = dashboard.main(
        [
            "--seconds",
            str(args.seconds),
            "--out",
            str(out / "dashboard.png"),
            "--list-out",
            str(out / "viewer-list.png"),
            "--viewer-out",
            str(out / "viewer.png"),
            "--audit-out",
            str(out / "viewer-audit.png"),
        ]
    )
    if code:
        return code
    for name, source in COPIED.items():
        shutil.copyfile(source, out / name)
    print(f"wrote {', '.join(PICTURES)} in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
