"""TLS signaling and SRTP media with a real pjsua2 caller (`telephony-bot dial`).

Certificates are made here, for this run (tests/support/certs.py); no key is committed."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from telephony_bot.frontdoor.render import DEFAULT_MODULE_PATH
from tests.support import audio, certs, engine
from tests.support.admin import TOKEN, http

RATE = 16000
ECHO_MS = 300
PLAY_AT = 0.3
SPEECH_S = 1.2


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tls")


@pytest.fixture(scope="module")
def pki(workdir: Path) -> certs.TlsFiles:
    return certs.make_server_certs(workdir / "pki")


@pytest.fixture(scope="module")
def speech_wav(workdir: Path) -> Path:
    return audio.write_wav(workdir / "speech.wav", audio.speech_like(SPEECH_S, RATE), RATE)


def _config(workdir: Path, name: str, pki: certs.TlsFiles, **sip: Any) -> tuple[Path, int]:
    """An engine config with a TLS listener on a free port, and `sip` settings over it."""
    port = engine.free_port()
    tls = {"port": port, "cert_file": str(pki.cert), "key_file": str(pki.key),
           "ca_file": str(pki.ca), **sip.pop("tls", {})}  # fmt: skip
    extra = sip.pop("extra", {})  # other sections (trunks)
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"sip": {"tls": tls, **sip}, **extra}))
    return path, port


@pytest.fixture(scope="module")
def secure_worker(workdir: Path, pki: certs.TlsFiles):
    """A worker that takes calls over TLS and insists on SRTP (echo provider)."""
    cdr = {"cdr": {"path": str(workdir / "secure-cdr.jsonl")}}
    config, tls_port = _config(workdir, "secure", pki, srtp="mandatory", extra=cdr)
    with engine.running(
        workdir, "worker", "--provider", "echo", "--echo-delay-ms", str(ECHO_MS),
        "--config", str(config), name="secure",
    ) as eng:  # fmt: skip
        eng.tls_port = tls_port  # type: ignore[attr-defined]
        # a warm-up call, as in test_echo_call: a fresh process's first call can run late
        warm = _secure_dial(workdir, eng, pki, "--duration", "1", name="warm-secure")
        assert warm["answered"], warm
        yield eng


def _secure_dial(workdir: Path, eng: Any, pki: certs.TlsFiles, *args: str, name: str) -> dict:
    return engine.dial(
        workdir, eng.tls_port, "--tls-ca", str(pki.ca), "--srtp", "mandatory", *args,
        name=name, scheme="sips",
    )  # fmt: skip


def test_a_tls_call_with_mandatory_srtp_echoes_the_callers_audio(
    workdir: Path, pki: certs.TlsFiles, speech_wav: Path, secure_worker
) -> None:
    rec = workdir / "secure-echo.wav"
    rep = _secure_dial(
        workdir, secure_worker, pki,
        "--play", str(speech_wav), "--play-at", str(PLAY_AT), "--duration", "2",
        "--record", str(rec), "--rate", str(RATE), name="secure-echo",
    )  # fmt: skip
    assert rep["answered"], rep
    # what the caller saw: TLS with a certificate that checked out, SRTP audio
    assert rep["transport"] == "tls"
    assert rep["tls"]["verified"] and rep["tls"]["established"], rep["tls"]
    assert rep["tls"]["peer"] == "127.0.0.1"
    assert rep["srtp"] is True, rep
    assert rep["rtp"]["rx_packets"] > 50 and rep["rtp"]["tx_packets"] > 50, rep["rtp"]
    # audio both ways: the caller hears its own speech back, intact, after the echo delay
    sent, _ = audio.read_wav(speech_wav)
    got, _ = audio.read_wav(rec)
    echo = audio.echo_pieces(sent, got, RATE)
    assert echo.intact, f"the echo is not what was sent: {echo.describe()}"
    delay = echo.whole_ms - rep["play_start_ms"]
    assert ECHO_MS <= delay < ECHO_MS + 150, delay
    # what the engine saw: a call over TLS on its SRTP-mandatory account, SRTP media
    call = [e for e in secure_worker.events("incoming call") if e["transport"] == "tls"][-1]
    assert call["srtp"] == "mandatory"
    media = [e for e in secure_worker.events("media active") if e["call_id"] == call["call_id"]]
    assert media and media[0]["srtp"] is True, media
    # and its call record says so
    record = _record(workdir / "secure-cdr.jsonl", call["call_id"])
    assert record["transport"] == "tls" and record["media"]["srtp"] is True, record


def _record(path: Path, call_id: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        for r in map(json.loads, lines):
            if r["call_id"] == call_id:
                return dict(r)
        time.sleep(0.05)
    raise AssertionError(f"no call record for {call_id} in {path}")


@pytest.mark.parametrize("scheme", ["sips", "sip"])
def test_a_caller_without_srtp_is_refused_with_488(
    workdir: Path, pki: certs.TlsFiles, secure_worker, scheme: str
) -> None:
    """Plain RTP, over TLS or UDP: PJSIP answers 488 before any session starts."""
    sessions = len(secure_worker.events("incoming call"))
    port = secure_worker.tls_port if scheme == "sips" else secure_worker.sip_port
    rep = engine.dial(
        workdir, port, "--tls-ca", str(pki.ca), "--duration", "1",
        name=f"plain-{scheme}", scheme=scheme,
    )  # fmt: skip
    assert not rep["answered"]
    assert rep["sip_status"] == 488, rep
    assert rep["_exit_code"] != 0
    assert len(secure_worker.events("incoming call")) == sessions  # no session was started


def test_a_server_certificate_from_an_unknown_ca_fails_the_call_clearly(
    workdir: Path, secure_worker
) -> None:
    stranger = certs.make_server_certs(workdir / "stranger")  # a CA that signed nothing here
    rep = engine.dial(
        workdir, secure_worker.tls_port, "--tls-ca", str(stranger.ca), "--srtp", "mandatory",
        "--duration", "1", name="unknown-ca", scheme="sips",
    )  # fmt: skip
    assert not rep["answered"]
    assert rep["sip_status"] == 503, rep
    assert "certificate verification" in rep["reason"], rep["reason"]
    assert rep["tls"]["verified"] is False
    assert any("untrusted" in m for m in rep["tls"]["verify_errors"]), rep["tls"]
    assert "certificate failed the check" in rep["_stdout"], rep["_stdout"]


def test_mutual_tls_takes_only_clients_with_a_certificate_and_srtp_off_refuses_srtp(
    workdir: Path, pki: certs.TlsFiles
) -> None:
    """`verify_peer`: a client must show a certificate from `ca_file`. `srtp: off` (the
    default) answers plain RTP and refuses an offer of SRTP only."""
    cert, key = certs.make_client_cert(pki)
    config, tls_port = _config(workdir, "mtls", pki, tls={"verify_peer": True})
    client = ("--tls-ca", str(pki.ca), "--tls-cert", str(cert), "--tls-key", str(key))
    with engine.running(
        workdir, "worker", "--provider", "echo", "--config", str(config), name="mtls"
    ) as eng:
        ok = engine.dial(workdir, tls_port, *client, "--duration", "1", name="mtls-ok",
                         scheme="sips")  # fmt: skip
        anonymous = engine.dial(workdir, tls_port, "--tls-ca", str(pki.ca), "--duration", "1",
                                name="mtls-anon", scheme="sips")  # fmt: skip
        srtp_only = engine.dial(workdir, tls_port, *client, "--srtp", "mandatory",
                                "--duration", "1", name="mtls-srtp", scheme="sips")  # fmt: skip
        calls = eng.events("incoming call")
        refusals = [e["msg"] for e in eng.events("pjsip") if "certificate" in e.get("msg", "")]
    assert ok["answered"] and ok["srtp"] is False, ok
    assert not anonymous["answered"] and anonymous["sip_status"] >= 400, anonymous
    # the operator sees why: the engine's log names the missing client certificate
    assert any("did not return a certificate" in m for m in refusals), refusals
    assert not srtp_only["answered"] and srtp_only["sip_status"] == 488, srtp_only
    assert len(calls) == 1  # only the call with a certificate and plain RTP got through


def test_srtp_follows_the_trunk_a_call_is_attributed_to(workdir: Path, pki: certs.TlsFiles) -> None:
    """`trunks.<name>.srtp` over `sip.srtp`: the endpoint puts each INVITE on the account of
    its trunk's mode. Here a test worker attributes calls by an `X-Trunk` header."""
    trunks = {"secure": {"srtp": "mandatory"}, "mixed": {"srtp": "optional"}}
    config, _ = _config(workdir, "trunks", pki, srtp="off", extra={"trunks": trunks})
    prefix = [sys.executable, "-m", "tests.support.trunk_worker"]

    def call(name: str, trunk: str | None, srtp: str) -> dict[str, Any]:
        header = ("--header", f"X-Trunk: {trunk}") if trunk else ()
        return engine.dial(workdir, eng.sip_port, *header, "--srtp", srtp, "--duration", "1",
                           name=name)  # fmt: skip

    with engine.running(
        workdir, "worker", "--config", str(config), name="trunks", prefix=prefix
    ) as eng:
        secure_plain = call("secure-plain", "secure", "off")
        secure_srtp = call("secure-srtp", "secure", "mandatory")
        mixed_plain = call("mixed-plain", "mixed", "off")
        mixed_best_effort = call("mixed-optional", "mixed", "optional")  # RTP/AVP + a=crypto
        other_plain = call("other-plain", None, "off")
        other_srtp = call("other-srtp", None, "mandatory")
        media = {e["call_id"]: e["srtp"] for e in eng.events("media active")}
        incoming = eng.events("incoming call")
    assert secure_plain["sip_status"] == 488 and not secure_plain["answered"], secure_plain
    assert secure_srtp["answered"] and secure_srtp["srtp"] is True, secure_srtp
    assert mixed_plain["answered"] and mixed_plain["srtp"] is False, mixed_plain
    assert mixed_best_effort["answered"] and mixed_best_effort["srtp"] is True, mixed_best_effort
    assert other_plain["answered"] and other_plain["srtp"] is False, other_plain
    assert other_srtp["sip_status"] == 488, other_srtp  # srtp off: an SRTP-only offer fails
    # the engine agrees on each call it took: its account's mode and the media it got
    seen = [(e["srtp"], media[e["call_id"]]) for e in incoming]
    assert seen == [("mandatory", True), ("optional", False), ("optional", True), ("off", False)]


def test_calls_out_over_tls_check_the_far_ends_certificate(
    workdir: Path, pki: certs.TlsFiles, secure_worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`originate` through a `sips:` trunk: TLS to the far end, whose certificate must chain to
    `ca_file` (`verify_server`); SRTP as `sip.srtp` says. The far end is the secure worker."""
    monkeypatch.setenv("TELEPHONY_BOT_ADMIN_TOKEN", TOKEN)
    stranger = certs.make_server_certs(workdir / "stranger-out")
    outcomes = {}
    for name, ca in (("trusted", pki.ca), ("stranger", stranger.ca)):
        outbound = {"trunk": f"sips:127.0.0.1:{secure_worker.tls_port}", "allow": ["+49*"]}
        config, _ = _config(workdir, f"out-{name}", pki, srtp="mandatory",
                            tls={"ca_file": str(ca)}, extra={"outbound": outbound})  # fmt: skip
        admin = engine.free_port()
        before = len(secure_worker.events("incoming call"))
        with engine.running(
            workdir, "worker", "--provider", "echo", "--config", str(config),
            "--admin-port", str(admin), "--max-call-seconds", "1", name=f"out-{name}",
            ready_event="worker admin API listening",
        ) as caller:  # fmt: skip
            st, res = http("POST", f"http://127.0.0.1:{admin}/originate", body={"to": "+4930777"})
            assert st == 200 and res["ok"], res
            ended = caller.wait_for("call ended")[0]
        outcomes[name] = (ended, secure_worker.events("incoming call")[before:])
    ended, arrived = outcomes["trusted"]
    assert [(c["called"], c["transport"], c["srtp"]) for c in arrived] == [
        ("+4930777", "tls", "mandatory")
    ]
    assert ended["srtp"] == 1, ended  # the engine's own record of the call: SRTP media
    ended, arrived = outcomes["stranger"]
    assert arrived == []  # the far end never saw an INVITE
    assert "certificate verification" in ended["reason"], ended


@pytest.mark.skipif(
    not Path(DEFAULT_MODULE_PATH, "tls.so").exists(),
    reason="Kamailio's tls module is not installed (scripts/install-system-deps.sh installs it)",
)
def test_the_front_door_takes_tls_and_the_workers_keep_srtp_mandatory(
    workdir: Path, pki: certs.TlsFiles, speech_wav: Path
) -> None:
    """`serve --workers 2`: TLS ends at Kamailio (`;transport=tls`), the call goes on to a
    worker on loopback, SRTP between the caller and the worker as the worker's mode says."""
    config, tls_port = _config(workdir, "front", pki, srtp="mandatory")
    eng = engine.start(
        workdir, "serve", "--workers", "2", "--provider", "echo", "--echo-delay-ms",
        str(ECHO_MS), "--grace", "2", "--config", str(config), ready_event="front door ready",
        name="front-tls",
    )  # fmt: skip
    try:
        eng.wait_for("worker listening", 2)
        rec = workdir / "front-echo.wav"
        rep = engine.dial(
            workdir, tls_port, "--tls-ca", str(pki.ca), "--srtp", "mandatory",
            "--play", str(speech_wav), "--play-at", str(PLAY_AT), "--duration", "2",
            "--record", str(rec), "--rate", str(RATE), name="front-echo",
            params=";transport=tls",
        )  # fmt: skip
        plain = engine.dial(workdir, tls_port, "--tls-ca", str(pki.ca), "--duration", "1",
                            name="front-plain", params=";transport=tls")  # fmt: skip
    finally:
        eng.stop()
    assert rep["answered"] and rep["transport"] == "tls" and rep["srtp"] is True, rep
    assert rep["tls"]["verified"], rep["tls"]  # Kamailio's certificate, from our CA
    echo = audio.echo_pieces(audio.read_wav(speech_wav)[0], audio.read_wav(rec)[0], RATE)
    assert echo.intact, echo.describe()
    assert plain["sip_status"] == 488 and not plain["answered"], plain
