"""The MQTT link over TLS with a username and password, as a production broker wants it:
a Mosquitto with a test CA's certificate and a password file (both made here, offline)."""

from __future__ import annotations

import json
import shutil
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.support import audio, engine
from tests.support.certs import make_server_certs
from tests.support.mosquitto import mosquitto_binary, running_mosquitto
from tests.support.plans import KEY_ENV, scripted_plan
from tests.support.realtime_server import ScriptedRealtimeServer, ScriptedReply

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (mosquitto_binary() and shutil.which("openssl") and shutil.which("mosquitto_passwd")),
        reason="needs mosquitto, mosquitto_passwd and openssl",
    ),
]

PASSWORD = "tls-broker-pw-never-logged-99"


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A Mosquitto that speaks TLS only, with a certificate of a CA made here, and lets in
    user `bot` with PASSWORD: (its port, the CA file)."""
    tls = make_server_certs(tmp_path / "pki")
    with running_mosquitto(tls=tls, users={"bot": PASSWORD}) as broker:
        yield broker.port, tls.ca


def _config(tmp: Path, port: int, ca: Path, password: str) -> Path:
    mqtt_cfg = {"host": "127.0.0.1", "port": port, "tls": True, "ca_file": str(ca),
                "username": "bot", "password": password, "prefix": "tls", "node": "n"}  # fmt: skip
    cfg = {"mqtt": mqtt_cfg}
    path = tmp / f"engine-{password[:4]}.yaml"
    path.write_text(json.dumps(cfg))
    return path


def test_events_reach_a_tls_broker_with_credentials_and_a_wrong_password_is_refused(
    tmp_path: Path, tls_broker: tuple[int, Path]
) -> None:
    port, ca = tls_broker
    got: list[str] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub.tls_set(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED)
    sub.username_pw_set("bot", PASSWORD)
    sub.on_connect = lambda c, *_: c.subscribe("tls/#", qos=1)
    sub.on_message = lambda c, u, m: got.append(m.topic)
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    try:
        good = _config(tmp_path, port, ca, PASSWORD)
        with engine.running(tmp_path, "worker", "--provider", "echo", "--config", str(good),
                            "--grace", "2", name="good") as eng:  # fmt: skip
            assert eng.wait_for("mqtt connected")[0]["tls"] is True
            rep = engine.dial(tmp_path, eng.sip_port, "--duration", "1")
            assert rep["answered"]
            deadline = time.monotonic() + 10
            while not any(t.endswith("/events/call.ended") for t in got):
                assert time.monotonic() < deadline, got
                time.sleep(0.05)
            assert PASSWORD not in eng.log_path.read_text()

        bad = _config(tmp_path, port, ca, "wrong-password")
        with engine.running(tmp_path, "worker", "--provider", "echo", "--config", str(bad),
                            "--grace", "2", name="bad") as eng:  # fmt: skip
            refused = eng.wait_for("mqtt broker unreachable; retrying")[0]
            assert "authori" in refused["error"].lower() or "password" in refused["error"].lower()
            rep = engine.dial(tmp_path, eng.sip_port, "--duration", "1", name="dial2")
            assert rep["answered"]  # calls go on without the broker
            assert "wrong-password" not in eng.log_path.read_text()
    finally:
        sub.loop_stop()
        sub.disconnect()


def test_a_routes_mqtt_tool_asks_the_broker_of_the_engine_config(
    tmp_path: Path, tls_broker: tuple[int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The broker is named only in --config (port, TLS with our own CA, a user): the tool
    # must reach it there, as events do - not a default 127.0.0.1:1883 in plain text.
    port, ca = tls_broker
    monkeypatch.setenv(KEY_ENV, "sk-test-tools")
    server = ScriptedRealtimeServer(
        replies=[
            ScriptedReply(function_call=("balance", {"account": "42"})),
            ScriptedReply(pcm=b"\x00\x10" * 24 * 500, transcript="You have 1234 euros."),
        ]
    )
    server.start()
    plan = scripted_plan(tmp_path, server, greeting=None, tools=["balance"])
    data = json.loads(plan.read_text())
    data["tools"]["balance"] = {
        "description": "Account balance",
        "parameters": {"type": "object", "properties": {"account": {"type": "string"}}},
        "mqtt": {"topic": "bank/balance", "response_timeout_s": 5},
    }
    plan.write_text(json.dumps(data))
    seen: list[dict[str, object]] = []
    backoffice = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    backoffice.tls_set(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED)
    backoffice.username_pw_set("bot", PASSWORD)

    def answer(client: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        seen.append(json.loads(m.payload))
        props = Properties(PacketTypes.PUBLISH)
        props.CorrelationData = m.properties.CorrelationData
        reply = json.dumps({"balance": "1234.56"})
        client.publish(m.properties.ResponseTopic, reply, qos=1, properties=props)

    subscribed = threading.Event()
    backoffice.on_connect = lambda c, *_: c.subscribe("bank/balance", qos=1)
    backoffice.on_subscribe = lambda *_: subscribed.set()
    backoffice.on_message = answer
    backoffice.connect("127.0.0.1", port)
    backoffice.loop_start()
    try:
        assert subscribed.wait(10)
        rate = 16000
        speech = audio.write_wav(tmp_path / "q.wav", audio.speech_like(0.8, rate), rate)
        cfg = _config(tmp_path, port, ca, PASSWORD)
        with engine.running(
            tmp_path, "worker", "--dialplan", str(plan), "--config", str(cfg)
        ) as eng:
            eng.wait_for("mqtt connected")
            engine.dial(
                tmp_path, eng.sip_port, "--play", str(speech), "--play-at", "0.5",
                "--duration", "5",
            )  # fmt: skip
            outputs = [
                e.data["item"]
                for e in server.wait_for("conversation.item.create")
                if e.data["item"]["type"] == "function_call_output"
            ]
            assert json.loads(outputs[0]["output"]) == {"balance": "1234.56"}
            assert seen == [{"account": "42"}]
            assert eng.wait_for("tool result")[0]["ok"] is True
            assert PASSWORD not in eng.log_path.read_text()
    finally:
        backoffice.loop_stop()
        backoffice.disconnect()
        server.stop()
