"""The supervisor's pure parts: its decisions, the worker's inherited-fd
argument and the control channel's line framing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trioproxy.config import ConfigError, load_config
from trioproxy.workers.channel import LineDecoder, WorkerFds, encode
from trioproxy.workers.policy import (
    RESTART_MAX,
    STABLE_AFTER,
    describe_exit,
    failures_after,
    restart_delay,
    worker_count,
)


def test_worker_count_auto_is_one_per_cpu() -> None:
    assert worker_count(3, cpus=8) == 3
    assert worker_count(0, cpus=4) == 4
    assert worker_count(0, cpus=0) == 1


def test_workers_setting() -> None:
    assert load_config(env={}).workers == 1
    assert load_config(env={"TRIOPROXY_WORKERS": "auto"}).workers == 0
    assert load_config(env={}, overrides={"workers": "3"}).workers == 3
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(ConfigError, match="TRIOPROXY_WORKERS"):
            load_config(env={"TRIOPROXY_WORKERS": bad})


def test_restart_backoff_doubles_to_a_ceiling_and_resets_after_a_stable_run() -> None:
    assert [restart_delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert restart_delay(50) == RESTART_MAX
    assert failures_after(5, lived_s=1.0) == 6  # crashing again at once: back off more
    assert failures_after(5, lived_s=STABLE_AFTER) == 1  # it ran fine for a while: restart soon


def test_exit_descriptions() -> None:
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-9) == "was killed by SIGKILL"
    assert describe_exit(-200) == "was killed by signal 200"


def test_worker_fds_round_trip_and_refusals() -> None:
    fds = WorkerFds(slot=2, listen=(3, 4), admin=(), control=7)
    assert WorkerFds.parse(fds.format()) == fds
    assert fds.all == (3, 4, 7)
    for bad in ("", "listen=3;admin=;control=4", "slot=0;listen=;admin=;control=4", "slot=x"):
        with pytest.raises(ValueError):
            WorkerFds.parse(bad)


@given(st.lists(st.integers(min_value=1, max_value=40), max_size=8))
def test_line_decoder_any_split(cuts: list[int]) -> None:
    """However the bytes arrive, the same messages come out, in order."""
    messages = [{"ready": 123}, {"retire": True}, {"n": "x" * 50}]
    wire = b"".join(encode(m) for m in messages)
    decoder, out, at = LineDecoder(), [], 0
    for cut in cuts:
        out += decoder.feed(wire[at : at + cut])
        at += cut
    out += decoder.feed(wire[at:])
    assert out == messages


def test_line_decoder_refuses_garbage() -> None:
    with pytest.raises(ValueError):
        LineDecoder().feed(b"[1, 2]\n")
    with pytest.raises(ValueError):
        LineDecoder().feed(b"not json\n")
