"""A transfer that fails never leaves the caller in silence: real SIP peers refuse it (the
caller's phone answers the REFER 603 Decline; the target, a SIPp UAS, answers 486 Busy Here,
which the caller's phone reports in its NOTIFY). The model is told the SIP status and reason
and answers at once, the call stays up, and the call record says what happened. When the
model itself is gone, the route's `on_error` plays its recording and transfers; that
transfer failing ends in the engine's apology."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.integration.test_realtime_session import RATE, _tone, server_factory
from tests.support import audio, engine
from tests.support.admin import TOKEN, http, until
from tests.support.plans import scripted_plan
from tests.support.realtime_server import ScriptedRealtimeServer, ScriptedReply
from tests.support.sipp import running_uas, scenario_path, sipp_available

__all__ = ["server_factory"]

pytestmark = pytest.mark.skipif(not sipp_available(), reason="sipp (sip-tester) missing")

SORRY = "I'm sorry, that did not work. Can I help you otherwise?"


@pytest.fixture
def cdr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cdr.jsonl"
    monkeypatch.setenv("TELEPHONY_BOT_CDR_PATH", str(path))
    return path


@pytest.fixture
def busy(tmp_path: Path) -> Iterator[str]:
    """A line that answers every call 486 Busy Here (SIPp): yields its host:port."""
    with running_uas(["-sf", scenario_path("uas_busy")], tmp_path) as hostport:
        yield hostport


def _record(cdr: Path) -> dict[str, Any]:
    lines = until(lambda: cdr.exists() and cdr.read_text().splitlines(), what="a call record")
    return json.loads(lines[-1])


def _segment(rec: np.ndarray, start_ms: float, end_ms: float) -> np.ndarray:
    return rec[int(start_ms * RATE / 1000) : int(end_ms * RATE / 1000)]


def _transfer_then_sorry(server_factory: Any) -> ScriptedRealtimeServer:
    """The model transfers the caller on their first turn, then says it is sorry (900 Hz)."""
    return server_factory(
        replies=[
            ScriptedReply(function_call=("transfer", {"destination": "desk"})),
            ScriptedReply(pcm=_tone(900, 1.5), transcript=SORRY),
        ]
    )


def _model_transfer_call(
    tmp_path: Path, server: ScriptedRealtimeServer, target: str, *dial_args: str
) -> tuple[dict[str, Any], np.ndarray, engine.EngineProc]:
    plan = scripted_plan(
        tmp_path, server, greeting=None, tools=["transfer"], transfer_targets={"desk": target}
    )
    speech = audio.write_wav(tmp_path / "q.wav", audio.speech_like(0.6, RATE), RATE)
    rec = tmp_path / "heard.wav"
    with engine.running(tmp_path, "worker", "--dialplan", str(plan)) as eng:
        rep = engine.dial(
            tmp_path, eng.sip_port, "--play", str(speech), "--play-at", "0.5",
            "--duration", "7", "--record", str(rec), "--rate", str(RATE), *dial_args,
        )  # fmt: skip
        eng.wait_for("call ended")
    assert rep["answered"], rep
    heard, _ = audio.read_wav(rec)
    return rep, heard, eng


def _heard_the_bot_answer_last(rep: dict[str, Any], heard: np.ndarray) -> None:
    """The last thing the caller heard is the model's answer (900 Hz), and the caller, not
    the bot, ended the call: the bot stayed on the line."""
    voiced = audio.voiced_frames(rep["energy_dbfs"])
    assert voiced, "the caller heard nothing"
    last = voiced[-1] * 20
    assert abs(audio.dominant_hz(_segment(heard, last - 1200, last), RATE) - 900) < 15
    assert rep["ended_by"] == "local", rep  # the caller hung up after 7 s; the bot never left


def test_a_refer_the_callers_phone_declines_is_told_to_the_model_which_answers(
    tmp_path: Path, server_factory: Any, cdr: Path
) -> None:
    server = _transfer_then_sorry(server_factory)
    target = "sip:desk@127.0.0.1:9"  # never called: the caller's phone declines the REFER
    rep, heard, _eng = _model_transfer_call(tmp_path, server, target, "--refuse-transfer", "603")
    assert rep["transfer"]["target"] == target and rep["transfer"]["refused"] == 603
    output = json.loads(server.function_outputs[-1]["output"])
    assert output == {
        "error": "transfer to desk failed: 603 Decline; the caller is still on the line"
    }
    _heard_the_bot_answer_last(rep, heard)
    record = _record(cdr)
    assert record["transfers"] == [
        {"target": target, "by": "model", "ok": False, "status": 603, "reason": "Decline"}
    ]
    assert record["turns"]["agent"] == 1  # the answer after the failure


def test_a_busy_target_is_told_to_the_model_which_answers(
    tmp_path: Path, server_factory: Any, cdr: Path, busy: str
) -> None:
    server = _transfer_then_sorry(server_factory)
    target = f"sip:desk@{busy}"
    rep, heard, _eng = _model_transfer_call(tmp_path, server, target)
    # the caller's phone followed the REFER, and the target's line was busy
    assert rep["transfer"]["target"] == target
    assert rep["transfer"]["sip_status"] == 486 and not rep["transfer"]["answered"]
    output = json.loads(server.function_outputs[-1]["output"])
    assert output == {
        "error": "transfer to desk failed: 486 Busy Here; the caller is still on the line"
    }
    _heard_the_bot_answer_last(rep, heard)
    assert _record(cdr)["transfers"] == [
        {"target": target, "by": "model", "ok": False, "status": 486, "reason": "Busy Here"}
    ]


def test_an_operators_transfer_to_a_busy_line_fails_and_the_model_tells_the_caller(
    tmp_path: Path, server_factory: Any, monkeypatch: pytest.MonkeyPatch, busy: str
) -> None:
    server = server_factory(
        greeting=ScriptedReply(pcm=_tone(600, 0.5), transcript="Hello."),
        replies=[ScriptedReply(pcm=_tone(900, 1.5), transcript=SORRY)],
    )
    monkeypatch.setenv("TELEPHONY_BOT_ADMIN_TOKEN", TOKEN)
    target = f"sip:desk@{busy}"
    plan = scripted_plan(tmp_path, server, transfer_targets={"desk": target})
    port = engine.free_port()
    base = f"http://127.0.0.1:{port}"
    rec = tmp_path / "heard.wav"
    with engine.running(
        tmp_path, "worker", "--dialplan", str(plan), "--admin-port", str(port),
        ready_event="worker admin API listening",
    ) as eng:  # fmt: skip
        caller = engine.dial_async(
            tmp_path, eng.sip_port, "--duration", "7", "--record", str(rec), "--rate", str(RATE),
            name="op",
        )  # fmt: skip
        try:
            calls = until(lambda: http("GET", f"{base}/calls")[1]["calls"], what="a live call")
            server.wait_for_sent("response.done")  # the greeting was given
            st, res = http("POST", f"{base}/calls/{calls[0]['call_id']}/transfer",
                           body={"target": target})  # fmt: skip
            assert st == 409, res
            assert (
                res["reason"] == "transfer failed: 486 Busy Here; the caller is still on the line"
            )
            items = [e.data["item"] for e in server.wait_for("conversation.item.create")]
            told = items[-1]
            assert told["role"] == "system"
            assert "the transfer failed (486 Busy Here" in told["content"][0]["text"]
            server.wait_for("response.create", 2)  # the greeting's, and the answer's
            assert caller.wait(20) == 0
        finally:
            if caller.poll() is None:
                caller.kill()
    rep = engine.read_report(tmp_path, "op")
    heard, _ = audio.read_wav(rec)
    assert rep["transfer"]["sip_status"] == 486
    _heard_the_bot_answer_last(rep, heard)


def test_with_the_model_gone_on_error_plays_its_recording_and_a_failed_transfer_ends_in_the_apology(
    tmp_path: Path, server_factory: Any, cdr: Path, busy: str
) -> None:
    server = server_factory(greeting=ScriptedReply(pcm=_tone(600, 0.5), transcript="Hi."))
    audio.write_wav(tmp_path / "sorry.wav", audio.tone(1000, 1.5, 16000), 16000)
    target = f"sip:desk@{busy}"
    plan = scripted_plan(
        tmp_path, server, transfer_targets={"desk": target},
        on_error={"say": "sorry.wav", "transfer": "desk"},
    )  # fmt: skip
    rec = tmp_path / "heard.wav"
    with engine.running(tmp_path, "worker", "--dialplan", str(plan)) as eng:
        caller = engine.dial_async(
            tmp_path, eng.sip_port, "--duration", "25", "--record", str(rec), "--rate", str(RATE),
            name="gone",
        )  # fmt: skip
        server.wait_for("input_audio_buffer.append", 50)
        server.send_error(message="Quota exceeded", code="insufficient_quota")
        assert caller.wait(40) == 0
        ended = eng.wait_for("call ended")[-1]
    rep = engine.read_report(tmp_path, "gone")
    heard, _ = audio.read_wav(rec)
    assert rep["ended_by"] == "remote" and rep["duration_ms"] < 15000  # the bot hung up
    assert ended["hangup_reason"] == "provider error: insufficient_quota", ended
    assert rep["transfer"]["target"] == target and rep["transfer"]["sip_status"] == 486
    voiced = audio.voiced_frames(rep["energy_dbfs"])
    said = next(i * 20 for i in voiced if i * 20 > 800)  # after the greeting
    assert abs(audio.dominant_hz(_segment(heard, said + 100, said + 1300), RATE) - 1000) < 15
    apology = [i for i in voiced if i * 20 > said + 1700]
    assert len(apology) * 20 > 3000, "no apology after the failed transfer"
    assert _record(cdr)["transfers"] == [
        {"target": target, "by": "engine", "ok": False, "status": 486, "reason": "Busy Here"}
    ]
