"""The GenAI metrics trioproxy aggregates itself (telemetry/genai.py) and
the OTLP data the metrics thread builds from them (telemetry/meters.py),
decoded from the SDK's own protobuf encoding."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.resources import Resource

from trioproxy.accounting.metrics import Metrics
from trioproxy.accounting.record import RequestRecord
from trioproxy.accounting.usage import Usage
from trioproxy.config.model import TelemetryConfig
from trioproxy.telemetry import genai
from trioproxy.telemetry.meters import Meters, interval_s


def request(model: str, status: int, inp: int, out: int, duration: float) -> RequestRecord:
    r = RequestRecord("r", "POST", "/v1/messages", "h1", status=status, provider="a")
    r.model_requested = model
    r.duration_s = duration
    r.time_to_first_byte_s = duration / 2
    r.usage = Usage(input_tokens=inp, output_tokens=out, model=model if status == 200 else "")
    return r


@pytest.fixture
def meters(request: pytest.FixtureRequest) -> Iterator[Meters]:
    env = {
        "OTEL_METRIC_EXPORT_INTERVAL": "3600000",
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": request.param,
    }
    m = Meters(
        TelemetryConfig("http://127.0.0.1:9"),
        Resource.create({"service.name": "t"}),
        Metrics(),
        lambda: 3,
        {"a": "aws.bedrock"},
        env,
    )
    yield m
    m._stop.set()  # no export at the end: nothing listens


def decoded(m: Meters) -> dict[str, list[object]]:
    """Each metric's data points, as a collector receives them."""
    msg = encode_metrics(m.collect())
    out: dict[str, list[object]] = {}
    for sm in msg.resource_metrics[0].scope_metrics:
        assert sm.scope.name == "trioproxy"
        for metric in sm.metrics:
            data = getattr(metric, metric.WhichOneof("data"))
            out[metric.name] = list(data.data_points)
    return out


def attrs(point: object) -> dict[str, str]:
    return {a.key: a.value.string_value for a in point.attributes}  # type: ignore[attr-defined]


@pytest.mark.parametrize("meters", ["cumulative"], indirect=True)
def test_cumulative_points_match_what_was_recorded(meters: Meters) -> None:
    for r in (
        request("claude-x", 200, 100, 10, 0.5),
        request("claude-x", 200, 5000, 20, 3.0),
        request("claude-x", 529, 0, 0, 0.05),
    ):
        meters.record(r)
    meters._metrics.observe(request("claude-x", 200, 1, 1, 0.1))
    points = decoded(meters)
    tokens = {attrs(p)["gen_ai.token.type"]: p for p in points["gen_ai.client.token.usage"]}
    assert tokens["input"].sum == 5100 and tokens["input"].count == 2
    assert tokens["output"].sum == 30 and tokens["output"].min == 10 and tokens["output"].max == 20
    assert attrs(tokens["input"])["gen_ai.system"] == "aws.bedrock"
    # 100 falls in (64, 256], 5000 in (4096, 16384].
    assert list(tokens["input"].explicit_bounds) == list(genai.TOKEN_BOUNDS)
    assert tokens["input"].bucket_counts[4] == 1 and tokens["input"].bucket_counts[7] == 1
    durations = {
        attrs(p).get("error.type", ""): p for p in points["gen_ai.client.operation.duration"]
    }
    assert durations[""].count == 2 and durations["http"].count == 1
    assert sum(durations[""].bucket_counts) == durations[""].count
    assert [p.count for p in points["trioproxy.time_to_first_token"]] == [2]
    assert [p.as_int for p in points["trioproxy.requests"]] == [1]
    assert [p.as_int for p in points["trioproxy.requests.in_flight"]] == [3]
    # Cumulative: a second collection repeats the totals.
    again = decoded(meters)["gen_ai.client.token.usage"]
    assert sorted(p.sum for p in again) == [30, 5100]


@pytest.mark.parametrize("meters", ["delta"], indirect=True)
def test_delta_points_carry_what_was_added_since_the_last_export(meters: Meters) -> None:
    meters.record(request("claude-x", 200, 100, 10, 0.5))
    meters._metrics.observe(request("claude-x", 200, 1, 1, 0.1))
    first = decoded(meters)
    assert first["gen_ai.client.operation.duration"][0].count == 1
    meters.record(request("claude-x", 200, 7, 1, 0.5))
    meters.record(request("claude-x", 200, 9, 1, 0.5))
    second = decoded(meters)
    tokens = {attrs(p)["gen_ai.token.type"]: p for p in second["gen_ai.client.token.usage"]}
    assert tokens["input"].sum == 16 and tokens["input"].count == 2
    assert not tokens["input"].HasField("min")  # only cumulative extremes are kept
    assert [p.as_int for p in second["trioproxy.requests"]] == [0]
    # Nothing new: no histogram point at all.
    assert "gen_ai.client.operation.duration" not in decoded(meters)


@pytest.mark.parametrize("meters", ["cumulative"], indirect=True)
def test_models_beyond_the_bound_count_as_other(meters: Meters) -> None:
    for i in range(genai.MAX_SETS + 50):
        meters.record(request(f"model-{i}", 200, 1, 1, 0.1))
    points = decoded(meters)["gen_ai.client.operation.duration"]
    assert len(points) == genai.MAX_SETS + 1
    other = [p for p in points if attrs(p)["gen_ai.request.model"] == "other"]
    assert other[0].count == 50


def test_the_export_interval_is_the_sdk_s_variable() -> None:
    assert interval_s({}) == 60.0
    assert interval_s({"OTEL_METRIC_EXPORT_INTERVAL": "500"}) == 0.5
    assert interval_s({"OTEL_METRIC_EXPORT_INTERVAL": "soon"}) == 60.0


def test_shutdown_gives_up_on_a_collector_that_does_not_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Within its grace, and no export thread is left retrying (with a
    collector that refuses connections, the SDK retries for 10 s)."""
    import threading
    import time

    from trioproxy.accounting.trace_note import TraceNote
    from trioproxy.proto.tracecontext import new_trace_id
    from trioproxy.telemetry.exporter import Telemetry

    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # both exporters busy at once
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "50")
    telemetry = Telemetry(TelemetryConfig("http://127.0.0.1:9", sampler="always_on"), Metrics())
    r = request("claude-x", 200, 10, 5, 0.2)
    r.trace = TraceNote(new_trace_id(), None, True)
    telemetry.emit(r)
    time.sleep(0.5)  # both exports under way, retrying
    started = time.monotonic()
    telemetry.shutdown(grace_s=0.5)
    assert time.monotonic() - started < 3.0
    left = [t.name for t in threading.enumerate() if "Otel" in t.name or "otlp" in t.name]
    assert left == []
