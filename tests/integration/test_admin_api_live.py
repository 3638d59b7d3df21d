"""The admin API on a real worker with real SIP calls: metrics move during a call, the call's
transcript shows up, HTTP commands act on it, readiness follows the dialplan file, the
token is required and never logged."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.integration.test_realtime_session import KEY_ENV, RATE, _tone, server_factory
from tests.support import audio, engine
from tests.support.admin import TOKEN, http, sample, until
from tests.support.realtime_server import ScriptedRealtimeServer, ScriptedReply

__all__ = ["server_factory"]

NUMBER = "+4930100"


def plan_file(
    tmp: Path,
    server: ScriptedRealtimeServer | None,
    name: str = "plan.yaml",
    transfer_targets: dict[str, str] | None = None,
) -> Path:
    """A plan with one named route, on the scripted Realtime server (or echo)."""
    if server is None:
        defaults: dict[str, object] = {"provider": "echo"}
    else:
        defaults = {
            "provider": "openai",
            "instructions": "You are a test agent.",
            "greeting": "",
            "openai": {"model": "gpt-4o-realtime-preview-2024-12-17", "dialect": "preview",
                       "base_url": server.url, "api_key_env": KEY_ENV},
        }  # fmt: skip
    if transfer_targets:
        defaults["transfer_targets"] = transfer_targets
    plan = {"version": 1, "defaults": defaults,
            "routes": [{"name": "front-desk", "match": {"number": NUMBER}}]}  # fmt: skip
    path = tmp / name
    path.write_text(json.dumps(plan, indent=2))  # JSON is YAML
    return path


def admin_env(monkeypatch: pytest.MonkeyPatch, tmp: Path) -> Path:
    """The token and the CDR file through the environment, as a deployment would."""
    cdr = tmp / "cdr.jsonl"
    monkeypatch.setenv("TELEPHONY_BOT_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("TELEPHONY_BOT_CDR_PATH", str(cdr))
    return cdr


def dial_number(
    tmp: Path, sip_port: int, *args: str, name: str = "dial"
) -> subprocess.Popen[bytes]:
    report = tmp / f"{name}.json"
    return subprocess.Popen(
        engine.cli("dial", f"sip:{NUMBER}@127.0.0.1:{sip_port}", "--report", str(report),
                   "--from-user", "+4917012345", "--rate", str(RATE), *args),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=engine.REPO,
    )  # fmt: skip


def test_metrics_transcript_and_commands_on_a_live_call(
    tmp_path: Path, server_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = server_factory(
        greeting=ScriptedReply(pcm=_tone(700, 4.0), transcript="Hello, this is the front desk."),
        replies=[ScriptedReply(pcm=_tone(900, 1.2), transcript="Your slot is at nine.")],
        speech_onset_ms=300,
    )
    cdr = admin_env(monkeypatch, tmp_path)
    talk = audio.write_wav(tmp_path / "talk.wav", audio.speech_like(1.5, RATE), RATE)
    port = engine.free_port()
    base = f"http://127.0.0.1:{port}"
    with engine.running(
        tmp_path, "worker", "--dialplan", str(plan_file(tmp_path, server)),
        "--admin-port", str(port), ready_event="worker admin API listening",
    ) as eng:  # fmt: skip
        caller = dial_number(tmp_path, eng.sip_port, "--play", str(talk), "--play-at", "1.2",
                             "--duration", "30")  # fmt: skip
        try:
            calls = until(lambda: http("GET", f"{base}/calls")[1]["calls"], what="a live call")
            cid = calls[0]["call_id"]
            assert calls[0]["route"] == "front-desk" and calls[0]["called"] == NUMBER
            m = http("GET", f"{base}/metrics")[1]
            assert sample(m, "telephony_bot_calls_active", worker="0") == 1

            # the caller talks over the greeting, then gets an answer
            def answered() -> list[dict]:
                t = http("GET", f"{base}/calls/{cid}")[1].get("transcript", [])
                return t if any(x["text"] == "Your slot is at nine." for x in t) else []

            transcript = until(answered, 20, "the bot's answer in the transcript")
            roles = [(x["role"], x["interrupted"]) for x in transcript]
            assert roles == [("agent", True), ("user", False), ("agent", False)], transcript
            m = http("GET", f"{base}/metrics")[1]
            turns = sample(m, "telephony_bot_turn_latency_seconds_count")
            turn_s = sample(m, "telephony_bot_turn_latency_seconds_sum")
            barge = sample(m, "telephony_bot_barge_in_latency_seconds_count")
            barge_s = sample(m, "telephony_bot_barge_in_latency_seconds_sum")
            print(f"turn latency {turn_s * 1000:.0f} ms over {turns:.0f} turns; "
                  f"barge-in latency {barge_s * 1000:.0f} ms over {barge:.0f}")  # fmt: skip
            assert turns == 1 and 0.3 < turn_s < 3.0  # server VAD silence 500 ms + delay
            assert barge == 1 and 0 < barge_s < 1.0
            assert sample(m, "telephony_bot_turns_total", role="agent") == 2

            # commands
            creates = len([e for e in server.received if e.type == "response.create"])
            st, res = http("POST", f"{base}/calls/{cid}/say", body={"text": "One more thing."})
            assert st == 200 and res["ok"], res
            said = server.wait_for("response.create", creates + 1)[-1].data
            assert "One more thing." in json.dumps(said)
            st, res = http("POST", f"{base}/calls/{cid}/transfer", body={"target": "nowhere"})
            assert st == 403 and res["reason"] == (
                "transfer refused: 'nowhere' is not a transfer target of route 'front-desk' "
                "(targets: none), nor a number"
            )
            assert http("POST", f"{base}/calls/{cid}/hangup", token=None)[0] == 401
            assert http("POST", f"{base}/calls/{cid}/hangup", token="wrong")[0] == 401
            st, res = http("POST", f"{base}/calls/{cid}/hangup", body={"reason": "supervisor"})
            assert st == 200 and res["ok"], res
            caller.wait(15)  # the caller was hung up on long before its 30 s
        finally:
            if caller.poll() is None:
                caller.kill()
        report = json.loads((tmp_path / "dial.json").read_text())
        assert report["answered"] and report["ended_by"] == "remote"
        energy = report["energy_dbfs"]
        spoke_until = report["play_start_ms"] + 1500
        reply = next(i * 20 for i in audio.voiced_frames(energy) if i * 20 > spoke_until)
        print(f"on the wire: caller stopped at {spoke_until} ms, reply heard at {reply} ms "
              f"({reply - spoke_until} ms; the metric said {turn_s * 1000:.0f} ms)")  # fmt: skip
        until(lambda: http("GET", f"{base}/calls")[1]["calls"] == [], what="no live calls")
        m = until(lambda: (t := http("GET", f"{base}/metrics")[1])
                  and sample(t, "telephony_bot_calls_total", result="completed") == 1 and t,
                  what="the call counted")  # fmt: skip
        assert sample(m, "telephony_bot_calls_active", worker="0") == 0
        st, recs = http("GET", f"{base}/records?limit=5")
        assert st == 200 and recs["path"] == str(cdr)
        assert recs["records"][0]["call_id"] == cid
        assert "supervisor" in recs["records"][0]["end_reason"]
        assert http("GET", f"{base}/?token={TOKEN}", token=None)[0] == 200  # the page's link
        assert http("GET", f"{base}/calls", token=None)[0] == 401
    log_text = eng.log_path.read_text()
    assert "admin request refused" in log_text  # refusals are logged ...
    assert TOKEN not in log_text  # ... and the token never is, not even from ?token=


def test_health_follows_the_dialplan_file_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin_env(monkeypatch, tmp_path)
    plan = plan_file(tmp_path, None)
    good = plan.read_text()
    port = engine.free_port()
    url = f"http://127.0.0.1:{port}/health"
    with engine.running(
        tmp_path, "worker", "--dialplan", str(plan), "--admin-port", str(port),
        ready_event="worker admin API listening",
    ) as eng:  # fmt: skip
        body = until(lambda: (r := http("GET", url, token=None))[0] == 200 and r[1], what="ready")
        assert body["ready"] and {c["name"] for c in body["checks"]} == {"sip", "dialplan"}
        plan.write_text(good.replace('"routes"', '"routez"'))  # an unknown key: rejected
        st, body = until(lambda: (r := http("GET", url, token=None))[0] == 503 and r,
                         what="unready")  # fmt: skip
        assert body["ready"] is False
        assert body["reasons"][0].startswith("dialplan: the file on disk does not load")
        assert "routez" in body["reasons"][0]
        # the last good plan still answers calls meanwhile
        rep = engine.dial(tmp_path, eng.sip_port, "--duration", "1", user=NUMBER)
        assert rep["answered"]
        plan.write_text(good)
        until(lambda: http("GET", url, token=None)[0] == 200, what="ready again")


def test_health_names_a_provider_that_does_not_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin_env(monkeypatch, tmp_path)
    monkeypatch.setenv(KEY_ENV, "sk-test-key")
    gone = engine.free_port()  # nothing listens here
    plan = plan_file(tmp_path, None)
    data = json.loads(plan.read_text())
    data["defaults"] = {
        "provider": "openai",
        "openai": {"model": "gpt-realtime", "dialect": "ga", "api_key_env": KEY_ENV,
                   "base_url": f"ws://127.0.0.1:{gone}/v1"},
    }  # fmt: skip
    plan.write_text(json.dumps(data))
    port = engine.free_port()
    url = f"http://127.0.0.1:{port}/health"
    with engine.running(
        tmp_path, "worker", "--dialplan", str(plan), "--admin-port", str(port),
        ready_event="worker admin API listening",
    ) as eng:  # fmt: skip
        st, body = until(lambda: (r := http("GET", url, token=None))[1].get("checks")
                         and len(r[1]["checks"]) == 3 and r, what="a probe")  # fmt: skip
        assert st == 503
        assert body["reasons"] == [f"provider openai: 127.0.0.1:{gone} unreachable: "
                                   "Connection refused"], body  # fmt: skip
    assert "sk-test-key" not in eng.log_path.read_text()
