import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trioproxy.accounting.record import RequestRecord
from trioproxy.accounting.usage import UsageObserver, requested_model
from trioproxy.fake.messages import message_json, plan_for, sse, stream_events

REQUEST = b'{"model":"claude-opus-4-7","max_tokens":9,"system":[{"type":"text","text":"s","cache_control":{"type":"ephemeral"}}],"messages":[]}'
PLAN = plan_for(orjson.loads(REQUEST), REQUEST)
STREAM = b"".join(stream_events(PLAN))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=25))
def test_stream_usage_any_chunking(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    obs = UsageObserver(event_stream=True)
    for a, b in zip([0, *points], [*points, len(STREAM)], strict=True):
        obs.feed(STREAM[a:b])
    usage = obs.finish(complete=True)
    assert usage.as_dict() == PLAN.usage.as_dict()  # message_delta's cumulative values win
    assert usage.cache_creation_input_tokens > 0 and usage.cache_read_input_tokens > 0
    assert usage.model == "claude-opus-4-7" and usage.complete and usage.stream_errors == 0


def test_abandoned_stream_keeps_what_was_seen() -> None:
    obs = UsageObserver(event_stream=True)
    obs.feed(b"".join(stream_events(PLAN)[:2]))
    usage = obs.finish(complete=False)
    assert (
        usage.input_tokens == PLAN.usage.input_tokens and usage.output_tokens == 1
    )  # message_start's
    assert not usage.complete


def test_error_event_inside_a_200_stream_is_counted() -> None:
    obs = UsageObserver(event_stream=True)
    obs.feed(
        stream_events(PLAN)[0]
        + sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "x"}})
    )
    assert obs.finish(complete=True).stream_errors == 1


def test_json_usage_and_requested_model() -> None:
    body = message_json(PLAN)
    obs = UsageObserver(event_stream=False)
    obs.feed(body[:10])
    obs.feed(body[10:])
    assert obs.finish(complete=True).as_dict() == PLAN.usage.as_dict()
    assert requested_model(REQUEST) == "claude-opus-4-7"
    assert requested_model(b'{"messages":[]}') == ""


def test_record_renders_json_and_logfmt_without_bodies() -> None:
    r = RequestRecord(
        "req_1", "POST", "/v1/messages", "h1", caller="alice", status=200, stream=True
    )
    doc = orjson.loads(r.render("json"))
    assert doc["caller"] == "alice" and doc["status"] == 200 and doc["input_tokens"] == 0
    line = r.render("logfmt")
    assert "caller=alice" in line and "path=/v1/messages" in line and "\n" not in line


def test_long_stream_reads_usage_from_both_ends() -> None:
    """Hundreds of KB of deltas between message_start and message_delta."""
    plan = plan_for(orjson.loads(REQUEST), REQUEST, text_bytes=300_000)
    events = stream_events(plan)
    body = b"".join(events)
    assert len(body) > 200_000
    obs = UsageObserver(event_stream=True)
    for i in range(0, len(body), 65536):
        obs.feed(body[i : i + 65536])
    usage = obs.finish(complete=True)
    assert usage.as_dict() == plan.usage.as_dict() and usage.model == "claude-opus-4-7"
    obs2 = UsageObserver(event_stream=True)
    obs2.feed(
        body[:-200]
        + sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "x"}})
    )
    assert obs2.finish(complete=True).stream_errors == 1
