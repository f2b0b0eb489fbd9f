"""/metrics (valid Prometheus text, bounded labels) and /metrics.json."""

from __future__ import annotations

import time

import orjson
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import h1_request, start_fake, start_proxy
from trioproxy.accounting.families import FAMILIES

ALICE = "alice-secret-0123456789"
BODY = orjson.dumps(
    {
        "model": "claude-opus-4-7",
        "max_tokens": 5,
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
    }
)


async def test_metrics_count_requests_tokens_and_stay_bounded(nursery: trio.Nursery) -> None:
    fake = await start_fake(nursery)
    proxy = await start_proxy(
        nursery,
        fake.url,
        auth__secrets=f"alice:{ALICE}",
        upstream__api_key="sk-provider-0123456789",
        admin__token="admin-token-0123456789",
    )
    for _ in range(3):
        assert (
            await h1_request(proxy.port, "POST", "/v1/messages", [("x-api-key", ALICE)], BODY)
        ).status == 200
    for i in range(40):  # clients choose model names: the label set must stay bounded
        body = orjson.dumps({"model": f"made-up-model-{i}", "max_tokens": 1, "messages": []})
        await h1_request(proxy.port, "POST", "/v1/messages", [("x-api-key", ALICE)], body)
    await trio.testing.wait_all_tasks_blocked()
    assert (await h1_request(proxy.port, "GET", "/metrics")).status == 401  # admin token needed
    admin = [("authorization", "Bearer admin-token-0123456789")]
    r = await h1_request(proxy.port, "GET", "/metrics", admin)
    assert r.status == 200 and r.header(
        b"content-type",
    ).startswith(b"text/plain; version=0.0.4")  # type: ignore[union-attr]
    families = {
        f.name: f for f in text_string_to_metric_families(r.body.decode())
    }  # the official parser
    requests = families["trioproxy_requests"]
    opus = [
        s
        for s in requests.samples
        if s.labels.get("model") == "claude-opus-4-7" and s.labels["code"] == "200"
    ]
    assert opus and opus[0].value == 3 and opus[0].labels["caller"] == "alice"
    assert (
        len({s.labels["model"] for s in requests.samples}) <= 32 + 2
    )  # bounded: others count as "other"
    tokens = {
        (s.labels["type"], s.labels["model"]): s.value for s in families["trioproxy_tokens"].samples
    }
    # One meaning per label name: "class" is a status class wherever it appears.
    assert all("class" not in s.labels for s in families["trioproxy_tokens"].samples)
    assert tokens[("input", "claude-opus-4-7")] > 0 and tokens[("output", "claude-opus-4-7")] > 0
    assert families["trioproxy_request_duration_seconds"].type == "histogram"
    every_family = {  # as the parser names them: counters without _total
        "trioproxy_requests": "counter",
        "trioproxy_tokens": "counter",
        "trioproxy_body_bytes": "counter",
        "trioproxy_stream_errors": "counter",
        "trioproxy_client_disconnects": "counter",
        "trioproxy_upstream_retries": "counter",
        "trioproxy_scrub_hits": "counter",
        "trioproxy_scrub_skipped": "counter",
        "trioproxy_request_duration_seconds": "histogram",
        "trioproxy_time_to_headers_seconds": "histogram",
        "trioproxy_requests_in_flight": "gauge",
        "trioproxy_client_connections": "gauge",
        "trioproxy_upstream_connections": "gauge",
        "trioproxy_upstream_h2_streams": "gauge",
        "trioproxy_draining": "gauge",
        "trioproxy_uptime_seconds": "gauge",
        "trioproxy_provider_available": "gauge",
        "trioproxy_provider_breaker_state": "gauge",
        "trioproxy_provider_consecutive_failures": "gauge",
        "trioproxy_provider_in_flight": "gauge",
        "trioproxy_provider_quota_used_tokens": "gauge",
        "trioproxy_provider_quota_limit_tokens": "gauge",
        "trioproxy_provider_retries": "counter",
        "trioproxy_provider_failovers": "counter",
        "trioproxy_stream_pings": "counter",
        "trioproxy_demoted": "counter",
        "trioproxy_build_info": "gauge",
        "process_cpu_seconds": "counter",
        "process_resident_memory_bytes": "gauge",
        "process_open_fds": "gauge",
        "process_max_fds": "gauge",
        "process_start_time_seconds": "gauge",
    }
    assert {n: families[n].type for n in every_family if n in families} == every_family
    assert set(every_family) <= set(families)
    # Every exposed family is declared in the registry the reference is made
    # from, with its type, and its samples carry only the declared labels.
    for f in families.values():
        declared = FAMILIES[f.name + ("_total" if f.type == "counter" else "")]
        assert declared.kind == f.type, f.name
        for sample in f.samples:
            assert set(sample.labels) - {"le"} <= set(declared.labels), (f.name, sample.labels)
    from trioproxy import __version__

    first = families["trioproxy_time_to_first_token_seconds"]
    assert first.type == "histogram"
    counts = {
        (x.labels["provider"], x.labels["model"]): x.value
        for x in first.samples
        if x.name.endswith("_count")
    }
    assert counts and all(p == "default" for p, _ in counts)
    assert sum(counts.values()) == snap_ok_messages(requests)
    build = families["trioproxy_build_info"].samples
    assert [(s.labels["version"], s.value) for s in build] == [(__version__, 1)]
    assert families["process_resident_memory_bytes"].samples[0].value > 10_000_000
    assert families["process_open_fds"].samples[0].value >= 3
    started = families["process_start_time_seconds"].samples[0].value
    assert time.time() - 3 * 3600 < started <= time.time()  # this test process (pytest)
    assert {s.labels["class"] for s in requests.samples} == {"2xx"}
    idle = [s for s in families["trioproxy_upstream_connections"].samples]
    assert {(s.labels["provider"], s.labels["state"]) for s in idle} >= {("default", "h1_idle")}
    assert sum(s.value for s in idle if s.labels["state"] == "h1_idle") >= 1  # kept alive
    flight = {
        s.labels["protocol"]: s.value for s in families["trioproxy_requests_in_flight"].samples
    }
    assert flight == {"h1": 1, "h2": 0}  # this very /metrics request
    assert ALICE not in r.body.decode()
    snap = orjson.loads((await h1_request(proxy.port, "GET", "/metrics.json", admin)).body)
    assert sum(x["count"] for x in snap["requests"]) == 43
    assert snap["duration_s"]["count"] == 43 and "in_flight" in snap
    assert {x["origin"] for x in snap["requests"]} == {"upstream"}
    # The proxy's own answer is told apart from the upstream's.
    bad = await h1_request(proxy.port, "POST", "/v1/messages", [("x-api-key", "wrong-" * 4)], BODY)
    assert bad.status == 401
    text = (await h1_request(proxy.port, "GET", "/metrics", admin)).body.decode()
    own = [
        ln
        for ln in text.splitlines()
        if ln.startswith("trioproxy_requests_total{") and 'code="401"' in ln
    ]
    assert len(own) == 1 and 'origin="proxy"' in own[0] and 'provider="-"' in own[0]


def snap_ok_messages(requests: object) -> float:
    """2xx Messages answers counted by trioproxy_requests_total (every
    request of this test is one)."""
    return sum(x.value for x in requests.samples if x.labels["class"] == "2xx")  # type: ignore[attr-defined]
