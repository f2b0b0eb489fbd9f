"""The stage interface and the chain that composes stages; what the
stages are and in which order they run is in ``stages.py``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trioproxy.errors import UpstreamError
from trioproxy.proto.events import ResponseHead

if TYPE_CHECKING:
    from trioproxy.accounting.record import RequestRecord
    from trioproxy.config.model import ProviderConfig


@dataclass(frozen=True, slots=True)
class Leg:
    """One provider's attempt at the request, as the per-provider stages
    decided it (stages.prepare): what the answer's stages follow."""

    provider: ProviderConfig
    payload: bytes | None  # the body as this provider gets it (None: streamed as it came)
    demoted: bool = False  # a non-streaming request asked as a stream: rebuild the answer
    translated: bool = False  # a Chat Completions provider: translate the answer
    target: bytes | None = None  # the provider's own path for the request (a cloud's)
    headers: tuple[tuple[bytes, bytes], ...] = ()  # what the cloud's dialect adds to the head


class Stage:
    """The interface, with the identity as every default."""

    __slots__ = ()
    whole = False

    def head(self, head: ResponseHead) -> ResponseHead:
        return head

    def feed(self, chunk: bytes) -> bytes:
        return chunk

    def end(self) -> bytes:
        return b""

    def idle(self) -> bytes:
        """What to write when the upstream has said nothing for a while
        (``stream_keepalive_s``); the relay asks, the stage decides."""
        return b""

    def settle(self, record: RequestRecord, *, complete: bool) -> None:
        """The message is over (``complete``: all of it passed): what the
        stage found goes into the request's record. Its one result."""


class Chain:
    """Stages run in order: each one's output is the next one's input."""

    __slots__ = ("stages", "whole")

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = tuple(stages)
        self.whole = any(s.whole for s in self.stages)

    def head(self, head: ResponseHead) -> ResponseHead:
        for s in self.stages:
            head = s.head(head)
        return head

    def feed(self, chunk: bytes) -> bytes:
        for s in self.stages:
            if not chunk:
                return b""
            chunk = s.feed(chunk)
        return chunk

    def end(self) -> bytes:
        """Whatever each stage still holds, passed through the ones after it."""
        return self._each(lambda s: s.end())

    def settle(self, record: RequestRecord, *, complete: bool) -> None:
        for s in self.stages:
            s.settle(record, complete=complete)

    def idle(self) -> bytes:
        """What stages write during the upstream's silence, passed through
        the ones after each (never through the ones before: a usage
        observer never sees a ping as upstream bytes)."""
        return self._each(lambda s: s.idle())

    def _each(self, produce: Callable[[Stage], bytes]) -> bytes:
        pending = b""
        for s in self.stages:
            if pending:
                pending = s.feed(pending)
            pending += produce(s)
        return pending


def without_length(head: ResponseHead) -> ResponseHead:
    return ResponseHead(
        head.status, [(n, v) for n, v in head.headers if n != b"content-length"], head.reason
    )


WHOLE_JSON_MAX = 32 * 1024 * 1024  # bytes of an answer a whole-JSON stage keeps


class WholeJSON(Stage):
    """An answer translated whole (its status and length may change): the
    chunks are kept (within WHOLE_JSON_MAX), the head becomes JSON with
    ``_status``, plus a ``retry-after`` from ``wait()`` where the upstream
    gave none. Subclasses make the body in ``end`` from ``_data()``."""

    __slots__ = ("_chunks", "_size", "_status")
    whole = True

    def __init__(self, status: int) -> None:
        self._status = status
        self._chunks: list[bytes] = []
        self._size = 0

    def wait(self) -> int | None:
        """Seconds of ``retry-after`` the translated status is worth."""
        return None

    def head(self, head: ResponseHead) -> ResponseHead:
        drop = (b"content-type", b"content-length")
        headers = [(n, v) for n, v in head.headers if n not in drop]
        headers.append((b"content-type", b"application/json"))
        wait = self.wait()
        if wait is not None and head.header(b"retry-after") is None:
            headers.append((b"retry-after", str(wait).encode()))
        return ResponseHead(self._status, headers, b"")

    def feed(self, chunk: bytes) -> bytes:
        self._size += len(chunk)
        if self._size > WHOLE_JSON_MAX:
            raise UpstreamError(f"the provider's answer is over {WHOLE_JSON_MAX} bytes")
        self._chunks.append(chunk)
        return b""

    def _data(self) -> bytes:
        return b"".join(self._chunks)
