"""Dialplans on a running engine: the hospital plan books an appointment end to end over a
real SIP call; edits apply to the next call while a running call keeps its plan; a broken
edit is refused and calls keep working; a number no route takes is refused with 404."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tests.integration.test_realtime_session import RATE, _call, _tone, server_factory
from tests.support import audio, engine
from tests.support.realtime_server import ScriptedReply
from tests.support.webhook import WebhookServer

__all__ = ["server_factory"]
REPO = Path(__file__).resolve().parents[2]


def test_hospital_plan_books_an_appointment_end_to_end(
    tmp_path: Path, server_factory, monkeypatch
) -> None:
    monkeypatch.setenv("HOSPITAL_API_TOKEN", "tok-hospital")
    booking = {
        "department": "general", "day": "2026-12-01", "time": "09:30",
        "patient_name": "Ada Lovelace", "date_of_birth": "1815-12-10",
    }  # fmt: skip
    server = server_factory(
        replies=[
            ScriptedReply(function_call=("check_availability",
                                         {"department": "general", "day": "2026-12-01"})),
            ScriptedReply(function_call=("book_slot", booking)),
            ScriptedReply(pcm=_tone(900, 1.0), transcript="Booked: reference HX-4821."),
        ]
    )  # fmt: skip
    routes = {
        ("GET", "/hospital/slots"): {"slots": [{"time": "09:30", "doctor": "Dr. Weber"}]},
        ("POST", "/hospital/bookings"): {"booking": {"reference": "HX-4821", "time": "09:30"}},
    }
    with WebhookServer(routes) as hooks:
        base = f"http://127.0.0.1:{hooks.port}"
        plan = tmp_path / "hospital-test.yaml"
        plan.write_text(json.dumps({
            "extends": str(REPO / "dialplans" / "hospital.yaml"),
            "version": 1,
            "providers": {"realtime": {"type": "compatible", "base_url": server.url,
                                       "model": "gpt-realtime", "dialect": "preview"}},
            "tools": {
                "check_availability": {"http": {
                    "method": "GET", "body": "none", "response_path": "slots",
                    "url": base + "/hospital/slots?department={department}&day={day}",
                    "headers": {"Authorization": "Bearer ${HOSPITAL_API_TOKEN}"}}},
                "book_slot": {"http": {
                    "url": base + "/hospital/bookings", "response_path": "booking",
                    "headers": {"Authorization": "Bearer ${HOSPITAL_API_TOKEN}"}}},
            },
            # the day route without its opening hours, so the test runs at any time
            "routes": [{"name": "hospital-day", "match": {"number": "+493012345600"}}],
        }))  # fmt: skip
        speech = audio.write_wav(tmp_path / "q.wav", audio.speech_like(0.8, RATE), RATE)
        with engine.running(tmp_path, "worker", "--dialplan", str(plan)) as eng:
            rep, rec = _call(
                tmp_path, eng.sip_port, "--play", str(speech), "--play-at", "0.5",
                "--duration", "7", "--from-user", "+4915112345678",
            )  # fmt: skip
            routed = eng.wait_for("call routed")[0]
            assert routed["route"] == "hospital-day"
        get, post = hooks.requests
        assert get["query"] == {"department": "general", "day": "2026-12-01"}
        assert get["headers"]["Authorization"] == "Bearer tok-hospital"
        assert json.loads(post["body"]) == booking
        outputs = [json.loads(e.data["item"]["output"])
                   for e in server.received if e.type == "conversation.item.create"]  # fmt: skip
        assert outputs == [[{"time": "09:30", "doctor": "Dr. Weber"}],
                           {"reference": "HX-4821", "time": "09:30"}]  # fmt: skip
        # the instructions the model got are the hospital's, and the confirmation was heard
        instructions = server.wait_for("session.update")[0].data["session"]["instructions"]
        assert "appointment" in instructions.lower()
        voiced = audio.voiced_frames(rep["energy_dbfs"])
        assert voiced, "the caller heard nothing"
        tail = rec[(voiced[-1] * 20 - 600) * RATE // 1000 : voiced[-1] * 20 * RATE // 1000]
        assert abs(audio.dominant_hz(tail, RATE) - 900) < 15


def _edit(p: Path, text: str) -> None:
    p.write_text(text)
    st = p.stat()
    os.utime(p, (st.st_atime, st.st_mtime + 2))


def test_edits_apply_to_the_next_call_and_broken_edits_are_refused(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    v1 = (
        "version: 1\ndefaults: {provider: echo}\n"
        "routes:\n  - {name: first, match: {number: {regex: '100'}}}\n"
    )
    plan.write_text(v1)
    with engine.running(tmp_path, "worker", "--dialplan", str(plan)) as eng:
        long_call = engine.dial_async(tmp_path, eng.sip_port, "--duration", "6", name="long")
        first = eng.wait_for("call routed")[0]
        assert first["route"] == "first"
        v2 = v1.replace("first", "second")
        _edit(plan, v2)
        eng.wait_for("dialplan reloaded", timeout=10)
        rep = engine.dial(tmp_path, eng.sip_port, "--duration", "1", name="next")
        assert rep["answered"]
        second = eng.wait_for("call routed", 2)[1]
        assert second["route"] == "second" and second["plan_version"] != first["plan_version"]
        _edit(plan, "version: 1\nroutes:\n  - {name: third, tools: [nope]}\n")  # broken
        eng.wait_for("dialplan change rejected; calls keep using the last good plan", timeout=10)
        rep = engine.dial(tmp_path, eng.sip_port, "--duration", "1", name="after-broken")
        assert rep["answered"]
        third = eng.wait_for("call routed", 3)[2]
        assert third["route"] == "second" and third["plan_version"] == second["plan_version"]
        assert long_call.wait(20) == 0  # the first call ran on undisturbed
        assert engine.read_report(tmp_path, "long")["ended_by"] == "local"
        time.sleep(0.2)


def test_a_number_no_route_takes_is_refused_with_404(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "version: 1\ndefaults: {provider: echo}\n"
        "routes:\n  - {name: only, match: {number: '+4930111'}}\n"
    )
    with engine.running(tmp_path, "worker", "--dialplan", str(plan)) as eng:
        rep = engine.dial(tmp_path, eng.sip_port, "--duration", "1", user="+4930999")
        assert not rep["answered"] and rep["sip_status"] == 404
        assert eng.events("call refused: no route")
        ok = engine.dial(tmp_path, eng.sip_port, "--duration", "1", user="+4930111", name="ok")
        assert ok["answered"]


def test_a_live_plan_truncated_to_nothing_is_refused_and_never_answers_with_the_echo(
    tmp_path: Path,
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "version: 1\nroutes:\n  - {name: only, match: {number: '+4930111'}, provider: echo}\n"
    )
    with engine.running(tmp_path, "worker", "--dialplan", str(plan)) as eng:
        _edit(plan, "")  # a deploy that truncated the live plan
        rejected = eng.wait_for(
            "dialplan change rejected; calls keep using the last good plan", timeout=10
        )[0]
        assert "the dialplan file is empty" in rejected["errors"]
        _edit(plan, "version: 1\n")  # no routes, no provider: the old built-in echo defaults
        eng.wait_for("dialplan change rejected; calls keep using the last good plan", 2, 10)
        # a stranger's number is still refused: the last good plan routes, nothing echoes
        rep = engine.dial(tmp_path, eng.sip_port, "--duration", "1", user="+4930999")
        assert not rep["answered"] and rep["sip_status"] == 404
        ok = engine.dial(tmp_path, eng.sip_port, "--duration", "1", user="+4930111", name="ok")
        assert ok["answered"]
        assert not eng.events("dialplan reloaded")
