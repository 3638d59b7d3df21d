"""Registration with a PBX: the engine registers with a real Kamailio registrar that asks for
digest authentication (tests/support/registrar.py: 401 on REGISTER, 407 on outbound
INVITEs), refreshes, registers again after the registrar restarts, takes the calls the
registrar routes to its Contact (routed by trunk in the dialplan), shows a failed
registration in /health, metrics and the MQTT status, places an outbound call through the
registered account, and unregisters when it stops; registers over TLS (the registrar's
calls come back on that connection; a registrar certificate that fails the check is a
failed registration, the reason in /health); behind the front door (`serve
--workers 2`) one registration brings calls to both workers; behind a real NAT (network
namespaces, nftables) the registrar reaches it. Real peers only: Kamailio 5.6, pjsua2
callers, SIPp, Mosquitto."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import certs, engine
from tests.support.admin import http, sample, until
from tests.support.mosquitto import running_mosquitto
from tests.support.mqtt_probe import MqttProbe
from tests.support.natns import nat_available, nat_network
from tests.support.registrar import (
    Registrar,
    kamailio_available,
    kamailio_tls_available,
    running_registrar,
)

pytestmark = pytest.mark.skipif(
    not kamailio_available(),
    reason="kamailio is not installed (scripts/install-system-deps.sh installs it)",
)

USER, PASSWORD = "2001", "s3cret-Digest-pw"


def write_config(tmp: Path, registrar: Registrar, **register: Any) -> Path:
    trunk = {
        "registrar": registrar.uri,
        "user": USER,
        "password_env": "PBX_PASSWORD",
        "expires": 10,  # refreshed 5 s before: every 5 s
        **register,
    }
    data: dict[str, Any] = {"trunks": {"pbx": {"register": trunk}}}
    path = tmp / "engine.yaml"
    path.write_text(json.dumps(data))  # JSON is YAML
    return path


def write_plan(tmp: Path) -> Path:
    """Calls through trunk pbx get route from-pbx; nothing else is taken (404)."""
    plan = {
        "version": 1,
        "defaults": {"provider": "echo"},
        "routes": [{"name": "from-pbx", "match": {"trunk": "pbx"}}],
    }
    path = tmp / "plan.yaml"
    path.write_text(json.dumps(plan))
    return path


def start_bot(tmp: Path, config: Path, admin_port: int, *extra: str) -> engine.EngineProc:
    return engine.start(
        tmp, "worker", "--dialplan", str(write_plan(tmp)), "--config", str(config),
        "--admin-port", str(admin_port), "--grace", "2", *extra, name="bot",
    )  # fmt: skip


def saved(registrar: Registrar) -> list[tuple[int, str, str]]:
    """(cseq, call-id, contact) of every REGISTER the registrar accepted."""
    out = []
    for line in registrar.lines("REGISTER"):
        m = re.search(
            r"cseq (\d+) callid (\S+) expires \S* contact (.*) authorized (\d*) via", line
        )
        if m and m.group(4):  # with credentials
            out.append((int(m.group(1)), m.group(2), m.group(3)))
    return out


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_registers_with_digest_auth_refreshes_and_takes_the_calls_sent_to_its_contact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    monkeypatch.setenv("PBX_PASSWORD", PASSWORD)
    admin = engine.free_port()
    base = f"http://127.0.0.1:{admin}"
    with running_registrar(tmp_path, {USER: PASSWORD}) as reg:
        bot = start_bot(tmp_path, write_config(tmp_path, reg, transport=transport), admin)
        try:
            registered = bot.wait_for("trunk registered")[0]
            assert registered["trunk"] == "pbx" and registered["expires_s"] == 10
            # challenged first (401), then accepted with the digest answer
            decisions = reg.lines()
            first_401 = next(i for i, ln in enumerate(decisions) if ln.startswith("401 for 2001"))
            first_save = next(i for i, ln in enumerate(decisions) if ln.startswith("saved 2001"))
            assert first_401 < first_save
            [binding] = reg.bindings(USER)
            assert ";line=" in binding.contact
            if transport == "udp":
                assert f"@127.0.0.1:{bot.sip_port};" in binding.contact
            else:  # the registrar reaches it back over the same connection
                assert ";transport=TCP;" in binding.contact

            st, health = http("GET", f"{base}/health", None)
            assert st == 200, health
            [trunk] = health["trunks"]
            assert trunk["trunk"] == "pbx" and trunk["state"] == "registered"
            assert {"name": "trunk pbx", "ok": True, "detail": trunk["detail"]} in health["checks"]
            metrics = http("GET", f"{base}/metrics", None)[1]
            assert sample(metrics, "telephony_bot_trunk_registered", trunk="pbx") == 1

            # a caller calls 2001 at the registrar, which routes the call to the contact
            report = engine.dial(tmp_path, reg.port, "--duration", "2", user=USER, name="via")
            assert report["answered"], report
            incoming = bot.wait_for("incoming call")[0]
            assert incoming["trunk"] == "pbx" and incoming["called"] == USER
            assert bot.wait_for("call routed")[0]["route"] == "from-pbx"
            assert any(ln.startswith("INVITE for 2001 to its contact") for ln in reg.lines())

            # the same number dialled at the engine directly did not come through the trunk
            direct = engine.dial(tmp_path, bot.sip_port, "--duration", "1", user=USER,
                                 name="direct")  # fmt: skip
            assert not direct["answered"] and direct["sip_status"] == 404, direct

            # refreshed before it expires: the same registration (Call-ID), a later CSeq
            reg.wait(lambda: len(saved(reg)) >= 2, 8, "a refresh")
            (c1, id1, _), (c2, id2, _) = saved(reg)[:2]
            assert id1 == id2 and c2 > c1
            assert bot.events("trunk registration failed") == []
        finally:
            code = bot.stop()
        assert code == 0
        # unregistered on the way out
        assert bot.events("trunk unregistered")
        assert reg.bindings(USER) == []
        log = bot.log_path.read_text()
        assert PASSWORD not in log


def test_registers_again_after_the_registrar_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PBX_PASSWORD", PASSWORD)
    with running_registrar(tmp_path, {USER: PASSWORD}) as reg:
        bot = start_bot(tmp_path, write_config(tmp_path, reg), engine.free_port())
        try:
            bot.wait_for("trunk registered")
            assert reg.bindings(USER)
            reg.restart()  # the new registrar process remembers no binding
            assert reg.bindings(USER) == []
            reg.wait(lambda: reg.bindings(USER), 8, "the binding registered again")
            # challenged and answered again by the new registrar
            assert any(ln.startswith("401 for 2001") for ln in reg.lines())
            report = engine.dial(tmp_path, reg.port, "--duration", "1", user=USER)
            assert report["answered"], report
            assert bot.wait_for("incoming call")[0]["trunk"] == "pbx"
        finally:
            bot.stop()


def test_a_wrong_password_is_a_failed_registration_in_health_metrics_and_mqtt_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PBX_PASSWORD", "not-the-password")
    admin = engine.free_port()
    base = f"http://127.0.0.1:{admin}"
    with running_registrar(tmp_path, {USER: PASSWORD}) as reg, running_mosquitto() as broker:
        cfg = write_config(tmp_path, reg)
        data = json.loads(cfg.read_text())
        data["mqtt"] = {"host": broker.host, "port": broker.port, "prefix": "tb", "node": "bot"}
        cfg.write_text(json.dumps(data))
        bot = start_bot(tmp_path, cfg, admin)
        try:
            failed = bot.wait_for("trunk registration failed")[0]
            assert failed["status"] == 401 and failed["failures"] == 1
            assert 4.5 <= failed["retry_in_s"] <= 5.5  # the first step of the backoff
            st, health = until(lambda: (r := http("GET", f"{base}/health", None))[0] == 503 and r,
                               what="unready")  # fmt: skip
            reason = next(r for r in health["reasons"] if r.startswith("trunk pbx:"))
            assert "failed: 401 Unauthorized" in reason and f"{USER} at {reg.uri}" in reason
            assert health["trunks"][0]["state"] == "failed"
            metrics = http("GET", f"{base}/metrics", None)[1]
            assert sample(metrics, "telephony_bot_trunk_registered", trunk="pbx") == 0
            assert sample(metrics, "telephony_bot_trunk_registration_failures_total",
                          trunk="pbx", status="401") == 1  # fmt: skip
            # the registrar saw the wrong answer, and saved nothing
            assert any("401 for 2001" in ln and "auth result -2" in ln for ln in reg.lines())
            assert reg.bindings(USER) == []
            # the node's retained MQTT status says so, to whoever subscribes later
            probe = MqttProbe(broker.host, broker.port, "tb/bot/status/#")
            try:
                [msg] = probe.wait_for(lambda m: m.topic == "tb/bot/status/trunks/pbx")
            finally:
                probe.close()
            assert msg.payload["state"] == "failed" and msg.payload["status_code"] == 401
            assert msg.payload["type"] == "trunk.registration" and msg.payload["user"] == USER
            # it tries again after the backoff, and fails again (now waiting longer)
            again = bot.wait_for("trunk registration failed", 2, timeout=10)[1]
            assert again["failures"] == 2 and 9 <= again["retry_in_s"] <= 11
        finally:
            bot.stop()
        assert "not-the-password" not in bot.log_path.read_text()


def test_an_outbound_call_goes_through_the_registered_account_when_the_trunk_asks_407(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PBX_PASSWORD", PASSWORD)
    admin = engine.free_port()
    base = f"http://127.0.0.1:{admin}"
    # the "carrier" behind the PBX: an echo worker of its own, where the PBX sends the call
    agent = engine.start(tmp_path, "worker", "--provider", "echo", "--grace", "2", name="agent")
    try:
        out = f"sip:127.0.0.1:{agent.sip_port}"
        with running_registrar(tmp_path, {USER: PASSWORD}, out_destination=out) as reg:
            cfg = write_config(tmp_path, reg)
            data = json.loads(cfg.read_text())
            data["outbound"] = {"trunk": "pbx", "allow": ["555*"], "route": "from-pbx"}
            cfg.write_text(json.dumps(data))
            bot = start_bot(tmp_path, cfg, admin)
            try:
                bot.wait_for("trunk registered")
                st, res = http("POST", f"{base}/originate", None, {"to": "5551234", "from": "99"})
                assert st == 409 and "as its user 2001" in res["reason"], res
                st, res = http("POST", f"{base}/originate", None, {"to": "5551234"})
                assert st == 200 and res["ok"], res
                assert res["uri"] == f"sip:5551234@127.0.0.1:{reg.port}"
                incoming = agent.wait_for("incoming call")[0]
                assert incoming["called"] == "5551234" and incoming["caller"] == USER
                [call] = until(lambda: [c for c in http("GET", f"{base}/calls", None)[1]["calls"]
                                        if c["state"] == "answered"], what="answered")  # fmt: skip
                assert call["direction"] == "outbound" and call["trunk"] == "pbx"
                # the PBX challenged the INVITE (407) and let the answer through
                lines = reg.lines("INVITE to 5551234")
                assert lines[0].startswith("407 for INVITE to 5551234 from 2001"), lines
                assert any(ln.startswith("authenticated INVITE to 5551234 from 2001")
                           for ln in lines), lines  # fmt: skip
                assert http("POST", f"{base}/calls/{res['call_id']}/hangup", None, {})[0] == 200
                ended = bot.wait_for("call ended")[0]
                assert ended["call_id"] == res["call_id"]
            finally:
                bot.stop()
    finally:
        agent.stop()


def test_behind_the_front_door_one_registration_names_it_and_its_calls_reach_every_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.integration.test_front_door import _ports
    from tests.support.sipp import run_sipp

    monkeypatch.setenv("PBX_PASSWORD", PASSWORD)
    admin = engine.free_port()
    with running_registrar(tmp_path, {USER: PASSWORD}) as reg:
        cfg = write_config(tmp_path, reg, keepalive_s=1)
        eng = engine.start(
            tmp_path, "serve", "--workers", "2", "--dialplan", str(write_plan(tmp_path)),
            "--config", str(cfg), "--admin-port", str(admin), "--grace", "2",
            ready_event="front door ready", name="serve",
        )  # fmt: skip
        door = f"127.0.0.1:{eng.sip_port}"
        try:
            registered = eng.wait_for("trunk registered")
            assert [e["worker"] for e in registered] == [0]  # one registration, by worker 0
            # the front door is the Contact, and the REGISTER came from it (so a NAT in front
            # of the machine maps the front door's port)
            [binding] = reg.wait(lambda: reg.bindings(USER), what="a binding")
            assert binding.contact.startswith(f"sip:{USER}@{door};line="), binding
            assert all(f"from {door} " in ln for ln in reg.lines("REGISTER 2001"))
            # the front door keeps its NAT binding to the registrar open with OPTIONS
            reg.wait(lambda: reg.lines(f"OPTIONS from {door}"), 5, "keepalives")

            st, health = http("GET", f"http://127.0.0.1:{admin}/health", None)
            assert st == 200, health
            assert [(t["trunk"], t["state"], t["worker"]) for t in health["trunks"]] == [
                ("pbx", "registered", 0)
            ]

            # four callers call 2001 at the registrar: it sends every call to the front door,
            # which spreads them over both workers
            res = run_sipp(
                "uac_short", f"127.0.0.1:{reg.port}", calls=4, concurrency=4, rate=100,
                duration_ms=2000, workdir=tmp_path, service=USER, **_ports(),
            )  # fmt: skip
            assert res.successful == 4 and res.failed == 0, res.describe()
            incoming = eng.wait_for("incoming call", 4)
            assert {e["worker"] for e in incoming} == {0, 1}, incoming
            assert {e["trunk"] for e in incoming} == {"pbx"}
            assert {e["source"] for e in incoming} == {door}
        finally:
            code = eng.stop()
        assert code == 0
        assert reg.bindings(USER) == []  # worker 0 unregistered before the front door stopped


def tls_config(tmp: Path, registrar: Registrar, pki: certs.TlsFiles) -> Path:
    """The trunk registers over TLS with the registrar's TLS port; the engine's TLS transport
    (sip.tls) trusts the CA of `pki` only."""
    path = write_config(tmp, registrar, transport="tls", expires=60)
    data = json.loads(path.read_text())
    data["trunks"]["pbx"]["register"]["registrar"] = f"sip:127.0.0.1:{registrar.tls_port}"
    data["sip"] = {"tls": {"port": engine.free_port(), "cert_file": str(pki.cert),
                           "key_file": str(pki.key), "ca_file": str(pki.ca)}}  # fmt: skip
    path.write_text(json.dumps(data))
    return path


needs_tls = pytest.mark.skipif(
    not kamailio_tls_available(),
    reason="Kamailio's tls module is missing (kamailio-tls-modules; `make install`)",
)


@needs_tls
def test_registers_over_tls_and_takes_the_registrars_calls_on_that_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PBX_PASSWORD", PASSWORD)
    pki = certs.make_server_certs(tmp_path / "pki")  # the registrar's certificate and its CA
    admin = engine.free_port()
    with running_registrar(tmp_path, {USER: PASSWORD}, tls=pki) as reg:
        bot = start_bot(tmp_path, tls_config(tmp_path, reg, pki), admin)
        try:
            bot.wait_for("trunk registered")
            # challenged (401), then saved: every REGISTER came over TLS
            decisions = reg.lines()
            first_401 = next(i for i, ln in enumerate(decisions) if ln.startswith("401 for 2001"))
            [saved_line] = [ln for ln in decisions if ln.startswith("saved 2001")]
            assert first_401 < decisions.index(saved_line) and saved_line.endswith(" over tls")
            assert all("via SIP/2.0/TLS " in ln for ln in reg.lines("REGISTER 2001"))
            # the Contact names the engine's end of the TLS connection, ;transport=TLS
            [binding] = reg.bindings(USER)
            m = re.fullmatch(r"sip:2001@127\.0\.0\.1:(\d+);transport=TLS;line=\w+", binding.contact)
            assert m, binding
            assert reg.tls_connections() == [f"127.0.0.1:{m.group(1)}"]
            st, health = http("GET", f"http://127.0.0.1:{admin}/health", None)
            assert st == 200 and health["trunks"][0]["state"] == "registered", health

            # a caller calls 2001 at the registrar (UDP): the registrar sends the call to the
            # Contact, over the connection the engine opened (no second connection)
            report = engine.dial(tmp_path, reg.port, "--duration", "1", user=USER, name="via")
            assert report["answered"], report
            incoming = bot.wait_for("incoming call")[0]
            assert incoming["trunk"] == "pbx" and incoming["transport"] == "tls"
            assert incoming["source"] == f"127.0.0.1:{reg.tls_port}"
            assert bot.wait_for("call routed")[0]["route"] == "from-pbx"
            assert reg.tls_connections() == [f"127.0.0.1:{m.group(1)}"]
        finally:
            code = bot.stop()
        assert code == 0
        assert reg.bindings(USER) == []  # unregistered over the same TLS connection
        assert PASSWORD not in bot.log_path.read_text()


@needs_tls
@pytest.mark.parametrize(
    ("registrar_cert", "why"),
    [
        ("another CA", "a certificate not signed by a CA the engine trusts"),
        ("another name", "a certificate issued for another name than the host"),
    ],
)
def test_a_registrar_certificate_that_fails_the_check_is_a_failed_registration_in_health(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registrar_cert: str, why: str
) -> None:
    monkeypatch.setenv("PBX_PASSWORD", PASSWORD)
    trusted = certs.make_server_certs(tmp_path / "pki")  # the engine's CA (sip.tls.ca_file)
    if registrar_cert == "another CA":
        presented = certs.make_server_certs(tmp_path / "other")
    else:  # the trusted CA's, but for 127.0.0.2 while the registrar is reached at 127.0.0.1
        presented = certs.issue_server_cert(trusted, "elsewhere", "127.0.0.2")
    admin = engine.free_port()
    with running_registrar(tmp_path, {USER: PASSWORD}, tls=presented) as reg:
        bot = start_bot(tmp_path, tls_config(tmp_path, reg, trusted), admin)
        try:
            failed = bot.wait_for("trunk registration failed")[0]
            assert failed["status"] == 503, failed
            url = f"http://127.0.0.1:{admin}/health"
            st, health = until(lambda: (r := http("GET", url, None))[0] == 503 and r,
                               what="unready")  # fmt: skip
            reason = next(r for r in health["reasons"] if r.startswith("trunk pbx:"))
            assert "failed: 503 SSL certificate verification error" in reason, reason
            assert f"127.0.0.1:{reg.tls_port} presented {why}" in reason, reason
            # the engine dropped the connection before sending anything: no REGISTER arrived
            assert reg.lines("REGISTER") == [] and reg.bindings(USER) == []
        finally:
            bot.stop()


@pytest.mark.skipif(bool(nat_available()), reason=nat_available() or "")
def test_behind_a_real_nat_the_registration_names_the_public_address_and_keeps_it_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bot in a network namespace behind nftables masquerading whose UDP mappings die
    after 6 s without traffic; the registrar and the caller on the other side."""
    monkeypatch.setenv("PBX_PASSWORD", PASSWORD)
    with nat_network(udp_timeout_s=6) as net:
        with running_registrar(
            tmp_path, {USER: PASSWORD}, host=net.PBX_IP, prefix=net.prefix("pbx")
        ) as reg:
            cfg = write_config(tmp_path, reg, expires=60, keepalive_s=2)  # no refresh here
            bot = engine.start(
                tmp_path, "worker", "--dialplan", str(write_plan(tmp_path)),
                "--config", str(cfg), "--sip-host", net.BOT_IP, "--grace", "2", name="bot",
                prefix=[*net.prefix("bot"), *engine.cli("worker")],
            )  # fmt: skip
            try:
                bot.wait_for("trunk registered")
                # the registrar saw the NAT's address (received/rport in its answer); the
                # engine registered again with that address as its Contact
                [binding] = reg.wait(
                    lambda: [b for b in reg.bindings(USER) if net.PUBLIC_IP in b.contact],
                    5, "the public Contact",
                )  # fmt: skip
                assert binding.contact.startswith(f"sip:{USER}@{net.PUBLIC_IP}:"), binding
                assert reg.bindings(USER) == [binding]  # the private Contact is gone
                registers = reg.lines("REGISTER 2001")
                assert all(f"from {net.PUBLIC_IP}:" in ln and ";rport" in ln for ln in registers)
                # twice the NAT's timeout later the mapping is still there: the keepalives
                # hold it open ...
                time.sleep(8)
                assert f"src={net.BOT_IP} dst={net.PBX_IP}" in net.conntrack_udp()
                # ... so the registrar's call reaches the bot through the NAT
                report_path = tmp_path / "via-nat.json"
                subprocess.run(
                    [*net.prefix("pbx"), *engine.cli("dial"), f"sip:{USER}@{net.PBX_IP}:{reg.port}",
                     "--report", str(report_path), "--duration", "1"],
                    capture_output=True, timeout=60, cwd=engine.REPO,
                )  # fmt: skip
                report = json.loads(report_path.read_text())
                assert report["answered"], report
                incoming = bot.wait_for("incoming call")[0]
                assert incoming["trunk"] == "pbx" and incoming["source"].startswith(net.PBX_IP)
            finally:
                bot.stop()
