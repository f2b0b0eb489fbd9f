"""GET /openapi.json describes every own endpoint, and live answers (after
real traffic, with two providers) validate against its schemas; the metrics
stream sends snapshots of the same shape and ends when the server drains."""

from __future__ import annotations

from typing import Any

import h11
import jsonschema
import orjson
import trio

from tests.helpers import H1Client, Running, h1_request, make_config, start_fake
from trioproxy.admin.endpoints import RESERVED_EXACT
from trioproxy.server import Server

ADMIN = "adm-0123456789abcdef"
AUTH = [("authorization", f"Bearer {ADMIN}")]


def schema_for(spec: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    response = spec["paths"][path][method]["responses"][str(status)]
    if "$ref" in response:
        name = response["$ref"].rsplit("/", 1)[1]
        response = spec["components"]["responses"][name]
    return dict(response["content"]["application/json"]["schema"])


def check(spec: dict[str, Any], path: str, method: str, status: int, body: bytes) -> None:
    schema = schema_for(spec, path, method, status)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(orjson.loads(body), schema, cls=jsonschema.Draft202012Validator)


async def test_every_own_endpoint_is_described_and_answers_match(nursery: trio.Nursery) -> None:
    a, b = await start_fake(nursery), await start_fake(nursery)
    server = Server(
        make_config(
            admin__token=ADMIN,
            providers=[
                {
                    "name": "main",
                    "base_url": a.url,
                    "priority": 1,
                    "quota": {"tokens": 100_000, "window": "daily"},
                },
                {"name": "spare", "base_url": b.url, "priority": 2},
            ],
        )
    )
    proxy = Running(server, await nursery.start(server.serve))
    r = await h1_request(proxy.port, "GET", "/openapi.json")  # open, like /health
    assert r.status == 200
    spec = orjson.loads(r.body)
    assert spec["openapi"].startswith("3.1")
    exact = {p for p in spec["paths"] if "{" not in p}  # /admin/callers/{name} is a template
    assert exact == {p.decode() for p in RESERVED_EXACT}
    for ops in spec["paths"].values():
        for op in (v for k, v in ops.items() if k != "parameters"):
            for resp in op["responses"].values():  # every schema is valid JSON Schema
                if "content" in resp and "application/json" in resp["content"]:
                    jsonschema.Draft202012Validator.check_schema(
                        resp["content"]["application/json"]["schema"]
                    )
    body = (
        b'{"model":"claude-sonnet-4-5","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}'
    )
    for stream in (b"false", b"true"):
        traffic = body.replace(b'"max_tokens"', b'"stream":' + stream + b',"max_tokens"')
        assert (await h1_request(proxy.port, "POST", "/v1/messages", [], traffic)).status == 200

    for path in ("/health", "/livez"):
        r = await h1_request(proxy.port, "GET", path)
        check(spec, path, "get", r.status, r.body)
    for path in ("/metrics.json", "/admin/providers"):
        r = await h1_request(proxy.port, "GET", path, AUTH)
        assert r.status == 200
        check(spec, path, "get", 200, r.body)
        r = await h1_request(proxy.port, "GET", path)
        check(spec, path, "get", 401, r.body)
    snap = orjson.loads((await h1_request(proxy.port, "GET", "/metrics.json", AUTH)).body)
    assert snap["routing"]["providers"][0]["quota"]["used"] > 0  # the schema saw a real quota
    assert set(snap["pools"]) == {"main", "spare"}
    r = await h1_request(proxy.port, "POST", "/admin/route", AUTH, b'{"mode": "single"}')
    check(spec, "/admin/route", "post", 400, r.body)
    r = await h1_request(
        proxy.port, "POST", "/admin/route", AUTH, b'{"mode": "single", "provider": "spare"}'
    )
    check(spec, "/admin/route", "post", 200, r.body)
    r = await h1_request(proxy.port, "GET", "/admin/route", AUTH)
    check(spec, "/admin/route", "post", 405, r.body)
    r = await h1_request(proxy.port, "GET", "/metrics", AUTH)
    assert r.status == 200 and (r.header(b"content-type") or b"").startswith(b"text/plain")
    r = await h1_request(proxy.port, "GET", "/dashboard", AUTH)
    assert r.status == 200 and (r.header(b"content-type") or b"").startswith(b"text/html")

    # /metrics/stream: snapshots of the Snapshot schema, once a second, and
    # the stream ends (cleanly) when the server starts draining.
    client = await H1Client.connect(proxy.port)
    await client.send_request("GET", "/metrics/stream", AUTH)
    events: list[bytes] = []
    buf = b""
    ended = False
    with trio.fail_after(10):
        while not ended:
            ev = client.conn.next_event()
            if ev is h11.NEED_DATA:
                client.conn.receive_data(await client.stream.receive_some(65536))
            elif isinstance(ev, h11.Response):
                assert ev.status_code == 200
                assert dict(ev.headers)[b"content-type"] == b"text/event-stream"
            elif isinstance(ev, h11.Data):
                buf += bytes(ev.data)
                while b"\n\n" in buf:
                    event, buf = buf.split(b"\n\n", 1)
                    events.append(event)
                    if len(events) == 2:
                        proxy.server.state.begin_drain()
            elif isinstance(ev, h11.EndOfMessage):
                ended = True
    await client.stream.aclose()
    assert len(events) >= 2 and buf == b""
    snapshot_schema = spec["components"]["schemas"]["Snapshot"]
    times = []
    for event in events:
        kind, data = event.split(b"\n")
        assert kind == b"event: snapshot" and data.startswith(b"data: ")
        doc = orjson.loads(data[6:])
        jsonschema.validate(doc, snapshot_schema, cls=jsonschema.Draft202012Validator)
        times.append(doc["time"])
        assert doc["watchers"] == 1  # the reader itself, told apart from traffic
    assert 0.8 < times[1] - times[0] < 1.5
