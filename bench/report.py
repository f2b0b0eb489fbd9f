"""Turn bench results into the tables of docs/performance.md (with the targets, met or
missed) and a PNG chart."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

NAMES = ("direct", "nginx", "floor", "floor+h11", "trioproxy")
HEADINGS = {
    "direct": "direct (no proxy)",
    "nginx": "nginx (1 worker)",
    "floor": "floor: Trio byte relay",
    "floor+h11": "floor + h11 framing (E: h2 in, h11 out)",
    "trioproxy": "trioproxy (1 worker)",
}
VARIANTS = (
    "trioproxy",
    "trioproxy h2c-up",
    "trioproxy h2-tls-up",
    "trioproxy scrub",
    "trioproxy log=all",
    "trioproxy production",
    "trioproxy bedrock",
    "trioproxy 2 workers",
    "trioproxy 2 workers reloaded",
    "floor+h11 h2-tls-up",
)
VARIANT_HEADINGS = {
    "trioproxy": "HTTP/1.1 upstream",
    "trioproxy h2c-up": "h2c upstream",
    "trioproxy h2-tls-up": "h2 over TLS upstream",
    "trioproxy scrub": "HTTP/1.1 upstream, scrubbing on",
    "trioproxy log=all": "HTTP/1.1 upstream, conversation log on (all)",
    "trioproxy production": "production: callers with limits, provider key, scrubbing, log all",
    "trioproxy bedrock": "a Bedrock provider (SigV4, event stream to SSE), the fake Bedrock",
    "trioproxy 2 workers": "2 workers on both cores, HTTP/1.1 upstream",
    "trioproxy 2 workers reloaded": "2 workers, reloaded twice during the run",
    "floor+h11 h2-tls-up": "reference: floor + h11 with an h2-over-TLS upstream (no trioproxy)",
}


def _f(v: float | None, spec: str = ",.0f") -> str:
    return "n/a" if v is None else format(v, spec)


def _cell(key: str, r: dict[str, Any] | None) -> str:
    if not r:
        return "n/a"
    if key in ("G", "H"):
        cell = f"{_f(r['events'])} events"
        if r.get("cpu_us_each"):
            cell += f", **{r['cpu_us_each']:.0f} µs CPU/event**"
        if r.get("errors"):
            cell += f" ({r['errors']} errors)"
        return cell
    if key == "E":
        cell = f"{_f(r['rps'])} req/s ({r['failed']} failed)"
    else:
        cell = f"{_f(r['rps'])} req/s"
        if key in ("C", "D"):
            cell += f", {_f(r['mb_s'])} MB/s"
        else:
            cell += f", p50 {r['p50_us'] / 1000:.2f} ms"
    if r.get("per_cpu_s"):
        unit = "responses" if key == "D" else "req"
        cell += f", **{_f(r['per_cpu_s'])} {unit}/CPU-s**"
    if r.get("errors") or r.get("non2xx"):
        cell += f" ({r.get('errors', 0)} errors, {r.get('non2xx', 0)} non-2xx)"
    return cell


def render(results: dict[str, Any], png: Path | None = None) -> str:
    sc = results["scenarios"]
    m = results["machine"]
    lines = [
        f"Bench run {results.get('date', '?')}: `{results.get('command', 'python -m bench.run')}`; "
        f"each proxy pinned to core {m['proxy_core']}, load generator and origin on core "
        f"{m['load_core']} (2 cores in all); trioproxy with its access line and usage ledger on.",
        "",
        "| Scenario | " + " | ".join(HEADINGS[n] for n in NAMES) + " |",
        "|---|" + "---|" * len(NAMES),
    ]
    for key in ("A", "C", "D", "E", "G", "H"):
        if key in sc:
            rows = sc[key]["rows"]
            cells = [_cell(key, rows.get(n)) for n in NAMES]
            lines.append(f"| {key}: {sc[key]['title']} | " + " | ".join(cells) + " |")
    if "B" in sc:
        rows = sc["B"]["rows"]
        d = rows["direct"]
        cells = [f"p50 {d['p50_us'] / 1000:.3f} ms, p99 {d['p99_us'] / 1000:.3f} ms"]
        for n in NAMES[1:]:
            r = rows.get(n)
            cells.append(
                "n/a"
                if r is None
                else f"+{(r['p50_us'] - d['p50_us']) / 1000:.3f} ms p50, "
                f"+{(r['p99_us'] - d['p99_us']) / 1000:.3f} ms p99"
            )
        lines.append(f"| B: {sc['B']['title']} | " + " | ".join(cells) + " |")
    if "F" in sc:
        rows = sc["F"]["rows"]
        for count in sorted({int(k.rsplit(" ", 1)[1]) for k in rows}):
            cells = ["n/a"]
            for who in NAMES[1:]:
                cells.append(_held(rows.get(f"{who} {count}")))
            lines.append(
                f"| F: {count:,} idle held streams (HTTP/1.1 upstream) | "
                + " | ".join(cells)
                + " |"
            )
    against = floor_rows(sc)
    if against:
        lines += [
            "",
            "trioproxy's CPU per request (G: per event) against the floors measured in the same run:",
            "",
            *against,
        ]
    production = production_rows(sc)
    if production:
        lines += [
            "",
            "The production configuration (callers with limits, the provider key injected,"
            ' scrubbing on, `log_bodies = "all"`) against plain trioproxy, CPU per request:',
            "",
            *production,
        ]
    cloud = cloud_rows(sc)
    if cloud:
        lines += [
            "",
            "G through a Bedrock provider (the fake Bedrock's event stream translated to SSE)"
            " against G through the Anthropic fake, CPU per event:",
            "",
            *cloud,
        ]
    refresh = refresh_rows(sc)
    if refresh:
        lines += [
            "",
            "B's load through a Bedrock provider, its credentials static or refreshed every"
            " 0.5 s by a credential_process that takes 0.2 s (two alternated rounds):",
            "",
            *refresh,
        ]
    variant_rows = _variants(sc)
    if variant_rows:
        lines += [
            "",
            "trioproxy by upstream path, with scrubbing on (nothing to find), and with the conversation log on:",
            "",
        ]
        lines += variant_rows
    if png is not None:
        lines += ["", _plot(results, png)]
    return "\n".join(lines) + "\n"


# (scenario, trioproxy's row, the floors it is compared with: the byte relay, then
# the relay with exactly the protocol work trioproxy cannot skip on that path)
FLOOR_PAIRS = (
    ("A", "trioproxy", "floor", "floor+h11"),
    ("C", "trioproxy", "floor", "floor+h11"),
    ("D", "trioproxy", "floor", "floor+h11"),
    ("E", "trioproxy", "floor", "floor+h11"),
    ("G", "trioproxy", "floor", "floor+h11"),
    ("H", "trioproxy", "floor", "floor+h11"),
    ("A", "trioproxy h2-tls-up", "floor", "floor+h11 h2-tls-up"),
)


def floor_rows(sc: dict[str, Any]) -> list[str]:
    """A table row per scenario that has trioproxy and both floors measured:
    CPU µs each, the ratios, and what trioproxy adds over the protocol floor."""
    out: list[str] = []
    for key, who, relay, protocol in FLOOR_PAIRS:
        rows = sc.get(key, {}).get("rows", {})
        us = [rows.get(n, {}).get("cpu_us_each") for n in (who, relay, protocol)]
        if not all(us):
            continue
        mine, floor, proto = us
        path = " (h2 over TLS upstream)" if who != "trioproxy" else ""
        out.append(
            f"| {key}{path} | {mine:,.0f} µs | {floor:,.0f} µs | {proto:,.0f} µs | "
            f"{mine / floor:.2f}x | {mine / proto:.2f}x | +{mine - proto:,.0f} µs |"
        )
    if not out:
        return []
    return [
        "| Scenario | trioproxy | floor | protocol floor (floor + h11; E: h2 in, h11 out;"
        " TLS row: floor + h11 with an h2-over-TLS upstream) | trioproxy / floor |"
        " trioproxy / protocol floor | trioproxy adds |",
        "|---|---|---|---|---|---|---|",
        *out,
    ]


PRODUCTION_TARGETS = {"A": 1.3, "D": 1.5}  # production / plain trioproxy, CPU per request


def production_rows(sc: dict[str, Any]) -> list[str]:
    """The production configuration's row beside plain trioproxy's, with the target."""
    out: list[str] = []
    for key, target in PRODUCTION_TARGETS.items():
        rows = sc.get(key, {}).get("rows", {})
        plain = rows.get("trioproxy", {}).get("cpu_us_each")
        prod = rows.get("trioproxy production", {}).get("cpu_us_each")
        if not plain or not prod:
            continue
        ratio = prod / plain
        met = "met" if ratio <= target else "missed"
        logged = rows["trioproxy production"].get("log_rows")
        kept = (
            f"{logged.get('written', 0):,} written, {logged.get('dropped', 0):,} dropped"
            if logged
            else "n/a"
        )
        out.append(
            f"| {key} | {plain:,.0f} µs | {prod:,.0f} µs | {ratio:.2f}x | ≤ {target}x: {met}"
            f" | {kept} |"
        )
    if not out:
        return []
    return [
        "| Scenario | plain trioproxy | production | production / plain | target"
        " | conversation-log rows |",
        "|---|---|---|---|---|---|",
        *out,
    ]


def _held(r: dict[str, Any] | None) -> str:
    if r is None:
        return "n/a"
    cell = f"{r['held']:,} held, {_f(r['kib_per_stream'], '.1f')} KiB/stream"
    if r.get("failed"):
        cell += f", {r['failed']:,} failed"
    return cell


def _variants(sc: dict[str, Any]) -> list[str]:
    present = [v for v in VARIANTS if any(v in sc.get(k, {}).get("rows", {}) for k in "AG")]
    if len(present) < 2:
        return []
    out = [
        "| Scenario | " + " | ".join(VARIANT_HEADINGS[v] for v in present) + " |",
        "|---|" + "---|" * len(present),
    ]
    for key in ("A", "G"):
        if key in sc:
            rows = sc[key]["rows"]
            out.append(f"| {key} | " + " | ".join(_cell(key, rows.get(v)) for v in present) + " |")
    if "F" in sc:
        rows = sc["F"]["rows"]
        for count in sorted({int(k.rsplit(" ", 1)[1]) for k in rows}):
            cells = [
                _held(rows.get(f"{v} {count}")) if v in ("trioproxy", "trioproxy h2c-up") else ""
                for v in present
            ]
            out.append(f"| F: {count:,} idle streams | " + " | ".join(cells) + " |")
    return out


def _plot(results: dict[str, Any], png: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "(no chart: matplotlib is not installed; `pip install -e .[bench]`)"
    sc = results["scenarios"]
    colors = {
        "nginx": "#2a9d8f",
        "floor": "#8d99ae",
        "floor+h11": "#b8c0cc",
        "trioproxy": "#e76f51",
    }
    panels: list[tuple[str, str, str]] = [
        (k, "per_cpu_s", "requests per proxy CPU-second") for k in ("A", "C", "D", "E") if k in sc
    ]
    if "G" in sc:
        panels.append(("G", "cpu_us_each", "proxy CPU µs per SSE event (lower is better)"))
    extra = [k for k in ("B", "F") if k in sc]
    n = len(panels) + len(extra)
    if n == 0:
        return ""
    cols = min(3, n)
    rows_n = (n + cols - 1) // cols
    fig, grid = plt.subplots(rows_n, cols, figsize=(5 * cols, 4 * rows_n), squeeze=False)
    axes = [ax for row in grid for ax in row]
    for ax in axes[n:]:
        ax.set_visible(False)
    for ax, (key, field, unit) in zip(axes, panels, strict=False):
        rows = sc[key]["rows"]
        names = [x for x in NAMES[1:] if rows.get(x, {}).get(field)]
        vals = [rows[x][field] for x in names]
        ax.bar(names, vals, color=[colors[x] for x in names])
        ax.set_title(f"{key}: {sc[key]['title']}", fontsize=8, wrap=True)
        ax.set_ylabel(unit, fontsize=8)
        if key != "G":
            ax.set_yscale("log")  # nginx and the Python proxies differ by 10x or more
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=8)
    for ax, key in zip(axes[len(panels) :], extra, strict=False):
        rows = sc[key]["rows"]
        if key == "B":
            names = [x for x in NAMES if x in rows]
            p50 = [rows[x]["p50_us"] / 1000 for x in names]
            p99 = [rows[x]["p99_us"] / 1000 for x in names]
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
                color=[colors.get(k.split(" ")[0], "#e76f51") for k in labels],
            )
            ax.axhline(20, color="#333333", linewidth=0.8, linestyle="--")
            ax.set_ylabel("KiB per idle stream")
            ax.tick_params(axis="x", labelsize=6, rotation=30)
            ax.set_title("F: memory per held stream (target: 20 KB)", fontsize=8)
    fig.suptitle(f"trioproxy bench {results.get('date', '')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    return f"![bench chart]({png.name})"


if __name__ == "__main__":
    data = json.loads(Path(sys.argv[1]).read_text())
    print(render(data, Path(sys.argv[2]) if len(sys.argv) > 2 else None))


CLOUD_TARGET = 1.5  # G through Bedrock / G through an Anthropic provider, CPU per event


def cloud_rows(sc: dict[str, Any]) -> list[str]:
    """G through a Bedrock provider beside G through the Anthropic fake."""
    rows = sc.get("G", {}).get("rows", {})
    plain = rows.get("trioproxy", {}).get("cpu_us_each")
    bedrock = rows.get("trioproxy bedrock", {}).get("cpu_us_each")
    if not plain or not bedrock:
        return []
    ratio = bedrock / plain
    met = "met" if ratio <= CLOUD_TARGET else "missed"
    return [
        "| Scenario | Anthropic provider | Bedrock provider | Bedrock / Anthropic | target |",
        "|---|---|---|---|---|",
        f"| G | {plain:.0f} µs | {bedrock:.0f} µs | {ratio:.2f}x | ≤ {CLOUD_TARGET}x: {met} |",
    ]


REFRESH_TARGET_MS = 1.0  # R: p99 with refreshes - p99 without, at most


def refresh_rows(sc: dict[str, Any]) -> list[str]:
    """R: latency with credentials static and refreshed, per round."""
    rows = sc.get("R", {}).get("rows", {})
    if not rows:
        return []
    out = [
        "| Round | static p50 | static p99 | refreshing p50 | refreshing p99 | p99 difference | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for rnd in (1, 2):
        a = rows.get(f"trioproxy bedrock {rnd}")
        b = rows.get(f"trioproxy bedrock refreshing {rnd}")
        if not a or not b:
            continue
        diff = (b["p99_us"] - a["p99_us"]) / 1000
        met = "met" if diff <= REFRESH_TARGET_MS else "missed"
        out.append(
            f"| {rnd} | {a['p50_us'] / 1000:.2f} ms | {a['p99_us'] / 1000:.2f} ms"
            f" | {b['p50_us'] / 1000:.2f} ms | {b['p99_us'] / 1000:.2f} ms"
            f" | {diff:+.2f} ms | ≤ +{REFRESH_TARGET_MS:g} ms: {met} |"
        )
    return out if len(out) > 2 else []
