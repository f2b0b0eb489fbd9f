"""`trioproxy usage`: the ledger summed by caller, model, provider or day,
with an estimated cost. Synchronous and read-only: it runs beside the
server (the ledger is in WAL mode), often as another user, and needs no
provider key, so it reads only state_dir, [pricing] and the providers'
kinds and URLs from the TOML file and the environment, without validating
the whole configuration. Each row's cost is the one it was priced at when
it ended (accounting/pricing.py); rows without one (a model that could not
be priced then, or rows older than the column) are priced now if they can
be."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from trioproxy.accounting.pricing import PriceBook, provider_hint
from trioproxy.config.envfile import EnvFileError, read_env_file
from trioproxy.config.partial import Partial
from trioproxy.config.pricing import parse_pricing
from trioproxy.config.source import ConfigError
from trioproxy.db.base import StorageError
from trioproxy.db.open import open_database

TOKENS = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
)
GROUPS = ("caller", "model", "provider", "request_class", "agent_type", "day")  # day: UTC
_SPAN = re.compile(r"^(\d+(?:\.\d+)?)\s*([mhdw])$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class UsageError(Exception):
    pass


def parse_since(raw: str, now: float, name: str = "--since") -> float:
    """``7d``, ``24h``, ``30m``, ``2w``, or a date ``2026-11-01`` (UTC)."""
    m = _SPAN.match(raw.strip())
    if m:
        return now - float(m.group(1)) * _UNIT_S[m.group(2)]
    try:
        day = datetime.strptime(raw.strip(), "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise UsageError(
            f"{name}: expected a span like 7d, 24h, 30m, 2w or a date like 2026-11-01, not {raw!r}"
        ) from None
    return day.timestamp()


@dataclass(frozen=True)
class Where:
    """Where the ledger and the log are, and the prices, as the server
    would see them."""

    state_dir: str
    database_url: str = field(repr=False)
    prices: PriceBook


def settings_from(config_path: str | None, env_file: str | None) -> Where:
    """``settings`` for a command line: the environment, with a systemd
    EnvironmentFile's variables under it."""
    env = dict(os.environ)
    if env_file:
        try:
            env = {**read_env_file(env_file), **env}
        except EnvFileError as exc:
            raise UsageError(str(exc)) from None
    return settings(config_path, env)


def settings(config_path: str | None, env: Mapping[str, str]) -> Where:
    """Read from the TOML file and the environment (config.partial), without
    validating the rest of the configuration (no provider key needed)."""
    try:
        where = Partial(config_path, env)
        providers = where.table("providers")
        hints = {
            str(p.get("name")): provider_hint(str(p.get("kind", "")), str(p.get("base_url", "")))
            for p in (providers if isinstance(providers, list) else [])
            if isinstance(p, Mapping)
        }
        prices = PriceBook(
            parse_pricing(where.table("pricing")), where.get("pricing.unknown_model"), hints
        )
        return Where(where.get("state_dir"), where.get("storage.database_url"), prices)
    except (ConfigError, ValueError) as exc:
        raise UsageError(str(exc)) from None


@dataclass
class Line:
    key: str
    requests: int = 0
    errors: int = 0
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKENS, 0))
    cost: float = 0.0
    unpriced: set[str] = field(default_factory=set)  # models without a price

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "requests": self.requests,
            "errors": self.errors,
            **self.tokens,
            "cost_usd": round(self.cost, 6),
            "unpriced_models": sorted(self.unpriced),
        }


def summarize(
    state_dir: str,
    *,
    since: float,
    by: str,
    prices: PriceBook,
    database_url: str = "",
) -> tuple[list[Line], Line]:
    """Lines by ``by`` (largest cost, then most tokens, first; days in
    order) and the total."""
    if by not in GROUPS:
        raise UsageError(f"--by: one of {', '.join(GROUPS)}")
    try:
        db = open_database(database_url, state_dir, readonly=True)
        try:
            rows = db.usage_sums(by, since)
        finally:
            db.close()
    except StorageError as exc:
        raise UsageError(f"cannot read the usage ledger: {exc}") from None
    return lines_from(rows, by, prices)


def lines_from(rows: list[dict[str, Any]], by: str, prices: PriceBook) -> tuple[list[Line], Line]:
    """``usage_sums`` rows as priced lines and their total."""
    lines: dict[str, Line] = {}
    total = Line("total")
    for row in rows:
        key, model, count, errors = row["k"], row["model"], row["n"], row["errors"]
        counts = {t: int(row[t] or 0) for t in TOKENS}
        cost = float(row["cost"] or 0.0)
        unpriced = {t: int(row["u_" + t] or 0) for t in TOKENS}
        missing = False
        if any(unpriced.values()):  # rows without a cost: priced now if they can be
            later = prices.tokens_cost(unpriced, model, str(row["provider"]))
            missing = later is None
            cost += later or 0.0
        for line in (lines.setdefault(str(key), Line(str(key))), total):
            line.requests += count
            line.errors += int(errors or 0)
            for t in TOKENS:
                line.tokens[t] += counts[t]
            line.cost += cost
            if missing:
                line.unpriced.add(model)
    if by == "day":
        return sorted(lines.values(), key=lambda x: x.key), total  # a time series
    ordered = sorted(lines.values(), key=lambda x: (-x.cost, -sum(x.tokens.values()), x.key))
    return ordered, total


def render(lines: list[Line], total: Line, *, by: str, fmt: str, since: float) -> str:
    if fmt == "json":
        doc = {
            "since": datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds"),
            "by": by,
            "lines": [x.as_dict() for x in lines],
            "total": total.as_dict(),
        }
        return json.dumps(doc, indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow([by, "requests", "errors", *TOKENS, "cost_usd", "unpriced_models"])
        for x in [*lines, total]:
            d = x.as_dict()
            w.writerow(
                [
                    x.key,
                    x.requests,
                    x.errors,
                    *(x.tokens[t] for t in TOKENS),
                    d["cost_usd"],
                    " ".join(d["unpriced_models"]),
                ]
            )
        return out.getvalue()
    head = [by, "requests", "errors", "input", "cache write", "cache read", "output", "cost USD"]
    body = [
        [
            x.key,
            f"{x.requests:,}",
            f"{x.errors:,}",
            *(f"{x.tokens[t]:,}" for t in TOKENS),
            f"{x.cost:,.2f}" + ("*" if x.unpriced else ""),
        ]
        for x in [*lines, total]
    ]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]

    def fmt_row(r: list[str]) -> str:
        return "  ".join(
            c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)
        )

    rule = "  ".join("-" * w for w in widths)
    text = [fmt_row(head), rule, *(fmt_row(r) for r in body[:-1]), rule, fmt_row(body[-1])]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(since))
    text.insert(0, f"usage since {when}, by {by}")
    if total.unpriced:
        text.append(
            "* cost leaves out models without a price: "
            + ", ".join(sorted(total.unpriced))
            + ' (neither the price database nor [pricing] knows them: add [pricing."<glob>"])'
        )
    return "\n".join(text) + "\n"
