"""Call events, commands and CDRs over a real Mosquitto, on real SIP calls (pjsua2 caller,
engine worker processes) with the scripted OpenAI-Realtime server as the model."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support import audio, engine
from tests.support.mosquitto import Mosquitto, mosquitto_available, running_mosquitto
from tests.support.mqtt_probe import MqttProbe
from tests.support.plans import KEY_ENV, scripted_plan
from tests.support.realtime_server import ScriptedRealtimeServer, ScriptedReply
from tests.support.usage import WIRE_USAGE as USAGE

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed"),
]

RATE = 16000
API_KEY = "sk-test-api-key-never-logged-4711"
BROKER_PASSWORD = "broker-pw-never-logged-0815"
ADMIN_TOKEN = "admin-token-never-logged-1234"
PREFIX = "tb-test"
NODE = "node-a"


# The scripted server is a Realtime-compatible server, which the shipped table does not
# price: an operator's own table does.
PRICES = """
version: test-prices-1
models:
  compatible:
    gpt-4o-realtime-preview-2024-12-17:
      text: {input: 5.00, cached_input: 2.50, output: 20.00}
      audio: {input: 40.00, cached_input: 2.50, output: 80.00}
"""


def _tone(hz: float, seconds: float) -> bytes:
    return audio.pcm24(audio.tone(hz, seconds, 24000, dbfs=-14))


def _plan(tmp: Path, server: ScriptedRealtimeServer, **defaults: object) -> Path:
    return scripted_plan(
        tmp, server, routes=[{"name": "sales", "match": {"number": [{"regex": ".*"}]}}], **defaults
    )


def _config(tmp: Path, broker: Mosquitto, **sections: Any) -> Path:
    cfg: dict[str, Any] = {
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "username": "bot",
            "password": BROKER_PASSWORD,
            "prefix": PREFIX,
            "node": NODE,
        },
        "cdr": {"path": str(tmp / "cdr.jsonl")},
        "admin": {"token": ADMIN_TOKEN},
    }
    cfg.update(sections)
    path = tmp / "engine.yaml"
    path.write_text(json.dumps(cfg))
    return path


@pytest.fixture
def server_factory(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv(KEY_ENV, API_KEY)
    servers: list[ScriptedRealtimeServer] = []

    def make(**kw: Any) -> ScriptedRealtimeServer:
        s = ScriptedRealtimeServer(**kw)
        s.start()
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with running_mosquitto() as b:
        yield b


@pytest.fixture
def probe(broker: Mosquitto) -> Iterator[MqttProbe]:
    p = MqttProbe(broker.host, broker.port, f"{PREFIX}/#")
    yield p
    p.close()


def _call_events(probe: MqttProbe, call_id: str) -> list[dict[str, Any]]:
    return sorted(
        (e for e in probe.events() if e.get("call_id") == call_id), key=lambda e: e["seq"]
    )


def _no_secret(*texts: str) -> None:
    for text in texts:
        for secret in (API_KEY, BROKER_PASSWORD, ADMIN_TOKEN):
            assert secret not in text


def _segment(rec: np.ndarray, start_ms: float, end_ms: float) -> np.ndarray:
    return rec[int(start_ms * RATE / 1000) : int(end_ms * RATE / 1000)]


@contextlib.contextmanager
def _live_call(
    tmp: Path, plan: Path, cfg: Path, probe: MqttProbe, *dial_args: str
) -> Iterator[tuple[engine.EngineProc, subprocess.Popen[bytes], str]]:
    """A worker on `plan` and `cfg`, connected to the broker, and a pjsua2 caller (recording
    to `tmp/call.wav`) whose call it answered: (worker, caller process, call_id)."""
    with engine.running(
        tmp, "worker", "--grace", "2", "--dialplan", str(plan), "--config", str(cfg)
    ) as eng:
        eng.wait_for("mqtt connected")
        dialer = engine.dial_async(
            tmp, eng.sip_port, *dial_args, "--record", str(tmp / "call.wav"), "--rate", str(RATE)
        )
        try:
            yield eng, dialer, probe.wait_event("call.answered")[0]["call_id"]
        finally:
            if dialer.poll() is None:
                dialer.kill()


def test_a_call_publishes_its_events_in_order_and_a_cdr_that_matches_it(
    tmp_path: Path,
    server_factory: Any,
    broker: Mosquitto,
    probe: MqttProbe,
) -> None:
    server = server_factory(
        greeting=ScriptedReply(pcm=_tone(600, 1.0), transcript="Hello, how can I help?"),
        replies=[
            ScriptedReply(function_call=("lookup", {"day": "monday"})),
            ScriptedReply(pcm=_tone(900, 1.0), transcript="Nine or half past eleven."),
        ],
        usage_per_response=USAGE,
    )
    speech = audio.write_wav(tmp_path / "q.wav", audio.speech_like(0.8, RATE), RATE)
    plan = _plan(tmp_path, server, tools=["lookup"])
    (tmp_path / "prices.yaml").write_text(PRICES)
    cfg = _config(tmp_path, broker, prices={"file": str(tmp_path / "prices.yaml")})
    args = ("--dialplan", str(plan), "--config", str(cfg))
    with engine.running(tmp_path, "worker", "--grace", "2", *args) as eng:
        eng.wait_for("mqtt connected")
        rep = engine.dial(
            tmp_path, eng.sip_port, "--play", str(speech), "--play-at", "2", "--duration", "8",
            "--header", f"X-Api-Key: {API_KEY}", "--header", "X-Customer: 42",
        )  # fmt: skip
        assert rep["answered"]
        cdr_msg = probe.wait_for(lambda m: m.topic.endswith("/cdr"), timeout=20)[0]
        call_id = cdr_msg.payload["call_id"]
        evs = _call_events(probe, call_id)
        types = [e["type"] for e in evs]
        assert types == [
            "call.started",
            "call.answered",
            "turn.agent",
            "turn.user",
            "tool.called",
            "tool.result",
            "turn.agent",
            "call.ended",
        ], types
        # every event on its own topic, stamped with node and worker
        topics = [m.topic for m in probe.messages if f"/calls/{call_id}/events/" in m.topic]
        assert all(t.startswith(f"{PREFIX}/{NODE}/calls/{call_id}/events/") for t in topics)
        started, answered, greet, user, called, result, answer, ended = evs
        assert started["called"] == "100" and started["caller"] == "dial"
        assert started["route"] == "sales" and started["plan_version"]
        assert started["direction"] == "inbound" and started["node"] == NODE
        assert started["headers"]["X-Customer"] == "42"
        assert started["headers"]["X-Api-Key"] == "***"  # a secret-named header is masked
        assert answered["codec"].startswith("PCMU")
        assert greet["text"] == "Hello, how can I help?" and greet["interrupted"] is False
        assert 950 <= greet["played_ms"] <= 1050  # the whole 1 s greeting was heard
        assert user["text"].startswith("<caller audio")
        assert called["tool"] == "lookup" and called["arguments"] == {"day": "monday"}
        assert result["ok"] is True and 1400 <= result["duration_ms"] <= 3000  # a 1.5 s tool
        assert result["tool_call_id"] == called["tool_call_id"]
        assert answer["text"] == "Nine or half past eleven." and not answer["interrupted"]
        assert ended["ended_by"] == "remote" and 7.0 <= ended["duration_s"] <= 9.5

        # The CDR: the same record in the file and on MQTT, totals as the call went.
        lines = (tmp_path / "cdr.jsonl").read_text().splitlines()
        assert len(lines) == 1
        cdr = json.loads(lines[0])
        assert cdr_msg.topic == f"{PREFIX}/{NODE}/calls/{call_id}/cdr"
        assert {k: v for k, v in cdr_msg.payload.items() if k not in ("type", "ts", "seq",
                "node", "worker")} == {k: v for k, v in cdr.items() if k not in ("node",
                "worker")}  # fmt: skip
        assert cdr["turns"] == {"user": 1, "agent": 2}
        assert cdr["tool_calls"] == 1 and cdr["tools"][0]["name"] == "lookup"
        assert cdr["tools"][0]["ok"] is True
        assert cdr["route"] == "sales" and cdr["called"] == "100" and cdr["answered"]
        sent = server.usage_sent
        assert cdr["usage"]["responses"] == len(sent) == 3
        assert cdr["usage"]["tokens"] == {  # by kind, as the model reported them
            "input_text": 3 * 313, "input_audio": 3 * 476, "input_cached": 3 * 640,
            "input_cached_text": 3 * 256, "input_cached_audio": 3 * 384,
            "output_text": 3 * 9, "output_audio": 3 * 23, "total": 3 * 821,
        }  # fmt: skip
        # priced by the prices file the engine config names: cached input at its own rate
        per_response = (57 * 5 + 256 * 2.5 + 92 * 40 + 384 * 2.5 + 9 * 20 + 23 * 80) / 1e6
        assert cdr["usage"]["cost_usd"] == round(3 * per_response, 6) == 0.022755
        assert cdr["usage"]["price_table"] == "test-prices-1"
        assert 1.9 <= cdr["usage"]["audio_out_s"] <= 3.0  # greeting + answer (+ filler)
        assert cdr["usage"]["audio_in_s"] >= 6.0
        t = cdr["times"]
        assert t["setup"] <= t["answer"] <= t["first_audio"] <= t["end"]
        assert 0 <= cdr["first_audio_ms"] < 1000
        assert 7.0 <= cdr["duration_s"] <= 9.5
        assert cdr["media"]["rtp_rx_packets"] > 300 and cdr["media"]["loss_pct"] == 0.0
        assert cdr["ended_by"] == "remote"

        # no secret anywhere: log lines, events, records
        _no_secret(
            eng.log_path.read_text(),
            (tmp_path / "cdr.jsonl").read_text(),
            *(json.dumps(m.payload) for m in probe.messages),
        )
    status = [m.payload for m in probe.messages if m.topic == f"{PREFIX}/{NODE}/status"]
    assert status[0] == "online"


def test_say_inject_hangup_and_bad_commands_on_a_live_call(
    tmp_path: Path,
    server_factory: Any,
    broker: Mosquitto,
    probe: MqttProbe,
) -> None:
    server = server_factory(
        replies=[ScriptedReply(pcm=_tone(700, 1.0), transcript="Your parcel has shipped.")],
    )
    plan = _plan(tmp_path, server, greeting=None)
    cfg = _config(tmp_path, broker)
    with _live_call(tmp_path, plan, cfg, probe, "--duration", "20") as (eng, dialer, call_id):
        base = f"{PREFIX}/{NODE}/calls/{call_id}/cmd"
        server.wait_for("session.update")

        # refused, each with a reason
        r = probe.command(f"{base}/say", {"txt": "hi"})
        assert r["ok"] is False and "text" in r["reason"] and "unknown field" in r["reason"]
        r = probe.command(f"{base}/say", "not json")
        assert r["ok"] is False and "not JSON" in r["reason"]
        r = probe.command(f"{base}/dance", {})
        assert r["ok"] is False and "unknown verb" in r["reason"]
        r = probe.command(f"{PREFIX}/{NODE}/calls/nosuchcall/cmd/hangup", {})
        assert r["ok"] is False and "no live call" in r["reason"]
        r = probe.command(f"{base}/transfer", {"target": "not-a-uri"})
        assert r["ok"] is False and "target" in r["reason"]
        r = probe.command(f"{base}/inject", {"image": "aGVsbG8=", "mime": "image/png"})
        assert r["ok"] is False and "GA" in r["reason"]  # the preview model takes no images

        # say: acknowledged on the v5 response topic, then the caller hears it
        t_say = time.monotonic()
        r = probe.command(f"{base}/say", {"text": "Your parcel has shipped."}, v5_reply=True)
        assert r == {"verb": "say", "call_id": call_id, "ok": True, "queued": False}
        create = server.wait_for("response.create")[-1]
        assert "Your parcel has shipped." in create.data["response"]["instructions"]
        turn = probe.wait_event("turn.agent")[0]
        assert turn["text"] == "Your parcel has shipped." and not turn["interrupted"]

        # inject: the model gets a conversation item
        r = probe.command(f"{base}/inject", {"text": "The caller is a VIP.", "role": "system"})
        assert r["ok"] is True
        item = server.wait_for("conversation.item.create")[-1].data["item"]
        assert item["role"] == "system" and "VIP" in json.dumps(item["content"])

        # hangup: the caller is hung up on long before the 20 s it wanted to stay
        r = probe.command(f"{PREFIX}/cmd/hangup", {"call_id": call_id, "reason": "done"})
        assert r["ok"] is True
        ended = probe.wait_event("call.ended")[0]
        assert ended["ended_by"] == "local" and ended["reason"] == "command: done"
        assert dialer.wait(30) == 0
        assert time.monotonic() - t_say < 12
        report = engine.read_report(tmp_path, "dial")
        assert report["answered"] and report["ended_by"] == "remote"  # the engine hung up
        got, _ = audio.read_wav(tmp_path / "call.wav")
        # what the caller heard after the say: the 700 Hz "Your parcel has shipped."
        voiced = audio.voiced_frames(report["energy_dbfs"])
        assert voiced, "the caller heard nothing"
        start = voiced[0] * 20
        assert abs(audio.dominant_hz(_segment(got, start + 100, start + 800), RATE) - 700) < 15
        _no_secret(eng.log_path.read_text(), *(json.dumps(m.payload) for m in probe.messages))


def test_say_now_cuts_the_bot_off_and_a_second_say_waits_for_the_first(
    tmp_path: Path, server_factory: Any, broker: Mosquitto, probe: MqttProbe
) -> None:
    server = server_factory(
        greeting=ScriptedReply(pcm=_tone(500, 4.0), transcript="A very long greeting."),
        replies=[
            ScriptedReply(pcm=_tone(700, 1.0), transcript="Sorry to interrupt."),
            ScriptedReply(pcm=_tone(800, 0.6), transcript="One more thing."),
        ],
    )
    plan = _plan(tmp_path, server)
    cfg = _config(tmp_path, broker)
    with _live_call(tmp_path, plan, cfg, probe, "--duration", "6") as (_eng, dialer, call_id):
        base = f"{PREFIX}/{NODE}/calls/{call_id}/cmd"
        server.wait_for_sent("response.audio.delta", count=10)  # the greeting is playing
        time.sleep(1.0)
        r = probe.command(f"{base}/say", {"text": "Sorry to interrupt.", "interrupt": True})
        assert r["ok"] is True and r["queued"] is False
        r = probe.command(f"{base}/say", {"text": "One more thing."})
        assert r["ok"] is True and r["queued"] is True  # after the reply being given
        turns = probe.wait_event("turn.agent", count=3)
        dialer.wait(30)
        greeting, now, later = turns
        # cut off: the words said so far, and marked interrupted
        assert greeting["interrupted"] is True and greeting["text"]
        assert "A very long greeting.".startswith(greeting["text"])
        assert 800 <= greeting["played_ms"] <= 2500  # cut ~1.4 s in, not played out (4 s)
        assert now["text"] == "Sorry to interrupt." and not now["interrupted"]
        assert later["text"] == "One more thing." and not later["interrupted"]
        assert server.truncations and server.truncations[0]["audio_end_ms"] <= 2500
    report = engine.read_report(tmp_path, "dial")
    got, _ = audio.read_wav(tmp_path / "call.wav")
    voiced = audio.voiced_frames(report["energy_dbfs"])
    # what the caller heard: 500 Hz greeting, then 700 Hz, then 800 Hz - nothing of the
    # greeting's remaining ~2.5 s in between
    hz = [audio.dominant_hz(_segment(got, v * 20, v * 20 + 200), RATE) for v in voiced[::10]]
    firsts = [next(i for i, h in enumerate(hz) if abs(h - f) < 20) for f in (500, 700, 800)]
    assert firsts == sorted(firsts), hz
    assert sum(1 for h in hz if abs(h - 500) < 20) * 200 < 2500


def test_transfer_and_originate_over_mqtt(
    tmp_path: Path,
    server_factory: Any,
    broker: Mosquitto,
    probe: MqttProbe,
) -> None:
    server = server_factory(
        greeting=ScriptedReply(pcm=_tone(600, 0.5), transcript="Hello."),
        vad_threshold_dbfs=-3.0,  # the echo agent returns the greeting: not a caller turn
    )
    with engine.running(
        tmp_path, "worker", "--grace", "2", "--provider", "echo", name="agent"
    ) as agent:
        nurse = f"sip:nurse@127.0.0.1:{agent.sip_port}"
        # the echo agent sends the greeting straight back: that is no caller barging in
        plan = _plan(
            tmp_path, server, barge_in={"enabled": False}, transfer_targets={"nurse": nurse}
        )
        cfg = _config(
            tmp_path,
            broker,
            outbound={
                "trunk": f"sip:127.0.0.1:{agent.sip_port}",
                "allow": ["1*"],
                "max_per_minute": 1,
            },
        )
        with engine.running(
            tmp_path,
            "worker",
            "--grace",
            "2",
            "--dialplan",
            str(plan),
            "--config",
            str(cfg),
            name="bot",
        ) as bot:
            bot.wait_for("mqtt connected")
            # originate: refused outside the allow list, then a real outbound call
            r = probe.command(f"{PREFIX}/cmd/originate", {"to": "999"})
            assert r["ok"] is False and "allow list" in r["reason"]
            r = probe.command(f"{PREFIX}/cmd/originate", {"to": "100", "route": "nope"})
            assert r["ok"] is False and "no route named 'nope'" in r["reason"]
            r = probe.command(f"{PREFIX}/cmd/originate", {"to": "123", "from": "4930555"})
            assert r["ok"] is True and r["uri"] == f"sip:123@127.0.0.1:{agent.sip_port}"
            out_id = r["call_id"]
            started = [e for e in probe.wait_event("call.started") if e["call_id"] == out_id][0]
            assert started["direction"] == "outbound" and started["called"] == "123"
            assert started["caller"] == "4930555"
            probe.wait_for(lambda m: m.topic.endswith(f"{out_id}/events/call.answered"), timeout=15)
            incoming = agent.wait_for("incoming call")[0]
            assert incoming["called"] == "123" and incoming["caller"] == "4930555"
            # the greeting went out on the outbound call
            greet = probe.wait_for(
                lambda m: m.topic.endswith(f"{out_id}/events/turn.agent"), timeout=15
            )[0].payload
            assert greet["text"] == "Hello." and greet["played_ms"] >= 450
            assert greet["interrupted"] is False
            r = probe.command(f"{PREFIX}/{NODE}/calls/{out_id}/cmd/hangup", {})
            assert r["ok"] is True
            # one call a minute (outbound.max_per_minute): the next is refused, not dialed
            r = probe.command(f"{PREFIX}/cmd/originate", {"to": "124"})
            assert r["ok"] is False and r["rate_limited"] is True, r
            assert r["reason"].startswith("originate refused: at most 1 call a minute on this node")
            assert [e["called"] for e in agent.events("incoming call")] == ["123"]

            # transfer: toll fraud is refused with the reason and no REFER; the route's
            # target, named, is sent on to the agent (REFER), acknowledged with the outcome
            dialer = engine.dial_async(tmp_path, bot.sip_port, "--duration", "8")
            try:
                answered = probe.wait_for(
                    lambda m: m.topic.endswith("/events/call.answered") and out_id not in m.topic,
                    timeout=15,
                )[0].payload
                call_id = answered["call_id"]
                topic = f"{PREFIX}/{NODE}/calls/{call_id}/cmd/transfer"
                evil = "sip:+900123@evil.example"
                r = probe.command(topic, {"target": evil})
                assert r == {
                    "verb": "transfer", "call_id": call_id, "ok": False, "target": evil,
                    "forbidden": True,
                    "reason": f"transfer refused: {evil!r} is not a transfer target of route "
                    "'sales' (targets: nurse), and outbound.allow does not match +900123",
                }  # fmt: skip
                refused = probe.wait_event("transfer.refused")[0]
                assert refused["target"] == evil and refused["by"] == "operator"
                r = probe.command(topic, {"target": "nurse"})
                assert r["ok"] is True and r["status"].startswith("200"), r
                dialer.wait(30)
            finally:
                if dialer.poll() is None:
                    dialer.kill()
            rep = engine.read_report(tmp_path, "dial")
            # the caller was sent to the nurse, and to nothing else before
            assert rep["transfer"]["target"] == nurse and rep["transfer"]["answered"]
            evs = [e for e in _call_events(probe, call_id) if e["type"].startswith("transfer")]
            assert [(e["type"], e["target"]) for e in evs] == [
                ("transfer.refused", evil),
                ("transfer.started", nurse),
                ("transfer.completed", nurse),
            ]
            assert [e["called"] for e in agent.events("incoming call")] == ["123", "nurse"]
            assert bot.events("transfer refused")[0]["reason"].startswith(f"{evil!r} is not")


def test_a_broker_outage_mid_call_leaves_the_call_alone_and_events_follow_later(
    tmp_path: Path,
    server_factory: Any,
    broker: Mosquitto,
) -> None:
    server = server_factory(
        greeting=ScriptedReply(pcm=_tone(600, 0.6), transcript="Hello."),
        replies=[ScriptedReply(pcm=_tone(900, 1.2), transcript="Answered during the outage.")],
    )
    speech = audio.write_wav(tmp_path / "q.wav", audio.speech_like(0.8, RATE), RATE)
    plan = _plan(tmp_path, server)
    cfg = _config(tmp_path, broker)
    probe = MqttProbe(broker.host, broker.port, f"{PREFIX}/#")
    with engine.running(
        tmp_path, "worker", "--grace", "2", "--dialplan", str(plan), "--config", str(cfg)
    ) as eng:
        eng.wait_for("mqtt connected")
        rec = tmp_path / "call.wav"
        dialer = engine.dial_async(
            tmp_path, eng.sip_port, "--play", str(speech), "--play-at", "2.5",
            "--duration", "9", "--record", str(rec), "--rate", str(RATE),
        )  # fmt: skip
        try:
            call_id = probe.wait_event("call.answered")[0]["call_id"]
            probe.wait_event("turn.agent")  # the greeting, before the outage
            probe.close()
            broker.stop()  # the caller speaks and the bot answers while the broker is away
            eng.wait_for("mqtt broker unreachable; retrying")
            server.wait_for_sent("response.done", count=2, timeout=15)
            time.sleep(1.0)
            broker.restart()
            probe = MqttProbe(broker.host, broker.port, f"{PREFIX}/#")
            ended = probe.wait_event("call.ended", timeout=30)[0]
            assert dialer.wait(30) == 0
        finally:
            if dialer.poll() is None:
                dialer.kill()
        assert eng.events("mqtt connected")[-1]["reconnect"] is True
        # the events of the outage arrived after it, in order, none lost
        evs = _call_events(probe, call_id)
        types = [e["type"] for e in evs]
        assert types[:2] == ["turn.user", "turn.agent"], types
        assert evs[1]["text"] == "Answered during the outage."
        assert ended["duration_s"] >= 8.5  # the call ran its full length
    report = engine.read_report(tmp_path, "dial")
    assert report["answered"] and report["ended_by"] == "local"  # the caller hung up at 9 s
    got, _ = audio.read_wav(rec)
    # the caller heard the answer given during the outage (speech ends 3.3 s + ~0.5 s VAD)
    voiced = [v * 20 for v in audio.voiced_frames(report["energy_dbfs"]) if v * 20 > 3500]
    assert voiced, "no answer heard during the outage"
    assert abs(audio.dominant_hz(_segment(got, voiced[0] + 100, voiced[0] + 900), RATE) - 900) < 15
    probe.close()
