import orjson
import pytest

from trioproxy.fake.faults import Faults, FaultSyntaxError, parse_faults
from trioproxy.fake.messages import message_json, plan_for


def test_parse_faults() -> None:
    assert parse_faults(None) == Faults()
    assert parse_faults(b"429=7, event-delay=0.5") == Faults(
        status=429, retry_after=7.0, event_delay=0.5
    )
    assert parse_faults(b"drop-mid-stream").drop_after == 3
    with pytest.raises(FaultSyntaxError):
        parse_faults(b"explode")


def test_message_usage_has_all_four_classes() -> None:
    body = b'{"model":"m","messages":[],"system":[{"type":"text","text":"s","cache_control":{"type":"ephemeral"}}]}'
    doc = orjson.loads(message_json(plan_for(orjson.loads(body), body)))
    assert set(doc["usage"]) == {
        "input_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "output_tokens",
    }
    assert doc["usage"]["cache_creation_input_tokens"] > 0


def test_a_tool_result_ends_the_turn_in_text() -> None:
    """The fake calls the first offered tool, then answers the tool's result
    in text with end_turn, as a model does: an agent's loop ends."""
    tools = [{"name": "Read", "input_schema": {"type": "object"}}]
    ask = {"model": "m", "max_tokens": 100, "tools": tools}
    first = plan_for({**ask, "messages": [{"role": "user", "content": "read it"}]}, b"")
    assert first.tool is not None and first.tool["name"] == "Read"
    assert first.stop_reason == "tool_use"
    result = {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_fake_01", "content": "x"}],
    }
    history = [
        {"role": "user", "content": "read it"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_fake_01"}]},
        result,
    ]
    second = plan_for({**ask, "messages": history}, b"")
    assert second.tool is None and second.stop_reason == "end_turn" and second.text
