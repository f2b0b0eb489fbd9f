"""/metrics (valid Prometheus text, bounded labels) and /metrics.json."""

from __future__ import annotations

import orjson
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import h1_request, start_fake, start_proxy

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
        (s.labels["class"], s.labels["model"]): s.value
        for s in families["trioproxy_tokens"].samples
    }
    assert tokens[("input", "claude-opus-4-7")] > 0 and tokens[("output", "claude-opus-4-7")] > 0
    assert families["trioproxy_request_duration_seconds"].type == "histogram"
    assert ALICE not in r.body.decode()
    snap = orjson.loads((await h1_request(proxy.port, "GET", "/metrics.json", admin)).body)
    assert sum(x["count"] for x in snap["requests"]) == 43
    assert snap["duration_s"]["count"] == 43 and "in_flight" in snap
