"""A real SIP call whose model calls an async tool that takes 12 s: the model hears at once
that the result will follow and tells the caller, the caller talks in between and is
answered, never sits in long dead air, and then hears the result; the call record shows
the tool's wait."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from telephony_bot.providers.base import PENDING_OUTPUT
from tests.support import audio, engine
from tests.support.plans import KEY_ENV, scripted_plan
from tests.support.realtime_server import ScriptedRealtimeServer, ScriptedReply

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

RATE = 16000  # the caller's recording rate
TRACK_PARCEL = {
    "python": "tests.support.tools:track_parcel",  # 12 s
    "async": True,
    "timeout_s": 30,
    "description": "Where a parcel is",
    "parameters": {
        "type": "object",
        "properties": {"order": {"type": "string"}},
        "required": ["order"],
    },
}


def _tone(hz: float, seconds: float) -> bytes:
    return audio.pcm24(audio.tone(hz, seconds, 24000, dbfs=-14))


def _segment(rec: np.ndarray, start_ms: float, end_ms: float) -> np.ndarray:
    return rec[int(start_ms * RATE / 1000) : int(end_ms * RATE / 1000)]


def test_an_async_tool_taking_12_s_keeps_the_conversation_going_and_its_result_is_heard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test")
    cdr_path = tmp_path / "cdr.jsonl"
    monkeypatch.setenv("TELEPHONY_BOT_CDR_PATH", str(cdr_path))
    server = ScriptedRealtimeServer(
        replies=[
            # the caller's question: the model calls the tool
            ScriptedReply(function_call=("track_parcel", {"order": "A-17"})),
            # asked to go on after the pending output: "I am checking, one moment"
            ScriptedReply(pcm=_tone(700, 1.5), transcript="I am checking that for you."),
            # the caller's second turn, while the tool runs
            ScriptedReply(pcm=_tone(800, 1.0), transcript="Still on it."),
            # asked to reply once the result was given: the answer
            ScriptedReply(pcm=_tone(900, 1.2), transcript="It is out for delivery."),
        ]
    )
    server.start()
    try:
        plan_path = scripted_plan(tmp_path, server, greeting=None, tools=["track_parcel"])
        plan = json.loads(plan_path.read_text())
        plan["tools"]["track_parcel"] = TRACK_PARCEL
        plan_path.write_text(json.dumps(plan))
        # two caller turns: at 0.5 s (the question) and at 5.5 s (while the tool runs)
        voice = audio.speech_like(0.8, RATE)
        turns = np.concatenate([voice, np.zeros(int(4.2 * RATE), np.int16), voice])
        speech = audio.write_wav(tmp_path / "turns.wav", turns, RATE)
        with engine.running(tmp_path, "worker", "--dialplan", str(plan_path)) as eng:
            rec_path = tmp_path / "call.wav"
            rep = engine.dial(
                tmp_path, eng.sip_port, "--record", str(rec_path), "--rate", str(RATE),
                "--play", str(speech), "--play-at", "0.5", "--duration", "17",
            )  # fmt: skip
            assert rep["answered"], rep
            eng.wait_for("call ended")
            rec, _ = audio.read_wav(rec_path)

        first = server.received[0].t
        called = [e for e in server.sent if e.type == "response.function_call_arguments.done"]
        assert len(called) == 1
        call_id = called[0].data["call_id"]

        # 1. the pending output, at once (well within the 5 s tool window)
        outputs = server.function_outputs
        assert [(o["call_id"], o["output"]) for o in outputs] == [(call_id, PENDING_OUTPUT)]
        pending_t = outputs[0]["t"]
        assert pending_t - called[0].t < 1.0

        # 3. the result, as a system message 12 s later, then a request for the reply
        items = [e for e in server.received if e.type == "conversation.item.create"]
        results = [
            e for e in items
            if e.data["item"]["type"] == "message" and e.data["item"]["role"] == "system"
        ]  # fmt: skip
        assert len(results) == 1
        text = results[0].data["item"]["content"][0]["text"]
        assert text.startswith(f"Result of track_parcel (call {call_id}): ")
        assert json.loads(text.split(": ", 1)[1])["status"] == "out for delivery"
        result_t = results[0].t
        assert result_t - called[0].t >= 12.0
        assert [e for e in server.received if e.type == "response.create" and e.t > result_t]

        # 2. the caller spoke in between and was heard: a whole turn between the two
        stops = [e.t for e in server.sent if e.type == "input_audio_buffer.speech_stopped"]
        assert [t for t in stops if pending_t < t < result_t], (stops, pending_t, result_t)

        # what the caller heard: "I am checking" (700 Hz) at once, the answer to their
        # second turn (800 Hz), then the result (900 Hz); never more than ~4 s of silence
        tool_ms = (called[0].t - first) * 1000
        result_ms = (result_t - first) * 1000
        assert abs(audio.dominant_hz(_segment(rec, tool_ms + 300, tool_ms + 1300), RATE) - 700) < 15
        assert (
            abs(audio.dominant_hz(_segment(rec, result_ms + 300, result_ms + 1000), RATE) - 900)
            < 15
        )
        voiced = [i * 20 for i in audio.voiced_frames(rep["energy_dbfs"])]
        during = [ms for ms in voiced if tool_ms <= ms <= result_ms + 400]
        gaps = np.diff([tool_ms, *during, result_ms + 400])
        assert max(gaps) < 4800, f"dead air of {max(gaps):.0f} ms while the tool ran"

        # 4. the call record shows the wait
        [cdr] = [json.loads(line) for line in cdr_path.read_text().splitlines()]
        [tool] = cdr["tools"]
        assert tool["name"] == "track_parcel" and tool["ok"] is True and tool["async"] is True
        assert tool["pending_ms"] < 1000 and tool["duration_ms"] >= 12000
        assert tool["delivered"] is True and tool["delivered_ms"] >= tool["duration_ms"]
    finally:
        server.stop()
