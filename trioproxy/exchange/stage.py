"""The stage interface and the chain that composes stages; what the
stages are and in which order they run is in ``stages.py``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

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
