"""The bank plan on a real SIP call: the caller types the PIN (RFC 4733 from a pjsua2
caller) and reads out a card number and an IBAN; the model (the scripted Realtime server)
checks the PIN with the plan's own `verify_pin` web hook. The hook and the model get the
real PIN; the MQTT events (real Mosquitto), the admin API the admin page reads, the call
record and the engine's log show "***" for the PIN, the keys, the card and the IBAN."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_events_mqtt import (
    ADMIN_TOKEN,
    RATE,
    _call_events,
    _config,
    _tone,
    broker,
    probe,
    server_factory,
)
from tests.support import audio, engine
from tests.support.admin import http, until
from tests.support.mosquitto import Mosquitto, mosquitto_available
from tests.support.mqtt_probe import MqttProbe
from tests.support.plans import KEY_ENV
from tests.support.realtime_server import ScriptedReply
from tests.support.webhook import WebhookServer

__all__ = ["broker", "probe", "server_factory"]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed"),
]

REPO = Path(__file__).resolve().parents[2]
PIN, WRONG = "8642", "86420"
CARD, IBAN = "4111 1111 1111 1111", "DE89 3704 0044 0532 0130 00"
SECRETS = [PIN, WRONG, "4111", "1111 1111", "DE89", "3704 0044"]


def _leaks(text: str) -> list[str]:
    """The secrets in `text` (a PIN only as a number of its own, not inside a port)."""
    return [s for s in SECRETS if re.search(rf"(?<![0-9.]){re.escape(s)}(?![0-9])", text)]


def _bank_plan(tmp: Path, model_url: str, hooks: str) -> Path:
    """dialplans/bank.yaml as shipped, its model and web hooks pointed at the test's."""
    hook = {"headers": {"Authorization": "Bearer ${BANK_API_TOKEN}"}}
    plan = tmp / "bank-test.yaml"
    plan.write_text(json.dumps({
        "extends": str(REPO / "dialplans" / "bank.yaml"),
        "providers": {"realtime": {"type": "compatible", "base_url": model_url,
                                   "model": "gpt-4o-realtime-preview-2024-12-17",
                                   "dialect": "preview", "api_key_env": KEY_ENV}},
        "tools": {
            "lookup_customer": {"http": {"url": hooks + "/bank/customers?phone={phone}", **hook}},
            "verify_pin": {"http": {"url": hooks + "/bank/pin-checks", **hook}},
            "get_balance": {"http": {"url": hooks + "/bank/customers/{customer_id}/balances",
                                     **hook}},
        },
    }))  # fmt: skip
    return plan


def test_the_bank_plans_pin_keys_card_and_iban_leave_the_call_masked(
    tmp_path: Path,
    server_factory: Any,
    broker: Mosquitto,
    probe: MqttProbe,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BANK_API_TOKEN", "tok-bank")
    server = server_factory(
        greeting=ScriptedReply(pcm=_tone(600, 0.6), transcript="Example Bank balance line."),
        replies=[
            ScriptedReply(pcm=_tone(700, 0.6), transcript="Please type your PIN."),
            ScriptedReply(function_call=("verify_pin", {"customer_id": "C-1", "pin": WRONG})),
            ScriptedReply(function_call=("verify_pin", {"customer_id": "C-1", "pin": PIN})),
            ScriptedReply(pcm=_tone(900, 1.0), transcript=f"Your card {CARD} is active."),
        ],
        transcripts=[f"my card is {CARD} and my IBAN is {IBAN}"],  # what the caller says
    )
    admin_port = engine.free_port()
    base = f"http://127.0.0.1:{admin_port}"
    with WebhookServer({("POST", "/bank/pin-checks"): {"result": {"ok": True}}}) as hooks:
        plan = _bank_plan(tmp_path, server.url, f"http://127.0.0.1:{hooks.port}")
        cfg = _config(tmp_path, broker)
        speech = audio.write_wav(tmp_path / "q.wav", audio.speech_like(1.0, RATE), RATE)
        with engine.running(
            tmp_path, "worker", "--dialplan", str(plan), "--config", str(cfg),
            "--admin-port", str(admin_port), ready_event="worker admin API listening",
        ) as eng:  # fmt: skip
            eng.wait_for("mqtt connected")
            caller = engine.dial_async(
                tmp_path, eng.sip_port, "--play", str(speech), "--play-at", "2.0",
                "--dtmf", f"{PIN}#", "--dtmf-at", "4.5", "--duration", "9",
            )  # fmt: skip
            try:
                # the admin API, as the admin page reads it while the call goes on
                live = until(
                    lambda: [c for c in http("GET", f"{base}/calls", ADMIN_TOKEN)[1]["calls"]
                             if len(c["transcript"]) >= 4],
                    timeout=20, what="the call's transcript so far",
                )[0]  # fmt: skip
                assert caller.wait(20) == 0
            finally:
                if caller.poll() is None:
                    caller.kill()
            cdr = probe.wait_for(lambda m: m.topic.endswith("/cdr"), timeout=20)[0].payload
            logged = eng.log_path.read_text()
        call_id = live["call_id"]

    # the back office and the model got the real PIN
    assert [json.loads(r["body"]) for r in hooks.requests] == [{"customer_id": "C-1", "pin": PIN}]
    items = json.dumps([e.data for e in server.received if e.type == "conversation.item.create"])
    assert f"The caller pressed the keys: {PIN} (ended with #)" in items
    assert f"'{WRONG}' does not match" in items  # the model is told what it got wrong

    # everything that left the call shows "***"
    events = _call_events(probe, call_id)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_type.setdefault(e["type"], []).append(e)
    assert [e["arguments"] for e in by_type["tool.called"]] == [
        {"customer_id": "C-1", "pin": "***"}
    ] * 2
    assert by_type["tool.result"][0]["error"] == (
        "invalid arguments at pin: '***' does not match '^[0-9]{4}$'"
    )
    assert {e["digit"] for e in by_type["dtmf"]} == {"***"} and len(by_type["dtmf"]) == 5
    assert by_type["dtmf.input"][0]["digits"] == "***"
    assert by_type["turn.user"][0]["text"] == "my card is *** and my IBAN is ***"
    assert by_type["turn.agent"][-1]["text"] == "Your card *** is active."
    assert [(t["role"], t["text"]) for t in live["transcript"]][1:] == [
        ("user", "my card is *** and my IBAN is ***"),
        ("agent", "Please type your PIN."),
        ("agent", "Your card *** is active."),
    ]
    assert cdr["dtmf"] == "***" and cdr["tool_calls"] == 2
    assert cdr["tools"][0]["error"] == "invalid arguments at pin: '***' does not match '^[0-9]{4}$'"
    record = json.loads((tmp_path / "cdr.jsonl").read_text().splitlines()[-1])
    assert record["call_id"] == call_id
    assert _leaks(json.dumps(events)) == []
    assert _leaks(json.dumps(live)) == []
    assert _leaks(json.dumps(record)) == []
    assert _leaks(logged) == []
    assert [e for e in eng.events("turn.user") if "text" in e] == []  # info level: lengths
