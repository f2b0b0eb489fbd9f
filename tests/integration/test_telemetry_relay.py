"""The relay of callers' own OpenTelemetry (telemetry.relay_to): the real
Claude Code sends its metrics and events to the proxy with its caller
secret, and the collector gets them stamped with the caller; exports
without a secret, too large, too many, or not OTLP are refused."""

from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from tests.helpers import Running, h1_request, make_config, unless_in_ci
from tests.integration.test_claude_code import CLAUDE, claude, refuse
from tests.integration.test_conversation_log import logged_entries, written
from tests.recorder import Recorder
from trioproxy.fake.app import FakeUpstream
from trioproxy.server import Server

SECRET = "sk-team-alice-0123456789abcdef"
DIGEST = hashlib.sha256(SECRET.encode()).hexdigest()


def resources(message: Any, field: str) -> list[dict[str, str]]:
    return [
        {a.key: a.value.string_value for a in r.resource.attributes}
        for r in getattr(message, field)
    ]


async def rig(nursery: trio.Nursery, **cfg: Any) -> tuple[Recorder, FakeUpstream, Running]:
    collector = Recorder()
    cport = await nursery.start(Server(make_config()).serve_app, collector)
    fake = FakeUpstream(tools=False)
    fport = await nursery.start(Server(make_config()).serve_app, fake)
    server = Server(
        make_config(
            upstream__url=f"http://127.0.0.1:{fport}",
            upstream__api_key="sk-ant-provider",
            callers=[{"name": "alice", "secret_sha256": [DIGEST]}],
            telemetry__relay_to=[
                {"url": f"http://127.0.0.1:{cport}", "headers": "x-collector=abc"}
            ],
            **cfg,
        )
    )
    return collector, fake, Running(server, await nursery.start(server.serve))


@unless_in_ci(not CLAUDE.exists(), "Claude Code is not installed (make js-clients)")
@pytest.mark.timeout(150)
async def test_claude_code_s_own_telemetry_reaches_the_collector_as_its_caller(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    collector, _, proxy = await rig(nursery)
    listeners = await nursery.start(partial(trio.serve_tcp, refuse, 0, host="127.0.0.1"))
    refuser = listeners[0].socket.getsockname()[1]
    extra = {
        "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
        "DISABLE_TELEMETRY": "",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": proxy.url,
        "OTEL_EXPORTER_OTLP_HEADERS": f"x-api-key={SECRET}",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "OTEL_LOGS_EXPORT_INTERVAL": "500",
        "OTEL_RESOURCE_ATTRIBUTES": "enduser.id=mallory",  # a claim the proxy replaces
    }
    result = await claude(proxy.url, refuser, api_key=SECRET, extra=extra)
    assert result["is_error"] is False, result
    (metrics, *_) = await collector.wait_for(1, b"/v1/metrics")
    stamped = resources(ExportMetricsServiceRequest.FromString(metrics), "resource_metrics")
    assert stamped and all(r["trioproxy.caller"] == "alice" for r in stamped)
    assert all(r["enduser.id"] == "alice" for r in stamped)
    names = [
        m.name
        for rm in ExportMetricsServiceRequest.FromString(metrics).resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    ]
    assert any(n.startswith("claude_code.") for n in names), names
    (logs, *_) = await collector.wait_for(1, b"/v1/logs")
    assert (
        resources(ExportLogsServiceRequest.FromString(logs), "resource_logs")[0]["trioproxy.caller"]
        == "alice"
    )
    headers = dict(collector.got[0][1])
    assert headers[b"x-collector"] == b"abc" and SECRET.encode() not in b"".join(
        v for _, h, _ in collector.got for _, v in h
    )


async def test_exports_are_checked_before_they_are_relayed(nursery: trio.Nursery) -> None:
    collector, fake, proxy = await rig(
        nursery, telemetry__relay_rpm=2, telemetry__relay_max_body_bytes=2000
    )
    export = {
        "resourceMetrics": [
            {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "cli"}}]}}
        ]
    }
    key = [("x-api-key", SECRET), ("content-type", "application/json")]
    r = await h1_request(proxy.port, "POST", "/v1/metrics", key[1:], orjson.dumps(export))
    assert r.status == 401  # no caller secret: refused, never relayed
    r = await h1_request(proxy.port, "POST", "/v1/metrics", key, orjson.dumps(export))
    assert r.status == 200 and orjson.loads(r.body) == {}
    (forwarded,) = await collector.wait_for(1, b"/v1/metrics")
    (res,) = resources(ExportMetricsServiceRequest.FromString(forwarded), "resource_metrics")
    assert res == {"service.name": "cli", "enduser.id": "alice", "trioproxy.caller": "alice"}
    r = await h1_request(proxy.port, "POST", "/v1/logs", key, b"x" * 3000)
    assert r.status == 413
    r = await h1_request(proxy.port, "POST", "/v1/traces", key, b'{"resourceSpans": 7}')
    assert (
        r.status == 400 and "not an OTLP traces export" in orjson.loads(r.body)["error"]["message"]
    )
    r = await h1_request(proxy.port, "POST", "/v1/metrics", key, orjson.dumps(export))
    # rpm = 2: the export above and the bad one counted, this third is refused
    assert r.status == 429 and int(r.header(b"retry-after") or 0) >= 1
    assert fake.requests == 0  # none went to the model provider
    forwarded = 'trioproxy_telemetry_relay_total{signal="metrics",outcome="forwarded"} 1'
    with trio.fail_after(5):  # counted once the collector's answer is back in the relay's task
        while forwarded not in (  # noqa: ASYNC110 (a worker thread counts it)
            metrics := (await h1_request(proxy.port, "GET", "/metrics", [])).body.decode()
        ):
            await trio.sleep(0.05)
    assert 'trioproxy_telemetry_relay_total{signal="metrics",outcome="accepted"} 1' in metrics
    assert 'trioproxy_telemetry_relay_total{signal="logs",outcome="refused"} 1' in metrics


async def test_relayed_exports_stay_out_of_the_conversation_log(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    _, _, proxy = await rig(nursery, state_dir=str(tmp_path), log_bodies="all")
    key = [("x-api-key", SECRET), ("content-type", "application/json")]
    export = {"resourceLogs": [{"resource": {"attributes": []}}]}
    r = await h1_request(proxy.port, "POST", "/v1/logs", key, orjson.dumps(export))
    assert r.status == 200
    r = await h1_request(proxy.port, "POST", "/v1/logs", key, b"x" * 10)  # refused: not OTLP
    assert r.status == 400
    ask = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
    }
    r = await h1_request(proxy.port, "POST", "/v1/messages", key, orjson.dumps(ask))
    assert r.status == 200
    await written(proxy, 1)  # the exports went into the journal first: written by now
    assert [entry["path"] for entry in logged_entries(tmp_path)] == ["/v1/messages"]
