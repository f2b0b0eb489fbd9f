"""One request's bodies as they pass, kept by reference (loop side)."""

from __future__ import annotations

from trioproxy.proto.events import Headers


class Capture:
    """Filled by the log stages and the forwarding code; read once, in the
    writer thread (rows.py)."""

    __slots__ = (
        "cap",
        "request_chunks",
        "request_headers",
        "request_seen",
        "response_chunks",
        "response_headers",
        "response_seen",
        "sent",
    )

    def __init__(self, cap: int, request_headers: Headers) -> None:
        self.cap = cap  # bytes kept of each body
        self.request_headers = request_headers  # as the client sent them
        self.request_chunks: list[bytes] = []  # as read (a body no stage changed)
        self.request_seen = 0
        self.sent: bytes | None = None  # the body a JSON stage produced, as the upstream got it
        self.response_headers: Headers = []
        self.response_chunks: list[bytes] = []  # as arrived from the upstream
        self.response_seen = 0

    def keep_request(self, chunk: bytes) -> None:
        if self.request_seen < self.cap:
            self.request_chunks.append(chunk)
        self.request_seen += len(chunk)

    def went(self, body: bytes) -> None:
        """The body the upstream got, when a stage rewrote it (scrubbed,
        edited, translated): stored instead of what the client sent."""
        self.sent = body
        self.request_chunks = []

    def answering(self, headers: Headers) -> None:
        """A new answer starts (the first, or a retry's after an attempt
        that was read but never reached the client): only its bytes count."""
        self.response_headers = headers
        self.response_chunks = []
        self.response_seen = 0

    def keep_response(self, chunk: bytes) -> None:
        if self.response_seen < self.cap:
            self.response_chunks.append(chunk)
        self.response_seen += len(chunk)

    def answer(self, headers: Headers, body: bytes) -> None:
        """A whole answer the proxy made (its own errors), instead of the
        upstream's."""
        self.answering(headers)
        self.keep_response(body[: self.cap])
        self.response_seen = len(body)

    @property
    def held(self) -> int:
        """Bytes this capture keeps alive until it is written."""
        sent = len(self.sent) if self.sent is not None else 0
        return sent + min(self.request_seen, self.cap) + min(self.response_seen, self.cap)
