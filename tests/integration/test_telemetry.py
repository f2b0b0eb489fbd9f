"""OpenTelemetry traces ([telemetry], the OTEL_* variables) against a
receiver in the test, built on opentelemetry-proto: what a collector
would decode is what is checked."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.helpers import Running, clean_env, h1_request, make_config, serving
from tests.integration.test_auth import access_lines
from trioproxy.config import load_config
from trioproxy.fake.app import FakeUpstream
from trioproxy.inbound.exchange import ClientExchange, respond
from trioproxy.proto.events import ResponseHead
from trioproxy.server import Server

GH = "ghp_" + "a1B2c3D4e5" * 3 + "f6G7h8"  # a GitHub token in the prompt: scrubbed
PROMPT = "tell me about penguins"
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
STREAM = orjson.dumps(
    {
        "model": "claude-sonnet-4-5",
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": f"{PROMPT} {GH}"}],
    }
)


class Receiver:
    """An OTLP/HTTP trace receiver: decodes what it is sent."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []
        self.spans: list[Any] = []  # (resource attributes, span)
        self.metrics: list[Any] = []  # ExportMetricsServiceRequest
        self.down = False
        self.refused = 0
        self.arrived = trio.Event()
        self.headers: deque[list[tuple[bytes, bytes]]] = deque(maxlen=10)

    async def __call__(self, ex: ClientExchange) -> None:
        parts = []
        while (chunk := await ex.receive_body()) is not None:
            parts.append(chunk.data)
            ex.ack(chunk.flow_controlled_length)
        if self.down:
            self.refused += 1
            await respond(ex, ResponseHead(503, [(b"content-length", b"0")]), b"")
            return
        body = b"".join(parts)
        self.raw.append(body)
        self.headers.append(list(ex.head.headers))
        if ex.head.path == b"/v1/metrics":
            self.metrics.append(ExportMetricsServiceRequest.FromString(body))
            self.arrived.set()
            await respond(ex, ResponseHead(200, [(b"content-length", b"0")]), b"")
            return
        request = ExportTraceServiceRequest.FromString(body)
        for rs in request.resource_spans:
            resource = {a.key: a.value.string_value for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                self.spans.extend((resource, s) for s in ss.spans)
        self.arrived.set()
        answer = ExportTraceServiceResponse().SerializeToString()
        head = [
            (b"content-type", b"application/x-protobuf"),
            (b"content-length", str(len(answer)).encode()),
        ]
        await respond(ex, ResponseHead(200, head), answer)

    async def wait_for(self, n: int, seconds: float = 15) -> None:
        with trio.fail_after(seconds):
            while len(self.spans) < n:
                self.arrived = trio.Event()
                await self.arrived.wait()


def attrs(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in span.attributes:
        v = a.value
        kind = v.WhichOneof("value")
        out[a.key] = (
            list(x.string_value for x in v.array_value.values)
            if kind == "array_value"
            else getattr(v, kind)
        )
    return out


async def traced(nursery: trio.Nursery, **cfg: Any) -> tuple[Receiver, FakeUpstream, Running]:
    """A receiver, a fake upstream, and a proxy exporting to the one in
    front of the other (``cfg``: more settings)."""
    receiver = Receiver()
    rport = await nursery.start(Server(make_config()).serve_app, receiver)
    up = FakeUpstream()
    up_port = await nursery.start(Server(make_config()).serve_app, up)
    server = Server(
        make_config(
            upstream__url=f"http://127.0.0.1:{up_port}",
            telemetry__endpoint=f"http://127.0.0.1:{rport}",
            **cfg,
        )
    )
    return receiver, up, Running(server, await nursery.start(server.serve))


@pytest.fixture(autouse=True)
def quick_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # the SDK's own variables
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "300")


async def test_a_failover_is_one_trace_with_two_attempts_and_nothing_secret(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.INFO, logger="trioproxy.access")
    receiver = Receiver()
    rport = await nursery.start(Server(make_config()).serve_app, receiver)
    down, up = FakeUpstream(faults=b"529"), FakeUpstream()
    down_port = await nursery.start(Server(make_config()).serve_app, down)
    up_port = await nursery.start(Server(make_config()).serve_app, up)
    for name in ("first", "second"):
        (tmp_path / name).write_text(f"sk-ant-{name}")
    providers = [
        {
            "name": "first",
            "base_url": f"http://127.0.0.1:{down_port}",
            "api_key_file": str(tmp_path / "first"),
            "retries": 0,
        },
        {
            "name": "second",
            "base_url": f"http://127.0.0.1:{up_port}",
            "api_key_file": str(tmp_path / "second"),
        },
    ]
    server = Server(
        make_config(
            providers=providers,
            telemetry__endpoint=f"http://127.0.0.1:{rport}",
            telemetry__headers="x-collector-key=collector-secret-42",
            telemetry__resource_attributes="deployment.environment=test",
            scrub__mode="pseudonymize",
            scrub__hmac_key="ab" * 32,
        )
    )
    proxy = Running(server, await nursery.start(server.serve))
    parent = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
    r = await h1_request(proxy.port, "POST", "/v1/messages", [("traceparent", parent)], STREAM)
    assert r.status == 200 and b"message_stop" in r.body
    await receiver.wait_for(4)  # the server span, the routing decision, two attempts
    await trio.sleep(0.3)
    spans = [s for _, s in receiver.spans]
    assert {s.trace_id.hex() for s in spans} == {CLIENT_TRACE}
    (server_span,) = [s for s in spans if s.kind == s.SPAN_KIND_SERVER]
    assert server_span.parent_span_id.hex() == CLIENT_SPAN
    assert server_span.name == "POST /v1/messages"
    attempts = sorted(
        (s for s in spans if s.kind == s.SPAN_KIND_CLIENT), key=lambda s: s.start_time_unix_nano
    )
    assert len(attempts) == 2 and all(s.parent_span_id == server_span.span_id for s in attempts)
    first, second = (attrs(s) for s in attempts)
    assert first["trioproxy.provider"] == "first" and first["http.response.status_code"] == 529
    assert attempts[0].status.code == attempts[0].status.STATUS_CODE_ERROR
    assert second["gen_ai.system"] == "anthropic" and second["gen_ai.operation.name"] == "chat"
    assert second["gen_ai.request.model"] == "claude-sonnet-4-5"
    assert second["gen_ai.response.model"] and second["server.address"] == "127.0.0.1"
    assert second["gen_ai.response.finish_reasons"] == ["end_turn"]
    events = [e.name for e in server_span.events]
    assert "failover" in events and "scrub" in events
    # Counts that are not zero, and the model only where an attempt says it.
    served = attrs(server_span)
    assert served["trioproxy.failovers"] == 1 and "trioproxy.retries" not in served
    assert "gen_ai.request.model" not in served and served["trioproxy.caller"]
    (route,) = [s for s in spans if s.name == "route"]
    assert route.kind == route.SPAN_KIND_INTERNAL and route.parent_span_id == server_span.span_id
    resource = receiver.spans[0][0]
    assert resource["service.name"] == "trioproxy" and resource["deployment.environment"] == "test"
    assert resource["service.instance.id"]
    with trio.fail_after(5):
        while not (lines := access_lines(caplog)):  # noqa: ASYNC110 (the journal writes)
            await trio.sleep(0.05)
    (line,) = lines
    for ours, theirs in (
        ("gen_ai.usage.input_tokens", "input_tokens"),
        ("gen_ai.usage.output_tokens", "output_tokens"),
        ("gen_ai.usage.cache_read.input_tokens", "cache_read_input_tokens"),
        ("gen_ai.usage.cache_creation.input_tokens", "cache_creation_input_tokens"),
    ):
        assert second[ours] == line[theirs], ours
    # The upstream that served got a traceparent in the same trace, its parent the attempt.
    sent = dict(up.seen[-1].headers)[b"traceparent"].decode()
    assert sent == f"00-{CLIENT_TRACE}-{attempts[1].span_id.hex()}-01"
    # The collector got its header; nothing of the prompt, the secret, a
    # placeholder or a key is in what was exported.
    assert (b"x-collector-key", b"collector-secret-42") in receiver.headers[0]
    exported = b"".join(receiver.raw)
    for never in (
        PROMPT,
        "penguins",
        GH,
        "sk-ant-first",
        "sk-ant-second",
        "collector-secret-42",
        "REDACTED",
        "ghp_",
    ):
        assert never.encode() not in exported, never


async def test_a_new_trace_without_a_traceparent_and_sampling_off(
    nursery: trio.Nursery,
) -> None:
    for sampler, expect in (("always_on", True), ("always_off", False)):
        receiver, up, proxy = await traced(nursery, telemetry__traces_sampler=sampler)
        before = len(receiver.spans)
        r = await h1_request(proxy.port, "POST", "/v1/messages", [], STREAM)
        assert r.status == 200
        sent = dict(up.seen[-1].headers)[b"traceparent"].decode()
        assert sent.endswith("-01" if expect else "-00")  # propagated either way
        await trio.sleep(0.6)
        assert (len(receiver.spans) > before) is expect


async def test_a_collector_down_under_load_costs_requests_nothing(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The receiver refuses everything for 20 s while requests keep coming:
    every request is answered at once, the spans the full queue cannot
    take are dropped and counted, and export resumes when it is back."""
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "64")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "32")
    receiver, _, proxy = await traced(nursery)
    receiver.down = True
    slowest = 0.0
    with trio.move_on_after(20):
        while True:
            started = trio.current_time()
            r = await h1_request(proxy.port, "POST", "/v1/messages", [], STREAM)
            assert r.status == 200
            slowest = max(slowest, trio.current_time() - started)
            await trio.sleep(0.02)
    assert receiver.refused > 0 and not receiver.spans
    metrics = (await h1_request(proxy.port, "GET", "/metrics", [])).body.decode()
    dropped = [
        ln for ln in metrics.splitlines() if ln.startswith("trioproxy_telemetry_dropped_total")
    ]
    assert dropped and float(dropped[0].split()[-1]) > 0
    assert slowest < 1.0  # never the exporter's 10 s timeout: nobody waited on it
    receiver.down = False
    for _ in range(5):
        assert (await h1_request(proxy.port, "POST", "/v1/messages", [], STREAM)).status == 200
    await receiver.wait_for(1, seconds=30)  # the exporter's backoff ends, export resumes


def test_the_standard_otel_variables_configure_it_and_check_config_shows_them(
    tmp_path: Path,
) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "OTEL_EXPORTER_OTLP_ENDPOINT": "https://otlp.example.com:4318",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-honeycomb-team=hc-secret-123,x-tenant=acme",
        "OTEL_SERVICE_NAME": "gateway-eu",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    }
    cmd = [sys.executable, "-m", "trioproxy", "check-config", "--upstream", "http://127.0.0.1:9"]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env)
    assert ok.returncode == 0, ok.stderr
    for line in (
        "telemetry.endpoint = https://otlp.example.com:4318",
        "telemetry.service_name = gateway-eu",
        "telemetry.traces_sampler = parentbased_traceidratio",
        "telemetry.traces_sampler_arg = 0.1",
        "telemetry.resource_attributes = deployment.environment=prod",
    ):
        assert line in ok.stdout, line
    assert "hc-secret-123" not in ok.stdout and "telemetry.headers = <redacted>" in ok.stdout
    config = load_config(env=env, overrides={"upstream.url": "http://127.0.0.1:9"})
    assert config.telemetry is not None
    assert dict(config.telemetry.headers) == {
        "x-honeycomb-team": "hc-secret-123",
        "x-tenant": "acme",
    }
    for name, value, words in (
        ("OTEL_TRACES_SAMPLER", "sometimes", "OTEL_TRACES_SAMPLER"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "no-equals-sign", "key=value"),
    ):
        bad = subprocess.run(
            cmd, capture_output=True, text=True, timeout=30, env={**env, name: value}
        )
        assert bad.returncode == 2 and words in bad.stderr and "hc-secret-123" not in bad.stderr


async def test_genai_metrics_and_the_proxy_s_counts_go_out_over_otlp(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trioproxy.access")
    # Metrics do not depend on sampling.
    receiver, _, proxy = await traced(nursery, telemetry__traces_sampler="always_off")
    for _ in range(3):
        assert (await h1_request(proxy.port, "POST", "/v1/messages", [], STREAM)).status == 200
    refused = [("x-fake-fault", "529")]
    assert (await h1_request(proxy.port, "POST", "/v1/messages", refused, STREAM)).status == 529
    with trio.fail_after(15):
        while True:
            points = latest(receiver)
            if (
                points.get("trioproxy.requests", 0) >= 4
                and "gen_ai.client.operation.duration" in points
            ):
                break
            receiver.arrived = trio.Event()
            await receiver.arrived.wait()
    lines = access_lines(caplog)
    assert points["gen_ai.client.token.usage:input"] == sum(x["input_tokens"] for x in lines)
    assert points["gen_ai.client.token.usage:output"] == sum(x["output_tokens"] for x in lines)
    assert points["gen_ai.client.operation.duration"] == 4  # one a request, the 529 too
    assert points["trioproxy.errors"] == 1 and points["trioproxy.time_to_first_token"] == 3
    assert "trioproxy.requests.in_flight" in points


def latest(receiver: Receiver) -> dict[str, float]:
    """The last export's figures: histogram sums (tokens, by type) and
    counts, counter values summed over their attributes."""
    out: dict[str, float] = {}
    if not receiver.metrics:
        return out
    for rm in receiver.metrics[-1].resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                if kind == "histogram":
                    for p in m.histogram.data_points:
                        kinds = {a.key: a.value.string_value for a in p.attributes}
                        if m.name == "gen_ai.client.token.usage":
                            key = f"{m.name}:{kinds['gen_ai.token.type']}"
                            out[key] = out.get(key, 0) + p.sum
                        else:
                            out[m.name] = out.get(m.name, 0) + p.count
                elif kind == "sum":
                    out[m.name] = out.get(m.name, 0) + sum(p.as_int for p in m.sum.data_points)
    return out


async def test_each_worker_exports_on_its_own(nursery: trio.Nursery) -> None:
    """`serve --workers 2`: each worker exports under its own
    service.instance.id (its metrics come whether or not it served)."""
    receiver = Receiver()
    rport = await nursery.start(Server(make_config()).serve_app, receiver)
    up_port = await nursery.start(Server(make_config()).serve_app, FakeUpstream())
    env = clean_env(
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{rport}",
        OTEL_METRIC_EXPORT_INTERVAL="300",
    )
    async with serving("--upstream", f"http://127.0.0.1:{up_port}", "--workers", "2", env=env):
        with trio.fail_after(20):
            while len(instances := worker_instances(receiver)) < 2:
                receiver.arrived = trio.Event()
                await receiver.arrived.wait()
    assert all(":" in i for i in instances)  # host:pid, one a worker


def worker_instances(receiver: Receiver) -> set[str]:
    return {
        a.value.string_value
        for export in receiver.metrics
        for rm in export.resource_metrics
        for a in rm.resource.attributes
        if a.key == "service.instance.id"
    }
