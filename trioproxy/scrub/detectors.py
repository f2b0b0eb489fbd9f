"""What the scrubber looks for: credentials (secrets) and identifiers, in
priority order (an earlier detector wins an overlapping match).

Each detector is a regex over decoded text (JSON escapes already undone, so a
PEM block's ``\n`` are real newlines), plus:

* a *core*, a bytes regex over the raw JSON that matches wherever the
  pattern could match the decoded text (prefilter.py runs them all in one
  pass: no core hit, no parse);
* literal *anchors*, one of which occurs in any text the pattern matches: a
  substring check that skips the regex on most strings.

Boundaries: tokens are matched only where the characters around them could
not continue the token (``(?<![A-Za-z0-9_-])`` ... ``(?![A-Za-z0-9_-])``),
so a key inside a longer identifier or a hash is not cut out of it.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass

_B = r"(?<![A-Za-z0-9_\-])"  # token start: nothing token-like before it
_E = r"(?![A-Za-z0-9_\-])"  # token end
# The most raw JSON bytes one decoded character can take: a character
# outside the BMP written as a surrogate pair of escapes (``\ud83d\ude00``).
_RAW_PER_CHAR = 12


@dataclass(frozen=True, slots=True, eq=False)  # one object per detector: hash by identity
class Detector:
    name: str  # for metrics and the documentation
    label: str  # the placeholder's word: <LABEL_1>
    identifier: bool  # identifiers get HMAC placeholders, stable across requests
    pattern: re.Pattern[str]
    anchors: tuple[bytes, ...]  # one of these occurs in any text it matches
    group: int = 0  # the part of the match that is replaced
    # (back, forward): where a match can start (up to ``back`` characters
    # before an anchor) and how far on it can reach. The pattern is tried
    # anchored at those few places only; a scan by sre would try every
    # position of a long text (20 ns a character per detector, since a
    # leading lookbehind hides the literal prefix). None: a match starts at
    # an anchor and may run to the end of the text.
    window: tuple[int, int] | None = None
    # Finds the spans itself, instead of the pattern (which then documents it).
    locate: Callable[[str], list[tuple[int, int]]] | None = None
    # The prefilter (prefilter.py): a bytes regex without lookaround that
    # matches the *raw JSON* wherever ``pattern`` can match the decoded text;
    # ``near`` is a second regex that must match within that many bytes
    # after it (a keyword, then the value a few characters on).
    core: bytes = b""
    caseless: bool = False  # then ``core`` is written in lower case
    near: tuple[bytes, int] | None = None


_LOCAL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_DOMAIN_RE = r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9\-])"
_DOMAIN = re.compile(_DOMAIN_RE)


def _emails(text: str) -> list[tuple[int, int]]:
    """E-mail addresses, found from each '@' outwards: the general regex
    would try every word character of a long text as a possible start."""
    out: list[tuple[int, int]] = []
    at = text.find("@")
    while at != -1:
        start = at
        while start > 0 and at - start < 64 and text[start - 1] in _LOCAL:
            start -= 1
        # the local part starts with a letter or digit, and is all of it
        while start < at and not text[start].isalnum():
            start += 1
        ok = start < at and (start == 0 or text[start - 1] not in _LOCAL)
        m = _DOMAIN.match(text, at + 1) if ok else None
        if m is not None:
            out.append((start, m.end()))
            at = text.find("@", m.end())
        else:
            at = text.find("@", at + 1)
    return out


def _d(
    name: str,
    label: str,
    pattern: str,
    anchors: tuple[bytes, ...],
    *,
    group: int = 0,
    identifier: bool = False,
    flags: int = 0,
    window: tuple[int, int] | None = None,
    locate: Callable[[str], list[tuple[int, int]]] | None = None,
    core: bytes,
    caseless: bool = False,
    near: tuple[bytes, int] | None = None,
) -> Detector:
    # re.ASCII: the prefilter works on ASCII bytes, so no Unicode case
    # folding (the Kelvin sign is not a "k") and no Unicode digits here.
    return Detector(
        name,
        label,
        identifier,
        re.compile(pattern, flags | re.ASCII),
        anchors,
        group,
        window,
        locate,
        core,
        caseless,
        near,
    )


DETECTORS: tuple[Detector, ...] = (
    _d(
        "anthropic_key",
        "ANTHROPIC_KEY",
        _B + r"sk-ant-(?:api[0-9][0-9]|oat[0-9][0-9]|admin[0-9][0-9])-[A-Za-z0-9_\-]{20,}" + _E,
        (b"sk-ant-",),
        core=rb"sk-[A-Za-z0-9_\-]{20}",
    ),
    _d(
        "openai_key",
        "OPENAI_KEY",
        _B
        + r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}T3BlbkFJ[A-Za-z0-9_\-]{20,}"
        + _E
        + r"|"
        + _B
        + r"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{40,}"
        + _E
        + r"|"
        + _B
        + r"sk-[A-Za-z0-9]{48}"
        + _E,
        (b"sk-",),
        core=rb"sk-[A-Za-z0-9_\-]{20}",
    ),
    _d(
        "aws_access_key",
        "AWS_ACCESS_KEY",
        _B + r"(?:AKIA|ASIA)[A-Z0-9]{16}" + _E,
        (b"AKIA", b"ASIA"),
        core=rb"A[KS]IA[A-Z0-9]{16}",
    ),
    _d(
        "github_token",
        "GITHUB_TOKEN",
        _B + r"(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{60,255})" + _E,
        (b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_", b"github_pat_"),
        core=rb"gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{60}",
    ),
    _d(
        "google_api_key",
        "GOOGLE_API_KEY",
        _B + r"AIza[A-Za-z0-9_\-]{35}" + _E,
        (b"AIza",),
        core=rb"AIza[A-Za-z0-9_\-]{35}",
    ),
    _d(
        "stripe_key",
        "STRIPE_KEY",
        _B + r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,247}" + _E,
        (b"sk_live_", b"rk_live_", b"sk_test_", b"rk_test_"),
        core=rb"[sr]k_(?:live|test)_[A-Za-z0-9]{16}",
    ),
    _d(
        "private_key",
        "PRIVATE_KEY",
        r"-----BEGIN ((?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY)-----"
        r"[\s\S]{1,16384}?-----END \1-----",
        (b"PRIVATE KEY-----",),
        window=(len("-----BEGIN ENCRYPTED "), 16384 + 64),
        core=rb"PRIVATE KEY-----",
    ),
    _d(
        "jwt",
        "JWT",
        _B + r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}" + _E,
        (b"eyJ",),
        core=rb"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8}",
    ),
    _d(
        "db_connection_string",
        "DB_CONNECTION",
        r"(?<![A-Za-z0-9+])(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?)"
        r"://[^\s:@/\"'<>]+:([^\s@/\"'<>]+)@[^\s\"'<>]+",
        (b"://",),
        group=1,  # the password: the rest of the URL stays readable
        window=(16, 2048),
        core=rb"://[^\s:@/\"'<>]+:[^\s@/\"'<>]+@",
    ),
    _d(
        "bearer_token",
        "BEARER_TOKEN",
        r"(?<![A-Za-z])[Bb]earer[ \t]+([A-Za-z0-9_\-.~+/]{16,}=*)" + _E,
        (b"earer",),
        group=1,
        window=(2, 2048),
        core=rb"earer(?:[ \t]|\\t|\\u0009)+[A-Za-z0-9_\-.~+/]{16}",
    ),
    _d(
        "basic_auth",
        "BASIC_AUTH",
        r"(?<![A-Za-z])Basic[ \t]+([A-Za-z0-9+/]{12,}={0,2})(?![A-Za-z0-9+/=])",
        (b"Basic",),
        group=1,
        core=rb"Basic(?:[ \t]|\\t|\\u0009)+[A-Za-z0-9+/]{12}",
    ),
    _d(
        "sonarqube_token",
        "SONARQUBE_TOKEN",
        _B + r"sq[pua]_[a-f0-9]{40}" + _E,
        (b"sqp_", b"squ_", b"sqa_"),
        core=rb"sq[pua]_[a-f0-9]{40}",
    ),
    _d(
        "jenkins_api_token",
        "JENKINS_TOKEN",
        r"(?i)(?:jenkins|api[_\-]?token)[^\n]{0,40}?(?<![a-f0-9])([a-f0-9]{32,34})(?![a-f0-9])",
        (
            b"enkins",
            b"ENKINS",
            b"pi_token",
            b"pi-token",
            b"pitoken",
            b"piToken",
            b"PI_TOKEN",
            b"PI-TOKEN",
            b"PITOKEN",
            b"pi_Token",
        ),
        group=1,
        window=(2, 128),
        core=rb"jenkins|api[_\-]?token",
        caseless=True,
        near=(rb"[a-fA-F0-9]{32}", 40 * _RAW_PER_CHAR),
    ),
    _d(
        "ansible_vault",
        "ANSIBLE_VAULT",
        r"\$ANSIBLE_VAULT;1\.[12];AES256(?:;[^\n]*)?\n(?:[ \t]*[0-9a-f]+\n?)+",
        (b"$ANSIBLE_VAULT",),
        core=rb"\$ANSIBLE_VAULT;1\.[12];AES256",
    ),
    _d(
        "hashicorp_vault_token",
        "VAULT_TOKEN",
        _B
        + r"hv[sbr]\.[A-Za-z0-9_\-]{24,}"
        + _E
        + r"|(?i:vault)[^\n]{0,40}?"
        + _B
        + r"(s\.[A-Za-z0-9]{24})"
        + _E,
        (b"hvs.", b"hvb.", b"hvr.", b"ault", b"AULT"),
        group=1,  # the s. form; the hv?. form has no group 1 and is taken whole
        window=(2, 256),
        core=rb"s\.[A-Za-z0-9_\-]{24}",  # both forms: hvs.… and s.…
    ),
    _d(
        "slack_token",
        "SLACK_TOKEN",
        _B + r"xox[abprs]-[A-Za-z0-9\-]{10,}" + _E,
        (b"xox",),
        core=rb"xox[abprs]-[A-Za-z0-9\-]{10}",
    ),
    _d(
        "gitlab_token",
        "GITLAB_TOKEN",
        _B + r"glpat-[A-Za-z0-9_\-]{20,}" + _E,
        (b"glpat-",),
        core=rb"glpat-[A-Za-z0-9_\-]{20}",
    ),
    _d(
        "npm_token",
        "NPM_TOKEN",
        _B + r"npm_[A-Za-z0-9]{36}" + _E,
        (b"npm_",),
        core=rb"npm_[A-Za-z0-9]{36}",
    ),
    _d(
        "pypi_token",
        "PYPI_TOKEN",
        _B + r"pypi-AgE[A-Za-z0-9_\-]{50,}" + _E,
        (b"pypi-",),
        core=rb"pypi-AgE[A-Za-z0-9_\-]{50}",
    ),
    _d(
        "sendgrid_key",
        "SENDGRID_KEY",
        _B + r"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}" + _E,
        (b"SG.",),
        core=rb"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}",
    ),
    _d(
        "aws_secret_key",
        "AWS_SECRET_KEY",
        r"(?i:aws_?secret_?access_?key|aws_?secret)[\"']?\s{0,16}[:=]\s{0,16}[\"']?"
        r"(?<![A-Za-z0-9/+])([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
        (b"ecret", b"ECRET"),
        group=1,
        window=(24, 128),
        core=rb"aws_?secret",
        caseless=True,
        near=(rb"[A-Za-z0-9/+]{40}", 46 * _RAW_PER_CHAR),
    ),
    _d(
        "azure_storage_key",
        "AZURE_STORAGE_KEY",
        r"AccountKey=([A-Za-z0-9+/]{40,}={0,2})",
        (b"AccountKey=",),
        group=1,
        core=rb"AccountKey=[A-Za-z0-9+/]{40}",
    ),
    _d(
        "email",
        "EMAIL_HMAC",
        r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}@" + _DOMAIN_RE,
        (b"@",),
        identifier=True,
        locate=_emails,
        core=rb"@[A-Za-z0-9][A-Za-z0-9.\-]*\.[A-Za-z]{2}",
    ),
)

RANK = {d.name: i for i, d in enumerate(DETECTORS)}
ANCHORS = {d.name: tuple(a.decode() for a in d.anchors) for d in DETECTORS}


@dataclass(frozen=True, slots=True)
class Hit:
    start: int
    end: int
    detector: Detector


def email_allowed(value: str, allow: tuple[str, ...]) -> bool:
    """``allow`` holds addresses (``noreply@anthropic.com``) and domains
    (``example.com``, which covers its subdomains too), lower case."""
    value = value.lower()
    domain = value.rpartition("@")[2]
    return any(
        value == entry if "@" in entry else domain == entry or domain.endswith("." + entry)
        for entry in allow
    )


def without_allowed(text: str, hits: list[Hit], allow: tuple[str, ...]) -> list[Hit]:
    """The hits minus identifiers on the allowlist (``scrub.allow``)."""
    if not allow:
        return hits
    return [
        h
        for h in hits
        if not (h.detector.identifier and email_allowed(text[h.start : h.end], allow))
    ]


def find(text: str, detectors: tuple[Detector, ...] = DETECTORS) -> list[Hit]:
    """Non-overlapping hits in ``text``, by position; where two overlap, the
    detector earlier in DETECTORS wins."""
    found: list[tuple[int, int, int, Detector]] = []
    for d in detectors:
        if not any(a in text for a in ANCHORS[d.name]):
            continue  # cheap: a substring search instead of a regex scan
        rank = RANK[d.name]
        if d.locate is not None:
            found.extend((rank, s, e, d) for s, e in d.locate(text))
            continue
        for m in _matches(d, text):
            # An alternative without the group (hv?. tokens) is taken whole.
            g = d.group if d.group and m.group(d.group) is not None else 0
            start, end = m.span(g)
            if end > start:
                found.append((rank, start, end, d))
    found.sort(key=lambda t: (t[0], t[1], t[2]))  # never compares detectors
    # Rank by rank: a span is taken unless it overlaps one taken at an
    # earlier rank (two neighbours found by bisection: taken spans never
    # overlap, so sorted by start they are sorted by end too) or the last
    # one taken at its own rank (they come by start). Then the rank's spans
    # are merged in. Linear per rank: an env dump with 18,000 secrets took
    # 35 s when each span was checked against all the others.
    taken: list[Hit] = []
    for _, group in itertools.groupby(found, key=lambda t: t[0]):
        starts = [h.start for h in taken]
        fresh: list[Hit] = []
        for _, start, end, d in group:
            if fresh and fresh[-1].end > start:
                continue
            i = bisect.bisect_right(starts, start)
            if i > 0 and taken[i - 1].end > start:
                continue
            if i < len(taken) and taken[i].start < end:
                continue
            fresh.append(Hit(start, end, d))
        taken = list(heapq.merge(taken, fresh, key=lambda h: h.start))
    return taken


def _matches(d: Detector, text: str) -> list[re.Match[str]]:
    back, forward = d.window or (0, len(text))
    seen: dict[tuple[int, int], re.Match[str]] = {}
    for anchor in ANCHORS[d.name]:
        at = text.find(anchor)
        while at != -1:
            # Anchored tries at the few places a match can start: each fails
            # at once unless it is the start (no scan of the whole window).
            hi = min(len(text), at + len(anchor) + forward)
            for pos in range(max(0, at - back), at + 1):
                m = d.pattern.match(text, pos, hi)
                if m is not None:
                    seen.setdefault(m.span(), m)
                    break
            at = text.find(anchor, at + 1)
    return list(seen.values())
