"""Test helpers: configs, servers on port 0, and real h11 / h2 clients."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h11
import hpack
import pytest
import trio
from hyperframe.frame import DataFrame, Frame, HeadersFrame

from trioproxy.config import Config, load_config
from trioproxy.fake.app import FakeUpstream
from trioproxy.proto.h2 import ConnectionEnded, GoAwaySplitter
from trioproxy.server import Server


def make_config(**overrides: Any) -> Config:
    """A Config from defaults plus TOML-keyed overrides (no environment). The
    state directory is a fresh temporary one unless given: tests never write
    into the user's own state. Drain has no grace unless a test asks for one
    (tests of drain itself do), so servers stop at once."""
    ov = {
        "listen": "127.0.0.1:0",
        "state_dir": tempfile.mkdtemp(prefix="trioproxy-test-state-"),
        "timeouts.drain_grace": 0,
        **{k.replace("__", "."): v for k, v in overrides.items()},
    }
    return load_config(env={}, overrides=ov)


@dataclass
class Running:
    server: Server
    port: int
    fake: FakeUpstream | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def start_fake(
    nursery: trio.Nursery, ssl_context: ssl.SSLContext | None = None, **cfg: Any
) -> Running:
    server = Server(make_config(**cfg), ssl_context=ssl_context)
    fake = FakeUpstream()
    port = await nursery.start(server.serve_app, fake)
    return Running(server, port, fake)


async def start_proxy(
    nursery: trio.Nursery, upstream: str, ssl_context: ssl.SSLContext | None = None, **cfg: Any
) -> Running:
    server = Server(make_config(upstream__url=upstream, **cfg), ssl_context=ssl_context)
    port = await nursery.start(server.serve)
    return Running(server, port)


@dataclass
class H1Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    chunks: list[tuple[float, bytes]] = field(default_factory=list)  # (arrival time, data)
    complete: bool = True

    def header(self, name: bytes) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


class H1Client:
    """A real h11 client over a real socket (or TLS stream)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def connect(cls, port: int, ssl_context: ssl.SSLContext | None = None) -> H1Client:
        stream: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", port)
        if ssl_context is not None:
            tls = trio.SSLStream(stream, ssl_context, server_hostname="localhost")
            try:
                await tls.do_handshake()
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
            stream = tls
        return cls(stream)

    async def send_request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        *,
        chunked: bool = False,
    ) -> None:
        hdrs = [("host", "example.test"), *(headers or [])]
        if (
            body is not None
            and not chunked
            and not any(k.lower() == "content-length" for k, _ in hdrs)
        ):
            hdrs.append(("content-length", str(len(body))))
        if chunked:
            hdrs.append(("transfer-encoding", "chunked"))
        data = self.conn.send(h11.Request(method=method, target=target, headers=hdrs))
        if body:
            data += self.conn.send(h11.Data(data=body))
        data += self.conn.send(h11.EndOfMessage())
        await self.stream.send_all(data)

    async def read_response(self) -> H1Response:
        status, headers = 0, []
        parts: list[bytes] = []
        chunks: list[tuple[float, bytes]] = []
        while True:
            try:
                ev = self.conn.next_event()
            except h11.RemoteProtocolError:
                return H1Response(status, headers, b"".join(parts), chunks, complete=False)
            if ev is h11.PAUSED:
                raise AssertionError("h11 client paused: use read_pipelined for pipelined requests")
            if ev is h11.NEED_DATA:
                try:
                    data = await self.stream.receive_some(65536)
                except trio.BrokenResourceError:
                    data = b""
                self.conn.receive_data(data)
                continue
            if isinstance(ev, h11.InformationalResponse):
                continue
            if isinstance(ev, h11.Response):
                status, headers = ev.status_code, list(ev.headers)
            elif isinstance(ev, h11.Data):
                parts.append(bytes(ev.data))
                chunks.append((time.monotonic(), bytes(ev.data)))
            elif isinstance(ev, h11.EndOfMessage):
                if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                    self.conn.start_next_cycle()
                return H1Response(status, headers, b"".join(parts), chunks)
            elif isinstance(ev, h11.ConnectionClosed):
                return H1Response(status, headers, b"".join(parts), chunks, complete=False)

    async def receive_some(self) -> bytes:
        """Raw bytes off the socket, also fed to the parser, so that a later
        read_response still sees the whole response."""
        data = await self.stream.receive_some(65536)
        if data:
            self.conn.receive_data(data)
        return data

    async def read_pipelined(self, methods: list[str]) -> list[H1Response]:
        """Responses to requests written raw (h11 clients cannot pipeline): one
        fresh parser per response, leftover bytes carried to the next."""
        out = []
        leftover, _ = self.conn.trailing_data
        for method in methods:
            self.conn = h11.Connection(h11.CLIENT)
            self.conn.send(h11.Request(method=method, target="/", headers=[("host", "x")]))
            self.conn.send(h11.EndOfMessage())
            if leftover:  # b"" would mean EOF to h11
                self.conn.receive_data(bytes(leftover))
            out.append(await self.read_response())
            leftover, _ = self.conn.trailing_data
        return out

    async def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
    ) -> H1Response:
        await self.send_request(method, target, headers, body)
        return await self.read_response()

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def __aenter__(self) -> H1Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def h1_request(
    port: int,
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes | None = None,
) -> H1Response:
    client = await H1Client.connect(port)
    try:
        return await client.request(method, target, headers, body)
    finally:
        await client.aclose()


@dataclass
class H2Result:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None
    done: trio.Event = field(default_factory=trio.Event)


class H2Client:
    """A real h2 client state machine over a socket; a reader task routes events."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.results: dict[int, H2Result] = {}
        self.goaway: ConnectionEnded | None = None
        self.goaway_seen = trio.Event()
        self.closed = trio.Event()  # the server ended the connection (end of file)
        self._splitter = GoAwaySplitter()  # h2 cannot keep streams going after a GOAWAY (h2#1181)
        self.window = trio.Event()
        self._send_lock = trio.Lock()

    @classmethod
    async def connect(
        cls, nursery: trio.Nursery, port: int, ssl_context: ssl.SSLContext | None = None
    ) -> H2Client:
        stream: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", port)
        if ssl_context is not None:
            tls = trio.SSLStream(stream, ssl_context, server_hostname="localhost")
            try:
                await tls.do_handshake()
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
            assert tls.selected_alpn_protocol() == "h2"
            stream = tls
        client = cls(stream)
        client.conn.initiate_connection()
        await client.flush()
        nursery.start_soon(client._reader)
        return client

    async def flush(self) -> None:
        async with self._send_lock:
            data = self.conn.data_to_send()
            if data:
                await self.stream.send_all(data)

    async def _reader(self) -> None:
        while True:
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                for r in self.results.values():
                    r.done.set()
                self.closed.set()
                return
            events: list[object] = []
            for piece in self._splitter.feed(data):
                if isinstance(piece, ConnectionEnded):
                    self.goaway = piece
                    self.goaway_seen.set()
                else:
                    events.extend(self.conn.receive_data(piece))
            for ev in events:
                sid = getattr(ev, "stream_id", None)
                r = self.results.get(sid) if sid else None
                if isinstance(ev, h2.events.ResponseReceived) and r:
                    for k, v in ev.headers:
                        if k == b":status":
                            r.status = int(v)
                        else:
                            r.headers.append((k, v))
                elif isinstance(ev, h2.events.DataReceived) and r:
                    r.body += ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded) and r:
                    r.ended = True
                    r.done.set()
                elif isinstance(ev, h2.events.StreamReset) and r:
                    r.reset = ev.error_code
                    r.done.set()
                elif isinstance(ev, h2.events.WindowUpdated):
                    self.window.set()
                    self.window = trio.Event()
            try:
                await self.flush()  # h2's answers: SETTINGS and PING ACKs, window updates
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                # The server closed after its final GOAWAY, or our owner closed
                # the socket: nothing more will come; what was read stands.
                for r in self.results.values():
                    r.done.set()
                self.closed.set()
                return

    async def start(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
    ) -> int:
        sid = self.conn.get_next_available_stream_id()
        self.results[sid] = H2Result()
        hdrs = [
            (":method", method),
            (":scheme", "http"),
            (":authority", "example.test"),
            (":path", path),
            *(headers or []),
        ]
        self.conn.send_headers(
            sid, [(k.encode(), v.encode()) for k, v in hdrs], end_stream=not body
        )
        await self.flush()
        if body:
            view = memoryview(body)
            while view:
                n = min(
                    self.conn.local_flow_control_window(sid),
                    self.conn.max_outbound_frame_size,
                    len(view),
                )
                if n <= 0:
                    await self.window.wait()
                    continue
                self.conn.send_data(sid, bytes(view[:n]), end_stream=len(view) == n)
                view = view[n:]
                await self.flush()
        return sid

    async def request(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
    ) -> H2Result:
        sid = await self.start(method, path, headers, body)
        await self.results[sid].done.wait()
        return self.results[sid]

    async def reset(self, sid: int) -> None:
        self.conn.reset_stream(sid, 8)
        await self.flush()

    async def aclose(self) -> None:
        await self.stream.aclose()


def unless_in_ci(missing: bool, reason: str) -> pytest.MarkDecorator:
    """Skip when a tool is missing on a developer's machine; in CI (`.ci/run`
    installs it) a missing tool is a failure, never a silent skip."""
    return pytest.mark.skipif(missing and not os.environ.get("CI"), reason=reason)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without TRIOPROXY_* settings, plus ``extra``
    (no drain grace unless ``extra`` sets one)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIOPROXY_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["TRIOPROXY_STATE_DIR"] = tempfile.mkdtemp(prefix="trioproxy-test-state-")
    env["TRIOPROXY_DRAIN_GRACE"] = "0"
    env.update(extra)
    return env


async def spawn_trioproxy(
    *args: str, env: dict[str, str], stdout: int | None = None, stderr: int | None = subprocess.PIPE
) -> trio.Process:
    """`python -m trioproxy ARGS` as a real process; pair with ``stop``."""
    return await trio.lowlevel.open_process(
        [sys.executable, "-m", "trioproxy", *args], env=env, stdout=stdout, stderr=stderr
    )


@dataclass
class Serving:
    """A `trioproxy serve` process that is listening, and what it logged."""

    proc: trio.Process
    port: int
    log: bytearray
    _grew: trio.Event = field(default_factory=trio.Event)

    async def logged(self, pattern: bytes) -> re.Match[bytes]:
        """Wait until the log matches ``pattern`` (the caller bounds it)."""
        while not (m := re.search(pattern, bytes(self.log))):
            await self._grew.wait()
        return m

    async def _read(self, stderr: trio.abc.ReceiveStream) -> None:
        while data := await stderr.receive_some(65536):
            self.log.extend(data)
            self._grew.set()
            self._grew = trio.Event()


@asynccontextmanager
async def serving(*args: str, env: dict[str, str]) -> AsyncIterator[Serving]:
    """`trioproxy serve --listen 127.0.0.1:0 ARGS` as a real process, from
    the moment it listens. Its stderr is read as it comes (a chatty proxy
    never blocks on a full pipe). Killed on the way out if still running."""
    proc = await spawn_trioproxy("serve", "--listen", "127.0.0.1:0", *args, env=env)
    assert proc.stderr is not None
    try:
        log = bytearray()
        with trio.fail_after(20):
            m = await read_until(proc.stderr, rb"listening on https?://127\.0\.0\.1:(\d+)", log)
        running = Serving(proc, int(m.group(1)), log)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(running._read, proc.stderr)
            yield running
            nursery.cancel_scope.cancel()
    finally:
        await stop(proc)


async def stop(proc: trio.Process) -> None:
    """Kill a test's process if it is still running (for finally blocks)."""
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def read_until(
    stream: trio.abc.ReceiveStream, pattern: bytes, seen: bytearray
) -> re.Match[bytes]:
    """Read a process's output until ``pattern`` matches; fail if it ends first."""
    while not (m := re.search(pattern, bytes(seen))):
        data = await stream.receive_some(65536)
        assert data, (
            f"process ended before {pattern!r}; output so far:\n{seen.decode(errors='replace')}"
        )
        seen += data
    return m


async def stream_through_sigterm(proxy: Serving, stream_body: bytes) -> None:
    """A stream in flight when ``proxy`` gets SIGTERM finishes whole."""
    async with await H1Client.connect(proxy.port) as c:
        await c.send_request(
            "POST", "/v1/messages", [("x-fake-fault", "event-delay=0.1")], stream_body
        )
        assert await c.receive_some()
        proxy.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            resp = await c.read_response()
    assert resp.complete and resp.body.endswith(b'data: {"type":"message_stop"}\n\n')


# -- HTTP/2 written and read frame by frame (hostile clients, races) ----------------
STREAM_BODY = (
    b'{"model":"claude-sonnet-4-6","max_tokens":64,"stream":true,'
    b'"messages":[{"role":"user","content":"hi"}]}'
)


def messages_frames(
    enc: hpack.Encoder,
    sid: int,
    extra: list[tuple[bytes, bytes]] | None = None,
    body: bytes = STREAM_BODY,
) -> bytes:
    """HEADERS and DATA of a ``POST /v1/messages`` on stream ``sid``."""
    head = HeadersFrame(sid)
    head.data = enc.encode(
        [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":authority", b"x"),
            (b":path", b"/v1/messages"),
            *(extra or []),
        ]
    )
    head.flags.add("END_HEADERS")
    data = DataFrame(sid)
    data.data = body
    data.flags.add("END_STREAM")
    return head.serialize() + data.serialize()


class Frames:
    """The frames a peer sent, parsed as its bytes are received."""

    def __init__(self) -> None:
        self._buf = b""
        self.seen: list[Frame] = []

    def feed(self, data: bytes) -> list[Frame]:
        """The frames ``data`` completed (all of them also kept in ``seen``)."""
        self._buf += data
        new: list[Frame] = []
        while len(self._buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self._buf[:9]))
            if len(self._buf) < 9 + length:
                break
            frame.parse_body(memoryview(self._buf[9 : 9 + length]))
            self._buf = self._buf[9 + length :]
            new.append(frame)
        self.seen += new
        return new
