"""A real SIP call through the engine to a scripted OpenAI-Realtime server: greeting,
turns, barge-in, tool calls with filler, a dropped socket, server errors, usage."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from telephony_bot import keypad
from tests.support import audio, engine
from tests.support.plans import KEY_ENV, fallback_plan, scripted_plan
from tests.support.realtime_server import ScriptedRealtimeServer, ScriptedReply

RATE = 16000  # the caller's recording rate
SECRET = "sk-test-never-log-me-123"


def _tone(hz: float, seconds: float) -> bytes:
    return audio.pcm24(audio.tone(hz, seconds, 24000, dbfs=-14))


def _model(dialect: str) -> str:
    return "gpt-4o-realtime-preview-2024-12-17" if dialect == "preview" else "gpt-realtime"


def _plan(tmp: Path, server: ScriptedRealtimeServer, **defaults: object) -> Path:
    return scripted_plan(tmp, server, **defaults)


@pytest.fixture
def server_factory(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    monkeypatch.setenv(KEY_ENV, SECRET)
    servers: list[ScriptedRealtimeServer] = []

    def make(**kw: object) -> ScriptedRealtimeServer:
        s = ScriptedRealtimeServer(**kw)  # type: ignore[arg-type]
        s.start()
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


def _segment(rec: np.ndarray, start_ms: float, end_ms: float) -> np.ndarray:
    return rec[int(start_ms * RATE / 1000) : int(end_ms * RATE / 1000)]


def _call(tmp: Path, port: int, *args: str, name: str = "call") -> tuple[dict, np.ndarray]:
    rec = tmp / f"{name}.wav"
    rep = engine.dial(tmp, port, "--record", str(rec), "--rate", str(RATE), *args, name=name)
    assert rep["answered"], rep
    got, _ = audio.read_wav(rec)
    return rep, got


@pytest.mark.parametrize("dialect", ["preview", "ga"])
def test_greeting_then_a_caller_turn_is_answered(
    tmp_path: Path, server_factory, dialect: str
) -> None:
    server = server_factory(
        dialect=dialect,
        greeting=ScriptedReply(pcm=_tone(600, 1.0), transcript="Hello, how can I help?"),
        replies=[ScriptedReply(pcm=_tone(900, 1.2), transcript="Your slot is at nine.")],
    )
    speech = audio.write_wav(tmp_path / "q.wav", audio.speech_like(1.0, RATE), RATE)
    with engine.running(tmp_path, "worker", "--dialplan", str(_plan(tmp_path, server))) as eng:
        rep, rec = _call(
            tmp_path, eng.sip_port, "--play", str(speech), "--play-at", "2", "--duration", "6"
        )
        voiced = audio.voiced_frames(rep["energy_dbfs"])
        # greeting: heard promptly after answer, and it is the greeting's 600 Hz
        assert voiced and voiced[0] * 20 < 400, voiced[:5]
        assert abs(audio.dominant_hz(_segment(rec, 100, 900), RATE) - 600) < 15
        # the answer to the caller's turn: 900 Hz, after the caller stopped (2 s + 1 s)
        assert abs(audio.dominant_hz(_segment(rec, 3700, 4600), RATE) - 900) < 15
        upd = server.wait_for("session.update")[0].data["session"]
        assert upd["instructions"] == "You are a test agent."
        voice = upd["voice"] if dialect == "preview" else upd["audio"]["output"]["voice"]
        assert voice == "alloy"
        assert server.requests[0]["headers"]["authorization"] == f"Bearer {SECRET}"
        assert server.audio_received_ms() > 4000  # caller audio streamed all along
        ended = eng.wait_for("call ended")[-1]
        assert ended["turns_agent"] == 2 and ended["turns_user"] == 1
        # usage totals equal the sum of what the server reported in response.done
        sent = server.usage_sent
        assert ended["usage"]["responses"] == len(sent) == 2
        assert ended["usage"]["total_tokens"] == sum(u["total_tokens"] for u in sent)
        assert ended["usage"]["output_audio_tokens"] == sum(
            u["output_token_details"]["audio_tokens"] for u in sent
        )
        # a Realtime-compatible server is not in the shipped price table: the cost is
        # unknown (null), not a guess; the tokens are all counted
        assert ended["usage"]["cost_usd"] is None
        assert ended["usage"]["price_table"] == "openai-2026-12-07"
        assert ended["usage"]["unpriced"] == [f"compatible {_model(dialect)}"]
        assert SECRET not in eng.log_path.read_text()  # the key is never logged


def test_a_provider_error_while_the_phone_rings_does_not_delay_the_answer(
    tmp_path: Path, server_factory
) -> None:
    # The greeting is ready 0.6 s after the model is asked; a non-fatal error arrives
    # before that, while the call still rings. The caller must be answered when the
    # greeting is ready, not after the route's whole pre-warm maximum (6 s here).
    server = server_factory(
        greeting=ScriptedReply(pcm=_tone(600, 1.0), transcript="Hello.", delay_ms=600)
    )
    plan = _plan(tmp_path, server, prewarm_max_wait_ms=6000)
    with engine.running(tmp_path, "worker", "--dialplan", str(plan)) as eng:
        call = engine.dial_async(
            tmp_path, eng.sip_port, "--duration", "3", "--record", str(tmp_path / "r.wav"),
            "--rate", str(RATE), name="ring",
        )  # fmt: skip
        server.wait_for("response.create")
        server.send_error(message="Rate limit reached", code="rate_limit_exceeded")
        assert call.wait(30) == 0
        rep = engine.read_report(tmp_path, "ring")
        assert rep["answered"] and rep["setup_ms"] < 3000, rep["setup_ms"]
        voiced = audio.voiced_frames(rep["energy_dbfs"])
        # the greeting from the first moments after the answer (the recording starts with
        # the call, before the answer)
        assert voiced and voiced[0] * 20 - rep["setup_ms"] < 400, (voiced[:3], rep["setup_ms"])
        assert eng.wait_for("provider error")[0]["code"] == "rate_limit_exceeded"


def test_function_call_round_trip_with_filler_while_the_tool_is_slow(
    tmp_path: Path, server_factory
) -> None:
    server = server_factory(
        replies=[
            ScriptedReply(function_call=("lookup", {"day": "monday"})),
            ScriptedReply(pcm=_tone(900, 1.0), transcript="Nine or half past eleven."),
        ],
    )
    speech = audio.write_wav(tmp_path / "q.wav", audio.speech_like(0.8, RATE), RATE)
    plan = _plan(tmp_path, server, greeting=None, tools=["lookup"])
    with engine.running(tmp_path, "worker", "--dialplan", str(plan)) as eng:
        rep, rec = _call(
            tmp_path, eng.sip_port, "--play", str(speech), "--play-at", "0.5", "--duration", "6"
        )
        outputs = server.wait_for("conversation.item.create")
        out = outputs[-1].data["item"]
        assert out["type"] == "function_call_output"
        assert json.loads(out["output"]) == {"day": "monday", "slots": ["9:00", "11:30"]}
        creates = server.wait_for("response.create")
        assert creates[-1].t > outputs[-1].t  # and then the model is asked to go on
        # the caller hears the filler while the tool runs (~0.7 s after the call), then 900 Hz
        fn = [e for e in server.sent if e.type == "response.function_call_arguments.done"][0]
        first = server.received[0].t
        tool_start_ms = (fn.t - first) * 1000
        filler = _segment(rec, tool_start_ms + 900, tool_start_ms + 1400)
        assert audio.frame_rms_dbfs(filler) > -40, "dead air while the tool ran"
        voiced = audio.voiced_frames(rep["energy_dbfs"])
        assert voiced[-1] * 20 > tool_start_ms + 1500  # the answer came after the tool
        assert eng.events("filler") and eng.events("tool result")[0]["ok"] is True


def test_tool_outside_the_route_is_refused_and_the_model_told(
    tmp_path: Path, server_factory
) -> None:
    server = server_factory(
        replies=[ScriptedReply(function_call=("delete_everything", {})), ScriptedReply()],
    )
    speech = audio.write_wav(tmp_path / "q.wav", audio.speech_like(0.8, RATE), RATE)
    plan = _plan(tmp_path, server, greeting=None, tools=["lookup"])
    with engine.running(tmp_path, "worker", "--dialplan", str(plan)) as eng:
        _call(tmp_path, eng.sip_port, "--play", str(speech), "--play-at", "0.5", "--duration", "4")
        out = server.wait_for("conversation.item.create")[-1].data["item"]
        assert "not available" in json.loads(out["output"])["error"]
        assert eng.events("tool result")[0]["ok"] is False


def test_dropped_provider_socket_keeps_the_call_up_and_the_next_turn_works(
    tmp_path: Path, server_factory
) -> None:
    server = server_factory(
        greeting=ScriptedReply(pcm=_tone(600, 0.6), transcript="Hello there."),
        replies=[ScriptedReply(pcm=_tone(900, 1.0), transcript="Still here.")],
    )
    speech = audio.write_wav(tmp_path / "q.wav", audio.speech_like(0.8, RATE), RATE)
    with engine.running(tmp_path, "worker", "--dialplan", str(_plan(tmp_path, server))) as eng:
        call = engine.dial_async(
            tmp_path, eng.sip_port,
            "--play", str(speech), "--play-at", "4", "--duration", "7",
            "--record", str(tmp_path / "rec.wav"), "--rate", str(RATE), name="drop",
        )  # fmt: skip
        server.wait_for("input_audio_buffer.append", 50)  # ~1 s into the call
        server.kill_connection()
        server.wait_connections(2, timeout=10)
        restored = server.wait_for("session.update", 2)[1]
        assert restored.data["session"]["instructions"] == "You are a test agent."
        # the conversation so far (the greeting) is restored on the new connection
        items = server.wait_for("conversation.item.create", conn=1)
        assert any("Hello there." in json.dumps(e.data) for e in items)
        assert call.wait(30) == 0
        rep = engine.read_report(tmp_path, "drop")
        rec, _ = audio.read_wav(tmp_path / "rec.wav")
        voiced = audio.voiced_frames(rep["energy_dbfs"])
        kill_ms = 1000
        # the caller heard the engine's recovery phrase right after the drop: no dead air
        assert [i for i in voiced if kill_ms <= i * 20 <= kill_ms + 2000]
        # and the turn after the reconnect was answered (900 Hz after the 4 s question)
        assert abs(audio.dominant_hz(_segment(rec, 5700, 6400), RATE) - 900) < 15
        assert eng.events("provider reconnected")
        assert eng.wait_for("call ended")[-1]["ended_by"] == "remote"  # the caller hung up


def test_a_reconnected_model_is_given_the_conversation_as_the_caller_lived_it(
    tmp_path: Path, server_factory
) -> None:
    # greeting, a turn whose reply is a tool call, the tool's output, the answer; then the
    # socket drops: the new connection gets all of it back, in order, and no new greeting
    server = server_factory(
        greeting=ScriptedReply(pcm=_tone(600, 0.6), transcript="Hello there."),
        replies=[
            ScriptedReply(function_call=("lookup", {"day": "monday"})),
            ScriptedReply(pcm=_tone(900, 0.6), transcript="Nine or half past eleven."),
        ],
    )
    speech = audio.write_wav(tmp_path / "q.wav", audio.speech_like(0.8, RATE), RATE)
    plan = _plan(tmp_path, server, tools=["lookup"])
    with engine.running(tmp_path, "worker", "--dialplan", str(plan)) as eng:
        call = engine.dial_async(
            tmp_path, eng.sip_port, "--play", str(speech), "--play-at", "1", "--duration", "9",
            name="restore",
        )  # fmt: skip
        eng.wait_for("turn.assistant", 2, timeout=15)  # the answer after the tool
        time.sleep(1.0)  # ... and it was heard
        creates = len(server.wait_for("response.create"))
        server.kill_connection()
        server.wait_connections(2, timeout=10)
        server.wait_for("session.update", 2)
        time.sleep(0.5)
        items = [e.data["item"] for e in server.received
                 if e.conn == 1 and e.type == "conversation.item.create"]  # fmt: skip
        assert [(i["type"], i.get("role")) for i in items] == [
            ("message", "assistant"),
            ("message", "user"),  # the scripted server's transcript of the caller's turn
            ("function_call", None),
            ("function_call_output", None),
            ("message", "assistant"),
        ], items
        assert items[0]["content"][0]["text"] == "Hello there."
        assert items[1]["content"][0]["text"].startswith("<caller audio")
        call_item, output = items[2], items[3]
        assert call_item["name"] == "lookup"
        assert json.loads(call_item["arguments"]) == {"day": "monday"}
        assert output["call_id"] == call_item["call_id"]
        assert json.loads(output["output"])["slots"] == ["9:00", "11:30"]
        assert items[4]["content"][0]["text"] == "Nine or half past eleven."
        assert len(server.wait_for("response.create")) == creates  # no greeting again
        assert call.wait(30) == 0
        assert eng.wait_for("reconnected")[0]["restored_items"] == 5


def test_a_model_gone_for_good_hands_the_call_to_the_routes_next_provider(
    tmp_path: Path, server_factory
) -> None:
    # provider: [main, backup]. main greets, then fails for good (quota); backup takes the
    # call over with the conversation, does not greet, and answers the caller's next turn.
    main = server_factory(greeting=ScriptedReply(pcm=_tone(600, 0.6), transcript="Hello there."))
    backup = server_factory(replies=[ScriptedReply(pcm=_tone(900, 1.0), transcript="Yes.")])
    speech = audio.write_wav(tmp_path / "q.wav", audio.speech_like(0.8, RATE), RATE)
    plan_path = fallback_plan(tmp_path, main, backup)
    with engine.running(tmp_path, "worker", "--dialplan", str(plan_path)) as eng:
        call = engine.dial_async(
            tmp_path, eng.sip_port, "--play", str(speech), "--play-at", "3", "--duration", "7",
            "--record", str(tmp_path / "rec.wav"), "--rate", str(RATE), name="fo",
        )  # fmt: skip
        eng.wait_for("turn.assistant")  # the greeting
        time.sleep(1.0)  # ... heard
        main.send_error(message="You exceeded your quota", code="insufficient_quota")
        backup.wait_connections(1, timeout=10)
        items = backup.wait_for("conversation.item.create")
        assert items[0].data["item"]["content"][0]["text"] == "Hello there."  # the history
        assert call.wait(30) == 0
        rep = engine.read_report(tmp_path, "fo")
        rec, _ = audio.read_wav(tmp_path / "rec.wav")
        # the backup answered the caller's turn (900 Hz after the question at 3 s)
        assert abs(audio.dominant_hz(_segment(rec, 4700, 5400), RATE) - 900) < 15
        assert not [e for e in backup.received if e.type == "response.create"]  # no greeting
        fo = eng.wait_for("provider failover")[0]
        assert (fo["from"], fo["to"], fo["ok"]) == ("main", "backup", True)
        assert not eng.events("model unavailable: transferring the caller")
        assert eng.wait_for("call ended")[-1]["ended_by"] == "remote"  # never dropped
        assert rep["answered"]


def test_a_model_that_stops_answering_gets_a_filler_then_the_next_provider_answers(
    tmp_path: Path, server_factory
) -> None:
    # main greets, then stalls like a stopped process (connection open, nothing sent): the
    # caller hears a filler within 2 s of their question, and after the route's
    # reply_timeout_ms the backup answers it (it has the conversation, it does not greet).
    main = server_factory(greeting=ScriptedReply(pcm=_tone(600, 0.6), transcript="Hello there."))
    backup = server_factory(replies=[ScriptedReply(pcm=_tone(900, 1.0), transcript="Nine.")])
    speech = audio.write_wav(tmp_path / "q.wav", audio.speech_like(0.8, RATE), RATE)
    stall = {"filler_ms": 2000, "reply_timeout_ms": 3500}
    plan_path = fallback_plan(tmp_path, main, backup, stall=stall)
    with engine.running(tmp_path, "worker", "--dialplan", str(plan_path)) as eng:
        call = engine.dial_async(
            tmp_path, eng.sip_port, "--play", str(speech), "--play-at", "2", "--duration", "9.5",
            "--record", str(tmp_path / "rec.wav"), "--rate", str(RATE), name="stall",
        )  # fmt: skip
        eng.wait_for("turn.assistant")  # the greeting
        main.freeze()  # from now on it says nothing
        assert call.wait(30) == 0
        rep = engine.read_report(tmp_path, "stall")
        rec, _ = audio.read_wav(tmp_path / "rec.wav")
        voiced = audio.voiced_frames(rep["energy_dbfs"])
        # the question ends at 2.8 s: silence, then the filler (speech, not the 900 Hz)
        after = [i * 20 for i in voiced if i * 20 > 2900]
        assert after and after[0] - 2800 <= 2300, after[:3]
        assert abs(audio.dominant_hz(_segment(rec, after[0], after[0] + 600), RATE) - 900) > 50
        # the backup's answer after the reply timeout (2.8 + 3.5 s) and the bridge phrase
        answer = [
            t for t in range(6000, 9400, 100)
            if abs(audio.dominant_hz(_segment(rec, t, t + 300), RATE) - 900) < 15
        ]  # fmt: skip
        assert answer and answer[0] < 8600, answer
        stalled = eng.wait_for("provider stalled")[0]
        assert (stalled["provider"], stalled["kind"]) == ("main", "no_reply")
        fo = eng.wait_for("provider failover")[0]
        assert (fo["from"], fo["to"], fo["reason"]) == ("main", "backup", "stalled: no_reply")
        items = backup.wait_for("conversation.item.create")
        assert items[0].data["item"]["content"][0]["text"] == "Hello there."
        assert len(backup.wait_for("response.create")) == 1  # its answer; no greeting
        assert eng.wait_for("call ended")[-1]["ended_by"] == "remote"  # never dropped


def test_a_bad_request_error_from_the_server_is_logged_and_the_call_goes_on(
    tmp_path: Path, server_factory
) -> None:
    server = server_factory(greeting=ScriptedReply(pcm=_tone(600, 2.5), transcript="Hello."))
    with engine.running(tmp_path, "worker", "--dialplan", str(_plan(tmp_path, server))) as eng:
        call = engine.dial_async(
            tmp_path, eng.sip_port, "--duration", "3.5", "--record", str(tmp_path / "r.wav"),
            "--rate", str(RATE), name="err",
        )  # fmt: skip
        server.wait_for("input_audio_buffer.append", 25)
        server.send_error(message="Invalid value: 'x'", code="invalid_value", event_id="evt_123")
        assert call.wait(30) == 0
        rep = engine.read_report(tmp_path, "err")
        err = eng.wait_for("provider error")[0]
        assert err["event_id"] == "evt_123" and err["fatal"] is False
        voiced = audio.voiced_frames(rep["energy_dbfs"])
        assert (voiced[-1] - voiced[0] + 1) * 20 >= 2400  # the greeting played on, uncut
        assert eng.wait_for("call ended")[-1]["ended_by"] == "remote"


def test_fatal_provider_error_ends_the_call_with_a_spoken_apology(
    tmp_path: Path, server_factory
) -> None:
    server = server_factory(greeting=ScriptedReply(pcm=_tone(600, 0.5), transcript="Hi."))
    with engine.running(tmp_path, "worker", "--dialplan", str(_plan(tmp_path, server))) as eng:
        call = engine.dial_async(tmp_path, eng.sip_port, "--duration", "15", name="fatal")
        server.wait_for("input_audio_buffer.append", 50)
        server.send_error(
            message="Incorrect API key", code="invalid_api_key", type_="invalid_request_error"
        )
        assert call.wait(30) == 0
        rep = engine.read_report(tmp_path, "fatal")
        assert rep["ended_by"] == "remote"  # the engine hung up, not the caller
        assert rep["duration_ms"] < 10000
        voiced = audio.voiced_frames(rep["energy_dbfs"])
        apology = [i for i in voiced if i * 20 > 1000]
        assert len(apology) * 20 > 3000, "no apology before the hangup"  # ~5 s phrase
        assert eng.wait_for("call ended")[-1]["ended_by"] == "local"


def test_model_hangs_up_after_its_last_sentence(tmp_path: Path, server_factory) -> None:
    server = server_factory(
        greeting=ScriptedReply(pcm=_tone(600, 1.5), transcript="Goodbye!"),
        replies=[ScriptedReply(function_call=("hangup", {"reason": "done"}))],
    )
    speech = audio.write_wav(tmp_path / "q.wav", audio.speech_like(0.6, RATE), RATE)
    plan = _plan(tmp_path, server, tools=["hangup"])
    with engine.running(tmp_path, "worker", "--dialplan", str(plan)) as eng:
        rep, _ = _call(
            tmp_path, eng.sip_port, "--play", str(speech), "--play-at", "1.6", "--duration", "10"
        )
        assert rep["ended_by"] == "remote" and rep["duration_ms"] < 6000
        assert eng.wait_for("tool result")[0]["ok"] is True
        assert eng.wait_for("call ended")[-1]["reason"].startswith("200")


def test_model_transfers_the_caller_to_a_named_target_and_hears_the_outcome(
    tmp_path: Path, server_factory
) -> None:
    server = server_factory(
        replies=[ScriptedReply(function_call=("transfer", {"destination": "nurse"}))]
    )
    speech = audio.write_wav(tmp_path / "q.wav", audio.speech_like(0.6, RATE), RATE)
    with engine.running(tmp_path, "worker", "--provider", "echo", name="nurse") as nurse:
        target = f"sip:nurse@127.0.0.1:{nurse.sip_port}"
        plan = _plan(
            tmp_path, server, greeting=None, tools=["transfer"], transfer_targets={"nurse": target}
        )
        with engine.running(tmp_path, "worker", "--dialplan", str(plan)) as eng:
            rep, _ = _call(
                tmp_path, eng.sip_port, "--play", str(speech), "--play-at", "0.5",
                "--duration", "5",
            )  # fmt: skip
            assert rep["transfer"] and rep["transfer"]["target"] == target
            assert rep["transfer"]["answered"]  # the caller reached the nurse's line
            out = server.wait_for("conversation.item.create")[-1].data["item"]
            result = json.loads(out["output"])
            assert result["ok"] is True and result["status"].startswith("200")
            assert [e["called"] for e in nurse.wait_for("incoming call")] == ["nurse"]
            # the bot left the call once the caller was through, as on an operator's transfer
            ended = eng.wait_for("call ended")[-1]
            assert ended["hangup_reason"] == f"transferred to {target}", ended


def test_silent_line_gets_a_goodbye_and_is_hung_up(tmp_path: Path, server_factory) -> None:
    server = server_factory(greeting=ScriptedReply(pcm=_tone(600, 0.5), transcript="Hello?"))
    plan = _plan(tmp_path, server, idle_seconds=2)
    with engine.running(tmp_path, "worker", "--dialplan", str(plan)) as eng:
        rep, rec = _call(tmp_path, eng.sip_port, "--duration", "15", name="idle")
        assert rep["ended_by"] == "remote" and rep["duration_ms"] < 8000
        voiced = audio.voiced_frames(rep["energy_dbfs"])
        assert voiced[-1] * 20 > 2400  # the goodbye after ~2.5 s of silence, then the BYE
        assert eng.events("idle timeout")


def test_model_gone_for_good_puts_the_caller_through_to_the_fallback_target(
    tmp_path: Path, server_factory
) -> None:
    server = server_factory(greeting=ScriptedReply(pcm=_tone(600, 0.5), transcript="Hi."))
    with engine.running(tmp_path, "worker", "--provider", "echo", name="desk") as desk:
        target = f"sip:desk@127.0.0.1:{desk.sip_port}"
        plan = _plan(
            tmp_path, server, transfer_targets={"desk": target}, on_error={"transfer": "desk"}
        )
        with engine.running(tmp_path, "worker", "--dialplan", str(plan)) as eng:
            call = engine.dial_async(tmp_path, eng.sip_port, "--duration", "8", name="fb")
            server.wait_for("input_audio_buffer.append", 50)
            server.send_error(message="Quota exceeded", code="insufficient_quota")
            assert call.wait(30) == 0
            rep = engine.read_report(tmp_path, "fb")
            assert rep["transfer"] and rep["transfer"]["answered"], rep["transfer"]
            assert [e["called"] for e in desk.wait_for("incoming call")] == ["desk"]
            assert eng.events("model unavailable: transferring the caller")


def _runs(voiced: list[int], gap: int = 5) -> list[tuple[int, int]]:
    """Voiced frame indexes as (first, last) runs; a pause of more than `gap` frames splits."""
    runs: list[tuple[int, int]] = []
    for i in voiced:
        if runs and i - runs[-1][1] <= gap:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def test_keys_the_caller_types_reach_the_model_as_one_item_and_are_answered(
    tmp_path: Path, server_factory
) -> None:
    # A 4 s prompt; 1 s in, the caller types 1234# (RFC 4733, pjsua2): the first key cuts the
    # prompt off, the five keys become one user item, and the model is asked to answer it.
    server = server_factory(
        greeting=ScriptedReply(pcm=_tone(600, 4.0), transcript="Please type your number."),
        replies=[ScriptedReply(pcm=_tone(900, 1.0), transcript="Thank you.")],
    )
    with engine.running(tmp_path, "worker", "--dialplan", str(_plan(tmp_path, server))) as eng:
        rep, rec = _call(
            tmp_path, eng.sip_port, "--dtmf", "1234#", "--dtmf-at", "1.0", "--duration", "5"
        )
        assert rep["dtmf_sent"] == "1234#"
        items = [e for e in server.received if e.type == "conversation.item.create"]
        assert len(items) == 1, [e.data for e in items]  # one item for the five keys
        item = items[0].data["item"]
        assert (item["type"], item["role"], item["content"][0]["type"]) == (
            "message", "user", "input_text",
        )  # fmt: skip
        text = item["content"][0]["text"]
        assert text == "The caller pressed the keys: 1234 (ended with #)"
        assert keypad.parse_pressed(text) == keypad.Pressed("1234", "#")
        creates = server.wait_for("response.create", 2)
        assert creates[1].t > items[0].t  # then the model was asked to answer
        # the prompt was cut at the first key, where the caller stopped hearing it
        trunc = server.truncations[0]
        assert trunc["ok"] and 800 <= trunc["audio_end_ms"] <= 1600, trunc
        assert eng.wait_for("barge_in")[0]["by"] == "dtmf"
        burst = eng.wait_for("dtmf input")[0]
        assert (burst["digits"], burst["terminator"], burst["ended"]) == ("1234", "#", "terminator")
        # what the caller heard: the prompt, silence from the key on, then the answer
        runs = _runs(audio.voiced_frames(rep["energy_dbfs"]))
        assert len(runs) == 2, runs
        prompt, answer = runs
        assert (prompt[1] - prompt[0]) * 20 < 1600, runs  # not the whole 4 s prompt
        start = answer[0] * 20
        assert abs(audio.dominant_hz(_segment(rec, start + 100, start + 700), RATE) - 900) < 15
        print(f"dtmf: prompt cut at {trunc['audio_end_ms']} ms (first key at ~1000 ms); the "
              f"answer {start - prompt[1] * 20} ms after the prompt stopped")  # fmt: skip


def test_the_model_sends_dtmf_through_its_builtin_tool_and_the_caller_receives_it(
    tmp_path: Path, server_factory
) -> None:
    server = server_factory(
        replies=[
            ScriptedReply(function_call=("send_dtmf", {"digits": "42#"})),
            ScriptedReply(pcm=_tone(900, 0.6), transcript="Done."),
        ],
    )
    speech = audio.write_wav(tmp_path / "q.wav", audio.speech_like(0.6, RATE), RATE)
    plan = _plan(tmp_path, server, greeting=None, tools=["send_dtmf"])
    with engine.running(tmp_path, "worker", "--dialplan", str(plan)) as eng:
        rep, _ = _call(
            tmp_path, eng.sip_port, "--play", str(speech), "--play-at", "0.5", "--duration", "4"
        )
        assert rep["dtmf_received"] == "42#"  # the caller's phone got the model's digits
        upd = server.wait_for("session.update")[0].data["session"]
        assert [t["name"] for t in upd["tools"]] == ["send_dtmf"]
        out = server.function_outputs[0]
        assert json.loads(out["output"]) == {"ok": True, "sent": "42#"}
        assert server.wait_for("response.create")[-1].t > out["t"]  # and it went on
        assert eng.wait_for("tool result")[0]["ok"] is True
