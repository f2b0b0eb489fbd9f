"""Turn bench results into the README table and a PNG chart."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

NAMES = ("direct", "nginx", "trioproxy")


def _f(v: float | None, spec: str = ",.0f") -> str:
    return "n/a" if v is None else format(v, spec)


def render(results: dict[str, Any], png: Path | None = None) -> str:
    sc = results["scenarios"]
    lines = [
        f"Bench run {results.get('date', '?')}: `{results.get('command', 'python -m bench.run')}`; "
        f"proxy pinned to core {results['machine']['proxy_core']}, load generator and origin on core {results['machine']['load_core']} "
        f"({results['machine']['cores']} cores in all).",
        "",
        "| Scenario | direct (no proxy) | nginx (1 worker) | trioproxy (1 process) |",
        "|---|---|---|---|",
    ]
    for key in ("A", "C", "D"):
        if key not in sc:
            continue
        rows = sc[key]["rows"]
        cells = []
        for n in NAMES:
            r = rows.get(n)
            if not r:
                cells.append("n/a")
                continue
            cell = f"{_f(r['rps'])} req/s"
            if key in ("C", "D"):
                cell += f", {_f(r['mb_s'])} MB/s"
            else:
                cell += f", p50 {r['p50_us'] / 1000:.2f} ms, p99 {r['p99_us'] / 1000:.2f} ms"
            if r.get("per_cpu_s"):
                cell += f", {_f(r['per_cpu_s'])} req/CPU-s"
            if r.get("errors") or r.get("non2xx"):
                cell += f" ({r['errors']} errors, {r['non2xx']} non-2xx)"
            cells.append(cell)
        lines.append(f"| {key}: {sc[key]['title']} | " + " | ".join(cells) + " |")
    if "B" in sc:
        rows = sc["B"]["rows"]
        d = rows["direct"]
        cells = [f"p50 {d['p50_us'] / 1000:.3f} ms, p99 {d['p99_us'] / 1000:.3f} ms"]
        for n in NAMES[1:]:
            r = rows[n]
            cells.append(
                f"+{(r['p50_us'] - d['p50_us']) / 1000:.3f} ms p50, +{(r['p99_us'] - d['p99_us']) / 1000:.3f} ms p99"
            )
        lines.append(f"| B: {sc['B']['title']} | " + " | ".join(cells) + " |")
    if "E" in sc:
        rows = sc["E"]["rows"]
        cells = [
            f"{_f(rows[n]['rps'])} req/s ({rows[n]['failed']} failed)"
            + (f", {_f(rows[n].get('per_cpu_s'))} req/CPU-s" if rows[n].get("per_cpu_s") else "")
            for n in NAMES
        ]
        lines.append(f"| E: {sc['E']['title']} | " + " | ".join(cells) + " |")
    if "F" in sc:
        rows = sc["F"]["rows"]
        counts = sorted({int(k.rsplit(" ", 1)[1]) for k in rows})
        for count in counts:
            cells = ["n/a"]
            for who in ("nginx", "trioproxy"):
                r = rows.get(f"{who} {count}")
                if r is None:
                    cells.append("n/a")
                    continue
                cell = f"{r['held']} held, {_f(r['kib_per_stream'], '.1f')} KiB/stream (RSS {r['rss_after_kib'] / 1024:.0f} MiB)"
                if r.get("failed"):
                    cell += f", {r['failed']} failed to open"
                cells.append(cell)
            lines.append(f"| F: {count:,} idle held streams | " + " | ".join(cells) + " |")
    if png is not None:
        note = _plot(results, png)
        lines += ["", note]
    return "\n".join(lines) + "\n"


def _plot(results: dict[str, Any], png: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "(no chart: matplotlib is not installed; `pip install -e .[bench]`)"
    sc = results["scenarios"]
    panels = [(k, "req/s") for k in ("A", "C", "D", "E") if k in sc]
    extra = [k for k in ("B", "F") if k in sc]
    n = len(panels) + len(extra)
    cols = min(3, n)
    rows_n = (n + cols - 1) // cols
    fig, grid = plt.subplots(rows_n, cols, figsize=(5 * cols, 4 * rows_n), squeeze=False)
    axes = [ax for row in grid for ax in row]
    for ax in axes[n:]:
        ax.set_visible(False)
    colors = {"direct": "#888888", "nginx": "#2a9d8f", "trioproxy": "#e76f51"}
    for ax, (key, unit) in zip(axes, panels, strict=False):
        rows = sc[key]["rows"]
        vals = [rows[n]["rps"] if n in rows else 0 for n in NAMES]
        ax.bar(NAMES, vals, color=[colors[n] for n in NAMES])
        ax.set_title(f"{key}: {sc[key]['title']}", fontsize=8, wrap=True)
        ax.set_yscale("log")  # nginx and trioproxy differ by 40x: keep both visible
        ax.set_ylim(bottom=max(1.0, min(v for v in vals if v > 0) / 3))
        ax.set_ylabel(f"{unit} (log scale)")
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=8)
    rest = axes[len(panels) :]
    for ax, key in zip(rest, extra, strict=False):
        rows = sc[key]["rows"]
        if key == "B":
            names = list(NAMES)
            p50 = [rows[n]["p50_us"] / 1000 for n in names]
            p99 = [rows[n]["p99_us"] / 1000 for n in names]
            x = range(len(names))
            ax.bar([i - 0.2 for i in x], p50, width=0.4, label="p50", color="#457b9d")
            ax.bar([i + 0.2 for i in x], p99, width=0.4, label="p99", color="#e63946")
            ax.set_xticks(list(x), names)
            ax.set_ylabel("ms")
            ax.legend(fontsize=8)
            ax.set_title("B: latency at concurrency 1", fontsize=8)
        else:
            labels = list(rows)
            vals = [rows[k]["kib_per_stream"] or 0 for k in labels]
            ax.bar(
                labels,
                vals,
                color=["#e76f51" if k.startswith("trio") else "#2a9d8f" for k in labels],
            )
            ax.set_ylabel("KiB per idle stream")
            ax.tick_params(axis="x", labelsize=7, rotation=20)
            ax.set_title("F: memory per held stream", fontsize=8)
    fig.suptitle(f"trioproxy bench {results.get('date', '')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    return f"![bench chart]({png.name})"


if __name__ == "__main__":
    data = json.loads(Path(sys.argv[1]).read_text())
    print(render(data, Path(sys.argv[2]) if len(sys.argv) > 2 else None))
