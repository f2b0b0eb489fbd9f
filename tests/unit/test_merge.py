"""Many workers, one view: merging snapshots, rendering a merged one, and the
supervisor's tally of workers that come and go."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trioproxy.accounting.merge import counters, merge, merge_histograms
from trioproxy.accounting.metrics import DURATION_BUCKETS, Histogram, Metrics
from trioproxy.accounting.record import RequestRecord
from trioproxy.accounting.usage import Usage
from trioproxy.workers.tally import Tally


def metrics(*records: tuple[int, str, float, int]) -> Metrics:
    """(status, caller, duration, output tokens) each."""
    m = Metrics()
    for status, caller, duration, out in records:
        r = RequestRecord(request_id="r", method="POST", path="/v1/messages", protocol="h1")
        r.status, r.caller, r.duration_s, r.provider = status, caller, duration, "anthropic"
        r.model_requested, r.bytes_in, r.bytes_out = "claude-x", 10, 20
        r.usage = Usage(output_tokens=out, model="claude-x")
        m.observe(r)
    return m


def live(m: Metrics, in_flight: int = 0, draining: bool = False) -> dict[str, Any]:
    """A worker's snapshot as admin/snapshot.py builds it."""
    return {
        "time": 1.0,
        **m.snapshot(),
        "in_flight": in_flight,
        "active": {"h1": in_flight, "h2": 0},
        "watchers": 0,
        "connections": {"h1": 1, "h2": 0},
        "pools": {
            "anthropic": {"h1_idle": 1, "h1_active": 0, "h2": 0, "opening": 0, "h2_streams": 0}
        },
        "draining": draining,
        "uptime_s": 5.0,
        "routing": {
            "mode": "failover",
            "provider": None,
            "providers": [
                {"name": "anthropic", "in_flight": in_flight, "retries": 1, "failovers": 0}
            ],
        },
    }


def test_merge_adds_counters_histograms_and_gauges() -> None:
    a = metrics((200, "alice", 0.2, 5), (200, "bob", 3.0, 7))
    b = metrics((200, "alice", 0.02, 11), (529, "alice", 0.001, 0))
    both = metrics(
        (200, "alice", 0.2, 5),
        (200, "bob", 3.0, 7),
        (200, "alice", 0.02, 11),
        (529, "alice", 0.001, 0),
    )
    merged = merge([live(a, in_flight=2), live(b, in_flight=1, draining=True)])
    whole = both.snapshot()
    for key in ("requests", "tokens", "bytes", "duration_s", "time_to_headers_s"):
        assert merged[key] == whole[key], key
    assert merged["in_flight"] == 3 and merged["active"] == {"h1": 3, "h2": 0}
    assert merged["pools"]["anthropic"]["h1_idle"] == 2
    assert merged["draining"] is False  # one worker still serves: the server is not draining
    assert merged["workers"] == 2
    assert merged["routing"]["providers"][0]["in_flight"] == 3
    assert merged["routing"]["providers"][0]["retries"] == 2


def test_a_merged_snapshot_renders_like_one_registry() -> None:
    a = metrics((200, "alice", 0.2, 5))
    b = metrics((200, "alice", 0.3, 7), (500, "ci", 40.0, 0))
    both = metrics((200, "alice", 0.2, 5), (200, "alice", 0.3, 7), (500, "ci", 40.0, 0))
    merged = merge([live(a), live(b)])
    assert Metrics.from_snapshot(merged).prometheus({}) == both.prometheus({})
    assert Metrics.from_snapshot(both.snapshot()).snapshot() == both.snapshot()


@given(st.lists(st.lists(st.floats(0, 1000), max_size=20), min_size=1, max_size=4))
def test_histograms_merge_as_if_observed_by_one(groups: list[list[float]]) -> None:
    one = Histogram(DURATION_BUCKETS)
    parts = []
    for values in groups:
        h = Histogram(DURATION_BUCKETS)
        for v in values:
            h.observe(v)
            one.observe(v)
        parts.append(h.snapshot())
    merged = merge_histograms(parts)
    expected = one.snapshot()
    assert merged["buckets"] == expected["buckets"]
    assert merged["count"] == expected["count"]
    assert merged["p50_le"] == expected["p50_le"] and merged["p99_le"] == expected["p99_le"]
    # Each snapshot's sum is rounded to 6 decimals, so the merged sum may be
    # off by half a millionth per part (hypothesis found 0.328125 + 0.3359375).
    assert merged["sum"] == pytest.approx(expected["sum"], abs=1e-6 * len(groups))


def test_histograms_with_other_buckets_are_refused() -> None:
    h1, h2 = Histogram((1.0, 2.0)), Histogram((1.0, 3.0))
    with pytest.raises(ValueError):
        merge_histograms([h1.snapshot(), h2.snapshot()])


def test_tally_keeps_what_exited_workers_counted() -> None:
    """Totals never go down across a reload: a worker's last report stays in."""
    tally = Tally()
    old, new = object(), object()
    tally.reported(old, None, live(metrics((200, "alice", 0.1, 1), (200, "alice", 0.1, 1))))
    tally.reported(new, None, live(metrics((200, "alice", 0.1, 1))))
    tally.gone(old)
    assert set(counters(tally.departed or {})) >= {"requests", "duration_s"}
    rid, round_ = tally.open_round([new])
    assert not round_.done.is_set()
    tally.reported(new, rid, live(metrics((200, "alice", 0.1, 1), (200, "bob", 0.1, 1))))
    assert round_.done.is_set()
    view = tally.result(rid, new)
    assert view is not None
    assert sum(r["count"] for r in view["requests"]) == 4  # 2 gone + 2 live
    assert view["workers"] == 1 and view["duration_s"]["count"] == 4
    assert tally.rounds == {}


def test_a_round_ends_when_the_silent_worker_exits() -> None:
    tally = Tally()
    a, b = object(), object()
    tally.reported(a, None, live(metrics()))
    tally.reported(b, None, live(metrics((200, "x", 1.0, 1))))
    rid, round_ = tally.open_round([a, b])
    tally.reported(a, rid, live(metrics((200, "x", 1.0, 1))))
    assert not round_.done.is_set()
    tally.gone(b)
    assert round_.done.is_set()
    view = tally.result(rid, a)
    assert view is not None and sum(r["count"] for r in view["requests"]) == 2


def test_first_token_histograms_merge_per_provider_and_model() -> None:
    from trioproxy.accounting.merge import merge
    from trioproxy.accounting.metrics import Metrics
    from trioproxy.accounting.record import RequestRecord

    snaps = []
    for delays in ([0.1, 0.3], [0.2]):
        m = Metrics()
        for d in delays:
            r = RequestRecord("r", "POST", "/v1/messages", "h1", status=200, provider="a")
            r.usage.model = "claude-x"
            r.time_to_first_byte_s = d
            m.observe(r)
        snaps.append(m.snapshot())
    merged = merge(snaps)["time_to_first_token_s"]
    assert [(x["provider"], x["model"], x["histogram"]["count"]) for x in merged] == [
        ("a", "claude-x", 3)
    ]
    assert merged[0]["histogram"]["sum"] == pytest.approx(0.6)
    text = Metrics.from_snapshot({**snaps[0], **{"time_to_first_token_s": merged}}).prometheus({})
    assert b'trioproxy_time_to_first_token_seconds_count{provider="a",model="claude-x"} 3' in text
