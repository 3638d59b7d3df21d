"""Registering over TLS (`trunks.<name>.register.transport: tls`): what the operator is told
when it cannot be (no `sip.tls`, behind the front door), and how a failed certificate check
is explained (sip/tls_refusals.py). The registration itself runs against a real Kamailio
registrar in tests/integration/test_registration.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from telephony_bot.cli import main
from telephony_bot.sip import tls_refusals
from telephony_bot.sip.tls_refusals import TlsRefusals, describe
from tests.support import certs

CERT_ERROR = "SSL certificate verification error (PJSIP_TLS_ECERTVERIF)"


def _config(tmp: Path, tls: bool) -> Path:
    reg = {"registrar": "sip:pbx.example.com:5061", "user": "2001",
           "password_env": "PBX_PASSWORD", "transport": "tls"}  # fmt: skip
    data: dict = {"trunks": {"pbx": {"register": reg}}}
    if tls:
        pki = certs.make_server_certs(tmp / "pki")
        data["sip"] = {"tls": {"port": 5071, "cert_file": str(pki.cert),
                               "key_file": str(pki.key), "ca_file": str(pki.ca)}}  # fmt: skip
    path = tmp / "engine.yaml"
    path.write_text(json.dumps(data))
    return path


def test_a_tls_trunk_without_sip_tls_stops_the_worker_naming_both_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PBX_PASSWORD", "pw")
    path = _config(tmp_path, tls=False)
    assert main(["worker", "--provider", "echo", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: trunks.pbx.register.transport: tls needs the engine's TLS transport" in err
    assert "sip.tls is not set" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--provider", "echo", "--workers", "2"],
        ["frontdoor", "render", "--worker", "127.0.0.1:5062", "--out"],
    ],
)
def test_behind_the_front_door_a_tls_trunk_is_refused_with_the_reason(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    monkeypatch.setenv("PBX_PASSWORD", "pw")
    path = _config(tmp_path, tls=True)
    if argv[-1] == "--out":
        argv = [*argv, str(tmp_path / "door")]
    assert main([*argv, "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "trunks.pbx.register.transport: tls is not relayed by the front door" in err
    assert "does not check that the registrar's certificate names the registrar" in err
    assert "--workers 1" in err
    assert not (tmp_path / "door" / "kamailio.cfg").exists()


def test_what_a_failed_certificate_check_found_is_said_plainly() -> None:
    assert describe(tls_refusals.ISSUER_NOT_FOUND) == (
        "a certificate not signed by a CA the engine trusts (sip.tls.ca_file, else the "
        "system's CAs)"
    )
    assert describe(tls_refusals.IDENTITY_NOT_MATCH | tls_refusals.VALIDITY_PERIOD) == (
        "a certificate issued for another name than the host it was reached at and expired "
        "or not yet valid"
    )
    # a flag without a phrase of ours: OpenSSL's words
    assert (
        describe(tls_refusals.CHAIN_TOO_LONG, ["chain too long "]) == "a certificate chain too long"
    )


def test_a_registration_failure_is_explained_by_the_refusal_of_its_next_hop() -> None:
    seen = TlsRefusals()
    seen.refused("10.0.0.9:5071", tls_refusals.UNTRUSTED, ["untrusted"], now=100.0)
    seen.refused("10.0.0.5:5061", tls_refusals.IDENTITY_NOT_MATCH, ["identity"], now=101.0)
    assert seen.explain(CERT_ERROR, 5061, now=102.0) == (
        f"{CERT_ERROR}: 10.0.0.5:5061 presented a certificate issued for another name than "
        "the host it was reached at"
    )
    # another failure, another port, or a refusal long gone: the reason as PJSIP gave it
    assert seen.explain("Request Timeout", 5061, now=102.0) == "Request Timeout"
    assert seen.explain(CERT_ERROR, 5060, now=102.0) == CERT_ERROR
    assert seen.explain(CERT_ERROR, 5061, now=101.0 + tls_refusals.KEEP_S + 1) == CERT_ERROR
