"""The pool's bookkeeping is synchronous: drive it directly and assert on it."""

from __future__ import annotations

import trio.testing

from trioproxy.upstream.h1 import H1UpstreamConnection
from trioproxy.upstream.pool import PoolState


def conn() -> H1UpstreamConnection:
    a, _b = trio.testing.memory_stream_pair()
    return H1UpstreamConnection(a, max_head_bytes=65536, label="http://up")


def test_reserve_respects_max_connections() -> None:
    st = PoolState(max_connections=2, idle_timeout=60)
    assert st.reserve_new() and st.reserve_new()
    assert not st.reserve_new()
    assert st.total == 2
    st.open_failed()
    assert st.total == 1 and st.reserve_new()


def test_idle_lifo_expiry_and_release() -> None:
    st = PoolState(max_connections=4, idle_timeout=10)
    old, warm = conn(), conn()
    for c in (old, warm):
        assert st.reserve_new()
        st.opened(c)
    st.release_h1(old, True, now=100.0)
    st.release_h1(warm, True, now=105.0)
    assert "h1_idle=2 h1_active=0" in repr(st)
    got, dead = st.take_idle(now=106.0)
    assert got is warm and dead == []  # most recently used first
    got, dead = st.take_idle(now=111.0)  # `old` idled 11 s > 10 s
    assert got is None and dead == [old]
    assert st.total == 1  # only `warm`, leased out
    assert not st.release_h1(warm, False, now=112.0)  # not reusable: caller closes it
    assert st.total == 0 and "h1_idle=0 h1_active=0" in repr(st)


def test_broken_connection_is_never_reused() -> None:
    st = PoolState(max_connections=4, idle_timeout=10)
    c = conn()
    assert st.reserve_new()
    st.opened(c)
    st.release_h1(c, True, now=1.0)
    c.broken = True
    got, dead = st.take_idle(now=2.0)
    assert got is None and dead == [c]
