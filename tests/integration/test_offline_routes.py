"""Offline routes as callers meet them, over SIP with the real offline pipeline: a route
with `greeting: null` greets with its flow's start; a transferred caller's call to the bot
ends as soon as the transfer succeeded."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_local_engine_call import (
    RATE,
    _local_plan,
    _spoken,
    local_engine,
    speech,
)
from tests.support import audio, engine

__all__ = ["local_engine", "speech"]


@pytest.fixture
def cdr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cdr.jsonl"
    monkeypatch.setenv("TELEPHONY_BOT_CDR_PATH", str(path))
    return path


def _record(cdr: Path, called: str) -> dict[str, Any]:
    """The call record of the call to `called` (the desk writes its own to the same file)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = cdr.read_text().splitlines() if cdr.exists() else []
        for rec in map(json.loads, lines):
            if rec["called"] == called:
                return rec  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError(f"no call record for {called}")


REFUSE_FLOW = {
    "start": "refuse",
    "states": {
        "refuse": {"say": "This line is only for registered field inspectors. Goodbye.",
                   "then": "hangup"},
    },
}  # fmt: skip


def test_a_route_without_greeting_opens_with_its_flows_start(
    tmp_path: Path, local_engine: str, speech: tuple
) -> None:
    """`greeting: null` on an offline route whose flow's start state speaks (the unknown
    caller route of field_inspection.yaml): a caller who says nothing hears the refusal at
    once, and the flow hangs up; no 20 s of silence, no idle hang-up."""
    asr, _ = speech
    plan = _local_plan(
        tmp_path, local_engine,
        defaults={"greeting": None, "tools": ["hangup"], "flow": REFUSE_FLOW, "idle_seconds": 20},
    )  # fmt: skip
    rec = tmp_path / "heard.wav"
    with engine.running(tmp_path, "worker", "--dialplan", str(plan)) as eng:
        rep = engine.dial(
            tmp_path, eng.sip_port, "--duration", "15", "--record", str(rec), "--rate", str(RATE),
        )  # fmt: skip
        ended = eng.wait_for("call ended")[0]
    assert rep["answered"], rep
    heard, _ = audio.read_wav(rec)
    said = asr.transcribe(heard.tobytes(), sample_rate=RATE).text.lower()
    assert "registered field" in said, said  # "inspectors" varies
    assert rep["ended_by"] == "remote" and ended["hangup_reason"] != "idle", ended
    assert rep["duration_ms"] < 8000, f"the refusal took {rep['duration_ms']} ms"


DESK_FLOW = {
    "start": "menu",
    "states": {
        "menu": {
            "say": "For the desk, press zero.",
            "intents": [{"name": "desk", "examples": ["the desk please"], "dtmf": "0",
                         "then": "handoff"}],
        },
        "handoff": {"say": "Putting you through to the desk now.", "then": "transfer:desk"},
    },
}  # fmt: skip


def test_after_a_transfer_the_bots_leg_ends_at_once(
    tmp_path: Path, local_engine: str, cdr: Path
) -> None:
    """The caller presses 0, the flow transfers them to the desk (REFER, the desk answers):
    the bot's leg is hung up within a couple of seconds, not left up silent until the idle
    timer, and the call record says the call was transferred."""
    with engine.running(tmp_path, "worker", "--provider", "echo", name="desk") as desk:
        target = f"sip:desk@127.0.0.1:{desk.sip_port}"
        plan = _local_plan(
            tmp_path, local_engine,
            defaults={"tools": ["transfer", "hangup"], "flow": DESK_FLOW, "idle_seconds": 30,
                      "transfer_targets": {"desk": target}},
        )  # fmt: skip
        with engine.running(tmp_path, "worker", "--dialplan", str(plan)) as eng:
            rep = engine.dial(
                tmp_path, eng.sip_port, "--dtmf", "0", "--dtmf-at", "1.5", "--duration", "20",
                "--rate", str(RATE),
            )  # fmt: skip
            assert rep["answered"], rep
            assert rep["transfer"] and rep["transfer"]["answered"], rep["transfer"]
            outcome = eng.wait_for("transfer outcome")[0]
            ended = eng.wait_for("call ended")[0]
    assert outcome["ok"] is True, outcome
    assert rep["ended_by"] == "remote", rep["ended_by"]  # the bot hung up, not the caller
    # from the answer: 1.5 s to the key, the transfer, then the bot's BYE within ~2 s
    assert rep["duration_ms"] < 9000, f"the bot's leg stayed up {rep['duration_ms']} ms"
    assert ended["hangup_reason"].startswith("transferred"), ended
    rec = _record(cdr, "100")
    assert rec["transfers"] and rec["transfers"][0]["ok"] is True, rec["transfers"]
    assert rec["end_reason"].startswith("transferred"), rec["end_reason"]
    # an offline call costs nothing and shows no dollar price table
    usage = rec["usage"]
    assert (usage["cost_usd"], usage["price_table"], usage["billed"]) == (0.0, None, False)
    # the tool's log line is the call's (call_id), the tool call has its own id
    [called] = eng.events("tool called")
    assert called["call_id"] == ended["call_id"] and called["tool_call_id"].startswith("call_")


def test_serve_without_an_openai_key_answers_the_offline_routes_of_a_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, speech: tuple
) -> None:
    """`serve` with field_inspection.yaml and no OPENAI_API_KEY: it starts (saying which
    route cannot take calls), and an unknown caller still hears the offline route's refusal
    at once, without saying anything (`greeting: null`)."""
    asr, _ = speech
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("FIELD_API_TOKEN", "test-token")
    eng = engine.start(
        tmp_path, "serve", "--dialplan", "dialplans/field_inspection.yaml",
        "--local-engine-port", str(engine.free_port()), "--grace", "1",
        ready_event="realtime server listening",
    )  # fmt: skip
    rec = tmp_path / "heard.wav"
    try:
        eng.wait_for("worker listening")
        idle = {e["reason"] for e in eng.events("route cannot take calls")}  # serve, worker
        assert len(idle) == 1 and "'field-inspection'" in idle.pop(), idle
        rep = engine.dial(
            tmp_path, eng.sip_port, "--from-user", "+4930555", "--duration", "15",
            "--record", str(rec), "--rate", str(RATE), user="+4989200300",
        )  # fmt: skip
    finally:
        assert eng.stop() == 0
    assert rep["answered"] and rep["ended_by"] == "remote", rep
    heard, _ = audio.read_wav(rec)
    said = asr.transcribe(heard.tobytes(), sample_rate=RATE).text.lower()
    assert "registered field" in said and "company phone" in said, said  # "inspectors" varies


LOOKUP_FLOW = {
    "start": "identify",
    "anywhere": [{"name": "person", "examples": ["I want to talk to a person"],
                  "then": "transfer:desk"}],
    "states": {
        "identify": {
            "tool": {"name": "customer", "args": {"phone": "{caller}"}, "result": "customer"},
            "say": "Welcome, {customer.first_name}. Please tell me your four-digit PIN.",
            "intents": [{"name": "pin", "examples": ["my pin is 1234"],
                         "slots": {"pin": {"type": "digits", "length": 4}}, "then": "hangup"}],
        },
    },
}  # fmt: skip


def test_a_person_asked_for_while_the_caller_is_looked_up_is_put_through(
    tmp_path: Path, local_engine: str, speech: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The route greets, the flow looks the caller up (3 s); the caller says "I want to talk
    to a person" meanwhile. The words are not lost: once the lookup answers, the caller is
    put through to the desk — never asked for a PIN."""
    _, tts = speech
    _, wav = _spoken(tts, "I want to talk to a person, please.", tmp_path / "person.wav")
    monkeypatch.setenv("TELEPHONY_BOT_LOGGING_TRANSCRIPTS", "true")  # what the bot said
    with engine.running(tmp_path, "worker", "--provider", "echo", name="desk") as desk:
        plan = _local_plan(
            tmp_path, local_engine,
            tools={"customer": {"python": "tests.support.tools:slow_customer",
                                "description": "The customer calling from this number"}},
            defaults={"greeting": "Example Bank, one moment.", "flow": LOOKUP_FLOW,
                      "tools": ["customer", "transfer", "hangup"],
                      "transfer_targets": {"desk": f"sip:desk@127.0.0.1:{desk.sip_port}"}},
        )  # fmt: skip
        with engine.running(tmp_path, "worker", "--dialplan", str(plan)) as eng:
            rep = engine.dial(
                tmp_path, eng.sip_port, "--play", str(wav), "--play-at", "2.2",
                "--duration", "20", "--rate", str(RATE),
            )  # fmt: skip
            said = [e["text"] for e in eng.events("turn.assistant")]
            outcome = eng.wait_for("transfer outcome")[0]
    assert rep["answered"] and rep["transfer"] and rep["transfer"]["answered"], rep
    assert outcome["ok"] is True, outcome
    assert not any("PIN" in s for s in said), said
