"""Budget alerts: the thresholds (``alerts.budget_thresholds``) a finished
request took its caller past, from the caller's spend before and after it
(the book's view: this process's counts and the others', synced)."""

from __future__ import annotations

from collections.abc import Sequence

from trioproxy.alerts.events import Alert, budget_crossed
from trioproxy.callers.book import CallerBook
from trioproxy.callers.policy import Spend, budget_window
from trioproxy.config.model import Caller


def budget_alerts(
    caller: Caller, before: Spend, book: CallerBook, thresholds: Sequence[float]
) -> list[Alert]:
    budget = caller.budget
    if budget is None:
        return []
    now = book.wall()
    after = book.spend(caller, now)
    start, _ = budget_window(budget.window, now)
    out: list[Alert] = []
    if budget.usd is not None:
        out += budget_crossed(
            caller.name, "usd", before.usd, after.usd, budget.usd, thresholds, budget.window, start
        )
    if budget.tokens is not None:
        out += budget_crossed(
            caller.name,
            "tokens",
            before.tokens,
            after.tokens,
            budget.tokens,
            thresholds,
            budget.window,
            start,
        )
    return out
