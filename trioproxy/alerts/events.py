"""What an alert says, and when one is due (pure).

An alert is a kind (``budget``, ``breaker``, ``credential``, ``worker``), a
key that names the one crossing it reports (every process that sees the
same crossing makes the same key, so only one of them posts it), a line of
text and a few fields. It is posted in Slack's incoming-webhook shape: a
``text`` (what chat clients show) and an attachment with the fields, which
Mattermost, Rocket.Chat, Discord's ``/slack`` endpoint and most alert
routers take too.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

KINDS = ("budget", "breaker", "credential", "worker")
COLORS = {"budget": "warning", "breaker": "danger", "credential": "danger", "worker": "warning"}


@dataclass(frozen=True, slots=True)
class Alert:
    kind: str
    key: str  # the crossing: the same in every process that sees it
    text: str
    fields: tuple[tuple[str, str], ...] = ()
    ttl: float = 86_400.0  # how long the key stays claimed (no second post)
    good: bool = field(default=False, compare=False)  # a recovery (a breaker closed)


def payload(alert: Alert, host: str | None = None) -> bytes:
    """The JSON body posted to every webhook."""
    fields = [*alert.fields, ("instance", host or socket.gethostname())]
    return orjson.dumps(
        {
            "text": f"trioproxy: {alert.text}",
            "attachments": [
                {
                    "color": "good" if alert.good else COLORS.get(alert.kind, "warning"),
                    "fallback": alert.text,
                    "fields": [{"title": k, "value": v, "short": True} for k, v in fields],
                    "footer": f"trioproxy {alert.kind} alert",
                }
            ],
        }
    )


def budget_crossed(
    caller: str,
    unit: str,
    used_before: float,
    used_after: float,
    limit: float,
    thresholds: Sequence[float],
    window: str,
    window_start: float,
) -> list[Alert]:
    """The thresholds of a budget that this request took the caller past
    (each once per window: the key names the window's start)."""
    if limit <= 0:
        return []
    out = []
    for t in thresholds:
        line = t * limit
        if used_before < line <= used_after:
            shown = (
                f"${used_after:,.2f} of ${limit:,.2f}"
                if unit == "usd"
                else (f"{int(used_after):,} of {int(limit):,} tokens")
            )
            out.append(
                Alert(
                    "budget",
                    f"budget:{caller}:{unit}:{int(window_start)}:{t:g}",
                    f"caller {caller} has used {t:.0%} of its {window} budget ({shown})",
                    (
                        ("caller", caller),
                        ("used", shown),
                        ("threshold", f"{t:.0%}"),
                        ("window", window),
                    ),
                    ttl=32 * 86_400.0,
                )
            )
    return out


def breaker_changed(provider: str, opened: bool, error: str, minute: int) -> Alert:
    """A provider's breaker opened (requests go elsewhere) or closed again;
    ``minute``: when, so each process reporting the same change makes one key."""
    state = "opened" if opened else "closed"
    text = (
        f"provider {provider}'s breaker opened: requests fail over ({error or 'failures'})"
        if opened
        else f"provider {provider}'s breaker closed: it serves again"
    )
    fields: tuple[tuple[str, str], ...] = (("provider", provider), ("breaker", state))
    if opened and error:
        fields = (*fields, ("last error", error[:200]))
    return Alert(
        "breaker", f"breaker:{provider}:{state}:{minute}", text, fields, ttl=120.0, good=not opened
    )


def credential_trouble(provider: str, what: str, detail: str, hour: int) -> Alert:
    """A provider's credential failed to refresh, or is about to expire
    (at most one alert per provider and trouble an hour)."""
    return Alert(
        "credential",
        f"credential:{provider}:{what}:{hour}",
        f"provider {provider}: {detail}",
        (("provider", provider), ("credential", what)),
        ttl=3600.0,
    )


def worker_restarted(description: str, host: str, pid: int) -> Alert:
    """The supervisor replaced a worker that exited on its own."""
    return Alert(
        "worker",
        f"worker:{host}:{pid}",
        f"a worker was restarted: {description}",
        (("worker", description),),
        ttl=3600.0,
    )
