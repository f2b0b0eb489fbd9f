"""The supervisor <-> worker channel, sans-IO: messages are JSON documents,
one per line, over a Unix socket pair; the worker learns its inherited file
descriptors from one command-line argument (``--worker-fds``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

MAX_LINE = 1 << 20  # bytes; a message longer than this is a broken peer

# Messages, each a JSON object named by its first key.
# Worker -> supervisor:
READY = "ready"  # {"ready": pid}: accepting
RETIRED = "retired"  # {"retired": pid}: no longer accepting, after "retire"
REPORT = "report"  # {"report": id | null, "snapshot": {...}}: asked for (id), or a heartbeat
GATHER = "gather"  # {"gather": id}: send me every worker's snapshot merged
TELL_OTHERS = "tell_others"  # {"tell_others": message}: pass it to every other worker
# Supervisor -> worker:
RETIRE = "retire"  # {"retire": true}: stop accepting and drain
GATHERED = "gathered"  # {"gathered": id, "snapshot": {...}}: the answer to "gather"
REPLACED = (
    "replaced"  # {"replaced": "worker 1 (pid 9) killed by signal 9 after 3.1 s"}: you replace it
)
ROUTE = "route"  # {"route": {"mode": ..., "provider": ...}}: another worker's switch
# (and {"report": id}: send your snapshot)


def encode(message: dict[str, Any]) -> bytes:
    return orjson.dumps(message) + b"\n"


class LineDecoder:
    """Bytes in, messages out; a partial line waits for the rest."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """The complete messages in ``data`` (with what came before). Raises
        ValueError on a line that is not a JSON object or is too long."""
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        if len(self._buf) > MAX_LINE:
            raise ValueError("control line too long")
        out: list[dict[str, Any]] = []
        for line in lines:
            if not line:
                continue
            msg = orjson.loads(line)
            if not isinstance(msg, dict):
                raise ValueError("control message is not a JSON object")
            out.append(msg)
        return out


@dataclass(frozen=True, slots=True)
class WorkerFds:
    """What a worker inherits: its slot number (for its log lines), the main
    listeners, the admin listeners (maybe none) and its end of the control
    channel, as file descriptors."""

    slot: int
    listen: tuple[int, ...]
    admin: tuple[int, ...]
    control: int

    def format(self) -> str:
        """As one argument: ``slot=0;listen=3,4;admin=5;control=6``."""
        return (
            f"slot={self.slot};listen={','.join(map(str, self.listen))};"
            f"admin={','.join(map(str, self.admin))};control={self.control}"
        )

    @property
    def all(self) -> tuple[int, ...]:
        return (*self.listen, *self.admin, self.control)

    @classmethod
    def parse(cls, spec: str) -> WorkerFds:
        """The inverse of ``format``; ValueError when it is not one."""
        parts = dict(p.split("=", 1) for p in spec.split(";") if p)
        if set(parts) != {"slot", "listen", "admin", "control"}:
            raise ValueError(f"bad --worker-fds {spec!r}")

        def fds(text: str) -> tuple[int, ...]:
            return tuple(int(x) for x in text.split(",") if x)

        listen = fds(parts["listen"])
        if not listen:
            raise ValueError(f"bad --worker-fds {spec!r}: no listener")
        return cls(int(parts["slot"]), listen, fds(parts["admin"]), int(parts["control"]))
