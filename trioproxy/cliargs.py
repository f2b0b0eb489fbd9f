"""Options a command shares with its actions, accepted on either side of
the action's name.

People type options last (``trioproxy callers add ci --config FILE``) as
often as first (``trioproxy callers --config FILE add ci``). argparse binds
an option to the parser it was declared on, so a command's option after
its action is an "unrecognized argument". Declaring it on the command and
again on each action, the action's copy with ``default=SUPPRESS``, makes
both orders mean the same: the action's copy sets the value only when it
is given, and then it wins.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any


def add_shared(
    command: argparse.ArgumentParser,
    actions: Iterable[argparse.ArgumentParser],
    *flags: str,
    **kwargs: Any,
) -> None:
    """``command.add_argument(*flags, **kwargs)``, and the same option on
    every parser of ``actions`` without a default of its own."""
    command.add_argument(*flags, **kwargs)
    for action in actions:
        action.add_argument(*flags, **{**kwargs, "default": argparse.SUPPRESS})
