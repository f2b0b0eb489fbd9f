"""The sd_notify protocol (systemd's Type=notify), in a few lines.

A datagram to $NOTIFY_SOCKET (an abstract socket when it starts with `@`).
Called at start, reload and stop only, never on the hot path, so a plain
blocking send on a local datagram socket is fine. Outside systemd it does
nothing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


def notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send e.g. "READY=1" or "STOPPING=1"; False when not under systemd."""
    address = (os.environ if env is None else env).get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        sock.sendall(message.encode())
    return True
