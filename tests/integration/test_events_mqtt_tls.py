"""The MQTT link over TLS with a username and password, as a production broker wants it:
a Mosquitto with a test CA's certificate and a password file (both made here, offline)."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.support import engine
from tests.support.mosquitto import free_port, mosquitto_binary

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (mosquitto_binary() and shutil.which("openssl") and shutil.which("mosquitto_passwd")),
        reason="needs mosquitto, mosquitto_passwd and openssl",
    ),
]

PASSWORD = "tls-broker-pw-never-logged-99"


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    d = tmp_path / "pki"
    d.mkdir()
    _run(
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        str(d / "ca.key"),
        "-out",
        str(d / "ca.pem"),
    )
    _run(
        "openssl",
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        str(d / "server.key"),
        "-out",
        str(d / "server.csr"),
    )
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _run("openssl", "x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"),
         "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
         "-extfile", str(d / "ext.cnf"), "-out", str(d / "server.pem"))  # fmt: skip
    _run("mosquitto_passwd", "-b", "-c", str(d / "passwd"), "bot", PASSWORD)
    port = free_port()
    conf = d / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {d / 'passwd'}\n"
        f"cafile {d / 'ca.pem'}\ncertfile {d / 'server.pem'}\nkeyfile {d / 'server.key'}\n"
        "persistence false\nlog_dest stderr\n" + ("user root\n" if os.geteuid() == 0 else "")
        # as root, mosquitto drops to user "mosquitto", which cannot read pytest's tmp dir
    )
    log = open(d / "mosquitto.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=log, stderr=log)  # type: ignore[list-item]
    time.sleep(0.5)
    assert proc.poll() is None, (d / "mosquitto.log").read_text()
    try:
        yield port, d / "ca.pem"
    finally:
        proc.terminate()
        proc.wait(5)
        log.close()


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
