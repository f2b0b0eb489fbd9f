"""The supervisor's decisions, as pure functions."""

from __future__ import annotations

import signal

RESTART_FIRST = 0.5  # seconds before the first restart of a worker that died
RESTART_MAX = 30.0  # seconds; the backoff's ceiling
STABLE_AFTER = 30.0  # seconds; a worker that lived this long resets its backoff


def worker_count(configured: int, cpus: int) -> int:
    """``workers`` (0 means "auto": one per CPU this process may run on)."""
    return configured if configured > 0 else max(1, cpus)


def restart_delay(failures: int) -> float:
    """Seconds to wait before restarting a worker after ``failures`` deaths
    in a row: doubling from RESTART_FIRST up to RESTART_MAX, so a worker that
    cannot start does not spin a CPU, and one that crashed once is back
    at once."""
    if failures <= 0:
        return 0.0
    return min(RESTART_MAX, RESTART_FIRST * float(2 ** (failures - 1)))


def failures_after(previous: int, lived_s: float) -> int:
    """The count of deaths in a row, after a worker died having lived ``lived_s``."""
    return 1 if lived_s >= STABLE_AFTER else previous + 1


def describe_exit(returncode: int) -> str:
    """``returncode`` as a person reads it: "exited with code 3", "was
    killed by SIGKILL" (a negative code is the signal, as subprocess says)."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with code {returncode}"
