"""Protocol-level failures raised by the sans-IO adapters."""

from __future__ import annotations


class ProtocolError(Exception):
    """The peer broke the protocol. ``status`` is the HTTP status a server should
    answer with (when it still can); ``message`` is safe to show the peer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
