"""Where in a raw JSON body a detector could match, found in one pass over
the bytes, before anything is parsed.

Theory of operation. Each detector has a *core* (detectors.py): a bytes
regex without lookaround that matches the raw JSON wherever the detector's
own pattern can match the decoded text. That holds because the parts of a
credential that the cores look at are ASCII characters that JSON encoders
write as themselves; the exceptions are ``\\/`` and ``\\u00XX`` for a
printable ASCII character, which no mainstream encoder emits by default
(PHP's ``json_encode`` writes ``\\/``). A body containing one of those is
reported as *unusual* and scrubbed the slow way, string by string. Whitespace
escapes (``\\n``, ``\\t``) are in the cores where a pattern allows whitespace.

So: no core hit means nothing to scrub and no parse at all; a few hits mean
only the JSON strings containing them are decoded and checked exactly.

Hyperscan (Intel's multi-regex engine, used by Suricata and ClamAV) runs all
cores in one SIMD pass: about 1 ms per MiB here, against about 0.5 ms per
MiB *per pattern* for Python's ``re`` (bench/scrub.py). Where no hyperscan
wheel exists the same cores run one by one through ``re``: slower, same
answers (tests/unit/test_scrub_prefilter.py checks they agree).
"""

from __future__ import annotations

import contextlib
import functools
import re
from dataclasses import dataclass
from typing import Protocol

from trioproxy.scrub.detectors import DETECTORS, Detector

# ``\/`` or ``\u0020``..``\u007f``: a character the cores expect verbatim,
# written as an escape. Backslash parity is not checked: ``\\/`` (an escaped
# backslash, then a slash) only costs the slow way.
UNUSUAL_ESCAPE = rb"\\(?:/|u00[2-7][0-9a-fA-F])"
NEAR_SPAN = 256  # bytes; the longest value a ``near`` regex matches, with room


@dataclass(frozen=True, slots=True)
class CoreHit:
    detector: Detector
    start: int  # byte offsets in the raw body, end exclusive
    end: int


@dataclass(frozen=True, slots=True)
class Scan:
    hits: list[CoreHit]
    unusual: bool  # an escape the cores cannot see through: check every string


class Scanner(Protocol):
    name: str

    def scan(self, raw: bytes) -> Scan: ...


def _confirm(raw: bytes, found: list[tuple[int, int, int]]) -> Scan:
    """Hits as CoreHits, keyword hits kept only with their value nearby."""
    hits: list[CoreHit] = []
    for index, start, end in found:
        d = DETECTORS[index]
        if d.near is not None:
            m = _near(d).search(raw, end, end + d.near[1] + NEAR_SPAN)
            if m is None:
                continue
            end = m.end()
        hits.append(CoreHit(d, start, end))
    hits.sort(key=lambda h: h.start)
    return Scan(hits, False)


@functools.lru_cache(maxsize=len(DETECTORS))
def _near(d: Detector) -> re.Pattern[bytes]:
    assert d.near is not None
    return re.compile(d.near[0])


class ReScanner:
    """Every core through ``re``, one after the other."""

    name = "re"

    def __init__(self) -> None:
        # Caseless cores (all lower case) run over a lower-cased copy: sre
        # searches a literal prefix fast, but not a caseless one (40x slower).
        self._cores = [(i, re.compile(d.core), d.caseless) for i, d in enumerate(DETECTORS)]
        self._unusual = re.compile(UNUSUAL_ESCAPE)

    def scan(self, raw: bytes) -> Scan:
        if self._unusual.search(raw):
            return Scan([], True)
        lowered = raw.lower()  # same length: byte offsets carry over
        found = [
            (i, m.start(), m.end())
            for i, core, caseless in self._cores
            for m in core.finditer(lowered if caseless else raw)
        ]
        return _confirm(raw, found)


class HyperscanScanner:
    """All cores in one pass. The compiled database carries its own scratch
    space, so one scanner must not scan from two threads at once; the proxy
    scrubs on the event loop's thread only."""

    name = "hyperscan"

    def __init__(self) -> None:
        import hyperscan

        self._hs = hyperscan
        self._unusual_id = len(DETECTORS)
        patterns = [d.core for d in DETECTORS] + [UNUSUAL_ESCAPE]
        som = hyperscan.HS_FLAG_SOM_LEFTMOST
        flags = [som | (hyperscan.HS_FLAG_CASELESS if d.caseless else 0) for d in DETECTORS]
        flags.append(hyperscan.HS_FLAG_SINGLEMATCH)
        self._db = hyperscan.Database()
        self._db.compile(
            expressions=patterns,
            ids=list(range(len(patterns))),
            elements=len(patterns),
            flags=flags,
        )

    def scan(self, raw: bytes) -> Scan:
        found: list[tuple[int, int, int]] = []
        unusual = False
        unusual_id = self._unusual_id

        def on_match(index: int, start: int, end: int, flags: int, context: object) -> bool:
            nonlocal unusual
            if index == unusual_id:
                unusual = True
                return True  # stop: the slow way checks every string anyway
            found.append((index, start, end))
            return False

        with contextlib.suppress(self._hs.ScanTerminated):  # raised when on_match stops it
            self._db.scan(raw, match_event_handler=on_match)
        if unusual:
            return Scan([], True)
        return _confirm(raw, found)


@functools.cache
def default_scanner() -> Scanner:
    """Built once (compiling the database takes ~10 ms); stateless after."""
    try:
        return HyperscanScanner()
    except ImportError:
        return ReScanner()
