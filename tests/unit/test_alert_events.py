"""What alerts say and when they are due (alerts/events.py)."""

from __future__ import annotations

import orjson

from trioproxy.alerts.events import breaker_changed, budget_crossed, payload


def test_each_threshold_once_when_a_request_crosses_it() -> None:
    cross = budget_crossed("alice", "usd", 7.0, 10.5, 10.0, (0.8, 1.0), "monthly", 1_700_000_000)
    assert [a.key for a in cross] == [
        "budget:alice:usd:1700000000:0.8",
        "budget:alice:usd:1700000000:1",
    ]
    assert "$10.50 of $10.00" in cross[1].text
    assert budget_crossed("alice", "usd", 8.5, 9.0, 10.0, (0.8, 1.0), "monthly", 0) == []
    tokens = budget_crossed("bob", "tokens", 0, 900, 1000, (0.8,), "daily", 0)
    assert "900 of 1,000 tokens" in tokens[0].text
    assert budget_crossed("x", "usd", 0, 5, 0, (0.8,), "daily", 0) == []  # no budget


def test_slack_s_shape() -> None:
    doc = orjson.loads(payload(breaker_changed("anthropic", True, "HTTP 529", 5), host="box1"))
    assert doc["text"].startswith("trioproxy: provider anthropic's breaker opened")
    (att,) = doc["attachments"]
    assert att["color"] == "danger"
    assert {f["title"]: f["value"] for f in att["fields"]} == {
        "provider": "anthropic",
        "breaker": "opened",
        "last error": "HTTP 529",
        "instance": "box1",
    }
    closed = orjson.loads(payload(breaker_changed("anthropic", False, "", 6), host="box1"))
    assert closed["attachments"][0]["color"] == "good"
