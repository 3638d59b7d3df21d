"""TLS and SRTP settings: the engine config's `sip.tls`, `sip.srtp` and `trunks.*.srtp`, the
caller's options, SDES keys kept out of logs. Certificates are made here, for this run."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from telephony_bot import log
from telephony_bot.cli import _engine_settings, build_parser, main
from telephony_bot.config import load_engine_settings
from telephony_bot.errors import ConfigError
from telephony_bot.frontdoor import kamailio
from telephony_bot.frontdoor.render import (
    DEFAULT_MODULE_PATH,
    FrontDoorConfig,
    FrontDoorTls,
    WorkerAddress,
    render_cfg,
    write,
)
from telephony_bot.sip.dial import DialOptions
from telephony_bot.sip.pjlog import PjLogWriter
from telephony_bot.sip.sipmsg import mask_sdes_keys, sdp_has_crypto, via_transport
from telephony_bot.trunk_config import SrtpPolicy, Trunk
from tests.support import certs

KEY = "fzzu3oc1xxY582ZG1k4f9W6LEYvFhFvY802KcHDc05fQ98pv/L3eQZrGYNx0KQ=="


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> certs.TlsFiles:
    return certs.make_server_certs(tmp_path_factory.mktemp("pki"))


def _tls_yaml(pki: certs.TlsFiles, **extra: str) -> str:
    lines = [f"    cert_file: {pki.cert}", f"    key_file: {pki.key}"]
    lines += [f"    {k}: {v}" for k, v in extra.items()]
    return "sip:\n  tls:\n" + "\n".join(lines) + "\n"


def test_tls_and_srtp_from_the_file_and_the_environment(
    tmp_path: Path, pki: certs.TlsFiles
) -> None:
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(
        _tls_yaml(pki, ca_file=str(pki.ca)) + "  srtp: optional\n"
        "trunks:\n  pbx:\n    srtp: mandatory\n  carrier: {}\n"
    )
    s = load_engine_settings(cfg, {"TELEPHONY_BOT_SIP_TLS_PORT": "15061",
                                   "TELEPHONY_BOT_SIP_TLS_VERIFY_PEER": "true"})  # fmt: skip
    assert s.sip.tls is not None
    assert s.sip.tls.port == 15061 and s.sip.tls.verify_peer and s.sip.tls.verify_server
    assert s.sip.tls.cert_file == pki.cert.resolve() and s.sip.tls.trust_file() == str(pki.ca)
    assert s.srtp_policy() == SrtpPolicy("optional", (("pbx", "mandatory"),))
    assert s.describe()["sip_tls"] == "port 15061"
    assert s.describe()["srtp"] == "optional; trunks pbx=mandatory"


def test_tls_is_off_and_srtp_off_unless_configured(tmp_path: Path) -> None:
    s = load_engine_settings(None, {})
    assert s.sip.tls is None and s.srtp_policy() == SrtpPolicy()
    bare_off = tmp_path / "engine.yaml"
    bare_off.write_text("sip:\n  srtp: off\ntrunks:\n  pbx: {srtp: off}\n")  # YAML: false
    assert load_engine_settings(bare_off, {}).srtp_policy() == SrtpPolicy("off", (("pbx", "off"),))
    only_env = load_engine_settings(None, {"TELEPHONY_BOT_SIP_SRTP": "mandatory"})
    assert only_env.srtp_policy().default == "mandatory"


def test_without_a_ca_file_servers_are_checked_against_the_system_cas(
    tmp_path: Path, pki: certs.TlsFiles
) -> None:
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(_tls_yaml(pki))
    tls = load_engine_settings(cfg, {}).sip.tls
    assert tls is not None and tls.ca_file is None
    assert Path(tls.trust_file()).is_file()  # the system bundle, never "trust nothing"


def test_a_trunks_srtp_refines_the_default() -> None:
    p = SrtpPolicy.of("off", {"pbx": Trunk(srtp="mandatory"), "lab": Trunk(), "x": Trunk()})
    assert p.mode_for("pbx") == "mandatory"
    assert p.mode_for("lab") == "off" and p.mode_for(None) == "off"
    assert p.modes == ("off", "mandatory")  # one SIP account per mode, the default first
    assert SrtpPolicy.of("optional", {}).modes == ("optional",)


def _encrypted_key(pki: certs.TlsFiles, tmp_path: Path) -> Path:
    out = tmp_path / "encrypted.key"
    subprocess.run(["openssl", "pkey", "-in", str(pki.key), "-aes256", "-passout", "pass:x",
                    "-out", str(out)], check=True, capture_output=True)  # fmt: skip
    return out


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing cert", "sip.tls.cert_file: no such file"),
        ("no key", "sip.tls.key_file: Field required"),
        ("key of another cert", "are not a usable PEM certificate and its unencrypted"),
        ("encrypted key", "the private key is encrypted"),
        ("verify_peer without ca", "verify_peer needs ca_file"),
        ("ca not pem", "not PEM CA certificates"),
        ("bad srtp", "sip.srtp: Input should be 'off', 'optional' or 'mandatory'"),
        ("srtp yes", "sip.srtp: write optional or mandatory (YAML reads on, yes and true"),
        ("bad trunk srtp", "trunks.pbx.srtp: Input should be 'off', 'optional' or 'mandatory'"),
        ("unknown tls field", "sip.tls.certificate: unknown setting"),
    ],
)
def test_bad_tls_and_srtp_settings_say_file_field_and_why(
    tmp_path: Path, pki: certs.TlsFiles, case: str, message: str
) -> None:
    def files(cert: Path, key: Path) -> str:
        return f"sip:\n  tls:\n    cert_file: {cert}\n    key_file: {key}\n"

    if case == "missing cert":
        text = files(Path("/nope.pem"), pki.key)
    elif case == "no key":
        text = f"sip:\n  tls:\n    cert_file: {pki.cert}\n"
    elif case == "key of another cert":
        text = files(pki.cert, certs.make_server_certs(tmp_path / "other").key)
    elif case == "encrypted key":
        text = files(pki.cert, _encrypted_key(pki, tmp_path))
    elif case == "verify_peer without ca":
        text = _tls_yaml(pki, verify_peer="true")
    elif case == "ca not pem":
        text = _tls_yaml(pki, ca_file=str(pki.key.parent / "server.ext"))
    elif case == "bad srtp":
        text = "sip:\n  srtp: always\n"
    elif case == "srtp yes":
        text = "sip:\n  srtp: yes\n"
    elif case == "bad trunk srtp":
        text = "trunks:\n  pbx:\n    srtp: always\n"
    else:
        text = _tls_yaml(pki, certificate="x")
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_engine_settings(cfg, {})
    assert str(cfg) in str(exc.value) and message in str(exc.value), str(exc.value)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        # Kamailio names its own address in Via and Record-Route: it needs one
        (["--workers", "2"], "TLS at the front door needs the address it listens on"),
        # TLS is TCP: its port must be none of the workers' SIP (UDP+TCP) ports
        (
            ["--workers", "2", "--sip-host", "127.0.0.1", "--sip-port", "5050"],
            "TLS port(s) [5051] overlap the SIP ports [5050, 5051, 5052]",
        ),
        (
            ["--workers", "2", "--front-door", "none", "--sip-port", "5052"],
            "TLS port(s) [5051, 5052] overlap the SIP ports [5052, 5053]",
        ),
    ],
)
def test_serve_checks_where_tls_listens_before_starting_anything(
    tmp_path: Path, pki: certs.TlsFiles, capsys: pytest.CaptureFixture[str],
    flags: list[str], message: str,
) -> None:  # fmt: skip
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(_tls_yaml(pki, port="5051"))
    assert main(["serve", "--provider", "echo", "--config", str(cfg), *flags]) == 2
    assert message in capsys.readouterr().err


def test_the_front_door_terminates_tls_with_the_engines_certificate(
    tmp_path: Path, pki: certs.TlsFiles
) -> None:
    workers = (WorkerAddress("127.0.0.1", 15998), WorkerAddress("127.0.0.1", 15997))
    tls = FrontDoorTls(15996, pki.cert, pki.key, pki.ca, verify_peer=True)
    cfg = FrontDoorConfig("127.0.0.1", 15999, workers, tmp_path, tls=tls)
    text = render_cfg(cfg)
    assert "listen=tls:127.0.0.1:15996" in text and "enable_tls=yes" in text
    assert f'modparam("tls", "certificate", "{pki.cert}")' in text
    assert f'modparam("tls", "ca_list", "{pki.ca}")' in text
    assert 'modparam("tls", "require_certificate", 1)' in text
    assert 'modparam("tls", "tls_method", "TLSv1.2+")' in text
    if Path(DEFAULT_MODULE_PATH, "tls.so").exists():
        kamailio.check_config(write(cfg))  # Kamailio itself accepts it
    missing = FrontDoorConfig("127.0.0.1", 15999, workers, tmp_path, tls=tls,
                              module_path=str(tmp_path))  # fmt: skip
    with pytest.raises(ConfigError, match="kamailio-tls-modules"):
        render_cfg(missing)


def test_the_caller_takes_tls_from_the_uri_and_checks_its_options(tmp_path: Path) -> None:
    assert DialOptions("sips:100@127.0.0.1:5061").transport == "tls"
    assert DialOptions("sip:100@127.0.0.1:5061;transport=TLS").transport == "tls"
    assert DialOptions("sip:100@127.0.0.1:5060;transport=tcp").transport == "tcp"
    assert DialOptions("sip:100@127.0.0.1:5060").transport == "udp"
    assert not DialOptions("sips:1@h", tls_verify=False).tls_transport().verify_server
    assert DialOptions("sips:1@h").tls_transport().ca_file  # the system's CAs by default
    with pytest.raises(ConfigError, match="--srtp"):
        DialOptions("sip:1@h", srtp="sometimes")
    with pytest.raises(ConfigError, match="--tls-ca /nope.pem: no such file"):
        DialOptions("sips:1@h", tls_ca="/nope.pem")
    key = tmp_path / "k.pem"
    key.write_text("x")
    with pytest.raises(ConfigError, match="go together"):
        DialOptions("sips:1@h", tls_key=str(key))


def test_via_transport() -> None:
    assert via_transport("SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK1") == "tls"
    assert via_transport("SIP/2.0/UDP 10.0.0.1;rport") == "udp"
    assert via_transport("garbage") == ""


def test_srtp_keys_never_reach_the_log(capfd: pytest.CaptureFixture[str]) -> None:
    sdp = f"m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:{KEY}|2^20\r\n"
    assert KEY not in mask_sdes_keys(sdp) and "inline:****|2^20" in mask_sdes_keys(sdp)
    log.setup("json", "debug")
    PjLogWriter(4).write(SimpleNamespace(msg=f"RX 900 bytes INVITE\n{sdp}", level=5))
    err = capfd.readouterr().err
    assert "RTP/SAVP" in err and KEY not in err


def test_srtp_is_read_from_the_sdp_answer() -> None:
    """`optional` SRTP answers under RTP/AVP with a crypto line: still SRTP."""
    avp = "v=0\r\nm=audio 4000 RTP/AVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:k\r\n"
    assert sdp_has_crypto(avp)
    assert not sdp_has_crypto("v=0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
    refused = "m=audio 0 RTP/SAVP 0\r\na=crypto:1 X inline:k\r\nm=audio 4002 RTP/AVP 0\r\n"
    assert not sdp_has_crypto(refused)


def test_a_private_key_others_can_read_is_warned_about(
    tmp_path: Path, pki: certs.TlsFiles, capfd: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "open.key"
    key.write_bytes(pki.key.read_bytes())
    key.chmod(0o644)
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(f"sip:\n  tls:\n    cert_file: {pki.cert}\n    key_file: {key}\n")
    log.setup("json", "info")
    args = build_parser().parse_args(["worker", "--config", str(cfg)])
    _engine_settings(args)
    err = capfd.readouterr().err
    assert "the TLS private key is readable by other users" in err and "0o644" in err
    key.chmod(0o600)
    _engine_settings(args)
    assert "readable by other users" not in capfd.readouterr().err
