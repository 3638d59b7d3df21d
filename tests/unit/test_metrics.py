"""Metrics from bus events: what a Prometheus scrape shows after calls, turns, barge-ins,
tools, provider trouble and a slow subscriber."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from telephony_bot.events.bus import Bus
from telephony_bot.events.metrics import Metrics, call_result, render


def _metrics(capacity: int = 4) -> tuple[Metrics, Bus, CollectorRegistry]:
    reg = CollectorRegistry()
    m = Metrics(worker=1, registry=reg)
    bus = Bus()
    m.attach(bus, capacity=capacity)
    return m, bus, reg


def _value(reg: CollectorRegistry, name: str, **labels: str) -> float:
    v = reg.get_sample_value(name, labels)
    return 0.0 if v is None else v


def test_active_calls_follow_started_and_ended_and_count_results() -> None:
    _, bus, reg = _metrics()
    bus.emit("call.started", "a", called="100", caller="200", route="desk")
    bus.emit("call.started", "b", called="100", caller="201", route="desk")
    bus.emit("call.started", "b")  # a repeated event does not count twice
    assert _value(reg, "telephony_bot_calls_active", worker="1") == 2
    assert _value(reg, "telephony_bot_worker_capacity", worker="1") == 4
    bus.emit("call.ended", "a", ended_by="remote", reason="200 Normal call clearing")
    bus.emit("transfer.completed", "b", target="sip:desk@x", status=200)
    bus.emit("call.ended", "b", ended_by="local", reason="transferred to sip:desk@x")
    bus.emit("call.ended", "ghost", ended_by="local", reason="")  # never started: no underflow
    assert _value(reg, "telephony_bot_calls_active", worker="1") == 0
    assert _value(reg, "telephony_bot_calls_total", result="completed") == 2
    assert _value(reg, "telephony_bot_calls_total", result="transferred") == 1


def test_latencies_tools_provider_trouble_and_underruns() -> None:
    _, bus, reg = _metrics()
    bus.emit("turn.user", "a", text="hello", item_id="u1")
    bus.emit("turn.agent", "a", text="hi", item_id="i1", latency_ms=640)
    bus.emit("turn.agent", "a", text="greeting", item_id="i0")  # no latency: not observed
    bus.emit("barge_in", "a", by="caller", played_ms=900, dropped_ms=400, latency_ms=180)
    bus.emit("tool.result", "a", tool="lookup", tool_call_id="t", ok=True, duration_ms=1200)
    bus.emit("tool.result", "a", tool="lookup", tool_call_id="t2", ok=False, duration_ms=30)
    bus.emit("provider.error", "a", code="rate_limit_exceeded", message="x", retryable=True)
    bus.emit("provider.reconnected", "a", attempt=1)
    bus.emit("call.started", "a")
    bus.emit("call.ended", "a", ended_by="remote", reason="", media={"underruns": 3})
    assert _value(reg, "telephony_bot_turn_latency_seconds_count") == 1
    assert _value(reg, "telephony_bot_turn_latency_seconds_sum") == pytest.approx(0.64)
    assert _value(reg, "telephony_bot_turn_latency_seconds_bucket", le="0.75") == 1
    assert _value(reg, "telephony_bot_turn_latency_seconds_bucket", le="0.5") == 0
    assert _value(reg, "telephony_bot_barge_in_latency_seconds_sum") == pytest.approx(0.18)
    assert _value(reg, "telephony_bot_turns_total", role="agent") == 2
    assert _value(reg, "telephony_bot_turns_total", role="user") == 1
    assert _value(reg, "telephony_bot_tool_duration_seconds_count", tool="lookup", ok="true") == 1
    assert _value(reg, "telephony_bot_tool_duration_seconds_count", tool="lookup", ok="false") == 1
    assert _value(reg, "telephony_bot_provider_errors_total", code="rate_limit_exceeded") == 1
    assert _value(reg, "telephony_bot_provider_reconnects_total") == 1
    assert _value(reg, "telephony_bot_playout_underruns_total") == 3


def test_refused_transfers_are_counted_by_who_asked() -> None:
    _, bus, reg = _metrics()
    for by in ("operator", "operator", "model"):
        bus.emit("transfer.refused", "a", target="sip:+900123@evil.example", by=by, reason="x")
    assert _value(reg, "telephony_bot_transfers_refused_total", by="operator") == 2
    assert _value(reg, "telephony_bot_transfers_refused_total", by="model") == 1


def test_bus_drops_of_a_slow_subscriber_are_counted() -> None:
    m, bus, reg = _metrics()
    bus.subscribe("stalled page", maxsize=2)
    for i in range(5):
        bus.emit("dtmf", "a", digit=str(i), method="rfc4733")
    m.sync()
    assert _value(reg, "telephony_bot_bus_events_dropped_total") == 3


def test_render_is_prometheus_text() -> None:
    m, bus, reg = _metrics()
    bus.emit("call.started", "a")
    body, ctype = render(reg)
    assert ctype.startswith("text/plain")
    assert b'telephony_bot_calls_active{worker="1"} 1.0' in body


@pytest.mark.parametrize(
    ("data", "transferred", "result"),
    [
        ({"ended_by": "remote", "reason": "200 BYE"}, False, "completed"),
        ({"ended_by": "local", "reason": "command: admin"}, False, "completed"),
        ({"ended_by": "local", "reason": "x"}, True, "transferred"),
        ({"ended_by": "local", "reason": "provider unavailable"}, False, "error"),
        ({"ended_by": "local", "reason": "session error"}, False, "error"),
        ({"ended_by": "local", "reason": "max_call_seconds"}, False, "timeout"),
        ({"ended_by": "local", "reason": "idle"}, False, "timeout"),
        ({"ended_by": "local", "reason": "404 Not Found", "answered": False}, False, "rejected"),
        ({"result": "error", "reason": "whatever"}, False, "error"),
        ({"result": "made-up", "reason": ""}, False, "completed"),
    ],
)
def test_call_result_labels(data: dict, transferred: bool, result: str) -> None:
    assert call_result(data, transferred) == result


def test_trunk_registration_gauge_and_failures() -> None:
    _, bus, reg = _metrics()
    bus.emit("trunk.registration", "", trunk="pbx", state="registered", status_code=200)
    assert _value(reg, "telephony_bot_trunk_registered", trunk="pbx") == 1
    bus.emit("trunk.registration", "", trunk="pbx", state="failed", status_code=401)
    bus.emit("trunk.registration", "", trunk="pbx", state="failed", status_code=401)
    bus.emit("trunk.registration", "", trunk="pbx", state="failed", status_code=408)
    assert _value(reg, "telephony_bot_trunk_registered", trunk="pbx") == 0
    failures = "telephony_bot_trunk_registration_failures_total"
    assert _value(reg, failures, trunk="pbx", status="401") == 2
    assert _value(reg, failures, trunk="pbx", status="408") == 1
    # a worker that leaves the registration to another says nothing about it
    bus.emit("trunk.registration", "", trunk="other", state="off")
    assert reg.get_sample_value("telephony_bot_trunk_registered", {"trunk": "other"}) is None


def test_refused_invites_are_counted_by_reason_from_the_carrier() -> None:
    reg = CollectorRegistry()
    m = Metrics(worker=1, registry=reg)
    counts = {"not_allowed": 2}
    m.attach(Bus(), capacity=4, refusals=lambda: dict(counts))
    m.sync()
    counts.update(not_allowed=5, setup_budget=1)
    m.sync()
    m.sync()
    assert _value(reg, "telephony_bot_invites_refused_total", reason="not_allowed") == 5
    assert _value(reg, "telephony_bot_invites_refused_total", reason="setup_budget") == 1
