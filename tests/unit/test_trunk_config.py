"""`trunks:` in the engine config: what a registration needs, where its password may come
from (never the file itself), environment overrides, and the errors an operator gets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from telephony_bot.config import load_engine_settings
from telephony_bot.errors import ConfigError

ENV = {"PBX_PASSWORD": "pw-1"}


def _file(tmp: Path, register: dict[str, Any] | None = None, **top: Any) -> Path:
    reg = {"registrar": "sip:pbx.example.com", "user": "2001", "password_env": "PBX_PASSWORD"}
    reg.update(register or {})
    data = {"trunks": {"pbx": {"register": reg}}, **top}
    path = tmp / "engine.yaml"
    path.write_text(json.dumps(data))
    return path


def test_a_registration_with_its_defaults(tmp_path: Path) -> None:
    s = load_engine_settings(_file(tmp_path), ENV)
    reg = s.trunks["pbx"].registration
    assert reg is not None
    assert (reg.digest_user, reg.realm, reg.expires, reg.transport, reg.keepalive_s) == (
        "2001", "*", 300, "udp", 15,
    )  # fmt: skip
    assert reg.domain == "pbx.example.com" and reg.password(ENV) == "pw-1"
    assert s.describe()["trunks"] == "pbx (2001@pbx.example.com over udp)"
    assert "pw-1" not in repr(s) and "pw-1" not in str(s.describe())


def test_the_password_comes_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "pbx.secret"
    secret.write_text("from-a-file\n")
    path = _file(tmp_path, {"password_env": None, "password_file": str(secret)})
    reg = load_engine_settings(path, {}).trunks["pbx"].registration
    assert reg is not None and reg.password({}) == "from-a-file"
    secret.write_text("")
    with pytest.raises(ConfigError, match=r"trunks\.pbx\.register\.password_file: .* is empty"):
        load_engine_settings(path, {})


@pytest.mark.parametrize(
    ("register", "message"),
    [
        ({"password": "hunter2"}, "a password may not be written in the config"),
        ({"password_env": None}, "give exactly one of password_env or password_file"),
        ({"password_file": "/x"}, "give exactly one of password_env or password_file"),
        ({"registrar": "sip:2001@pbx.example.com"}, "without a user part"),
        ({"registrar": "sip:pbx.example.com;transport=tcp"}, "give the transport in"),
        ({"registrar": "sips:pbx.example.com"}, "a sips: registrar needs transport: tls"),
        ({"transport": "tcp", "keepalive_s": 30}, "keepalive_s applies to UDP"),
        ({"transport": "tcp", "keepalive_s": 15}, "keepalive_s applies to UDP"),
        ({"transport": "sctp"}, "trunks.pbx.register.transport"),
        ({"expires": 5}, "trunks.pbx.register.expires"),
        ({"contact_params": "q=0.5"}, "header parameters"),
        ({"outbound_proxy": "proxy.example.com"}, "without a user part"),
        ({"user": "a b"}, "SIP user name"),
    ],
)
def test_bad_registrations_name_the_file_and_field(
    tmp_path: Path, register: dict[str, Any], message: str
) -> None:
    path = _file(tmp_path, register)
    with pytest.raises(ConfigError) as err:
        load_engine_settings(path, ENV)
    assert str(err.value).startswith(f"{path}: trunks.pbx.register")
    assert message in str(err.value)


def test_an_unset_password_variable_stops_the_start(tmp_path: Path) -> None:
    path = _file(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_engine_settings(path, {})
    assert str(err.value) == (
        f"{path}: trunks.pbx.register.password_env: environment variable PBX_PASSWORD is not set"
    )


def test_bad_trunk_names_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "engine.yaml"
    path.write_text(json.dumps({"trunks": {"my trunk": {}}}))
    with pytest.raises(ConfigError, match="trunk name 'my trunk'"):
        load_engine_settings(path, {})


def test_the_environment_overrides_a_trunk_or_defines_one(tmp_path: Path) -> None:
    env = {
        **ENV,
        "TELEPHONY_BOT_TRUNKS_PBX_REGISTER_EXPIRES": "60",
        "TELEPHONY_BOT_TRUNKS_SIP_PROVIDER_REGISTER_REGISTRAR": "sip:sip.provider.example",
        "TELEPHONY_BOT_TRUNKS_SIP_PROVIDER_REGISTER_USER": "4930123",
        # the variable holding the password itself
        "TELEPHONY_BOT_TRUNKS_SIP_PROVIDER_REGISTER_PASSWORD": "pw-2",
    }
    s = load_engine_settings(_file(tmp_path), env)
    pbx, provider = s.trunks["pbx"].registration, s.trunks["sip_provider"].registration
    assert pbx is not None and pbx.expires == 60
    assert provider is not None and provider.user == "4930123"
    assert provider.password_env == "TELEPHONY_BOT_TRUNKS_SIP_PROVIDER_REGISTER_PASSWORD"
    assert provider.password(env) == "pw-2"


def test_a_password_from_the_environment_replaces_the_files_password_file(tmp_path: Path) -> None:
    path = _file(tmp_path, {"password_env": None, "password_file": "/run/secrets/none"})
    env = {"TELEPHONY_BOT_TRUNKS_PBX_REGISTER_PASSWORD": "pw-3"}
    reg = load_engine_settings(path, env).trunks["pbx"].registration
    assert reg is not None and reg.password_file is None and reg.password(env) == "pw-3"


def test_an_environment_variable_naming_no_setting_is_an_error(tmp_path: Path) -> None:
    env = {**ENV, "TELEPHONY_BOT_TRUNKS_PBX_REGISTER_USR": "2002"}
    with pytest.raises(ConfigError, match="TELEPHONY_BOT_TRUNKS_PBX_REGISTER_USR: names no trunk"):
        load_engine_settings(_file(tmp_path), env)


def test_outbound_calls_may_go_through_a_registered_trunk_by_name(tmp_path: Path) -> None:
    s = load_engine_settings(_file(tmp_path, outbound={"trunk": "pbx"}), ENV)
    assert s.outbound.via_trunk == "pbx"
    s = load_engine_settings(_file(tmp_path, outbound={"trunk": "sip:10.0.0.1:5060"}), ENV)
    assert s.outbound.via_trunk is None
    with pytest.raises(ConfigError, match=r"outbound.trunk: no trunk named 'pbxx' \(trunks: pbx\)"):
        load_engine_settings(_file(tmp_path, outbound={"trunk": "pbxx"}), ENV)
    path = tmp_path / "e2.yaml"
    path.write_text(json.dumps({"trunks": {"ip": {}}, "outbound": {"trunk": "ip"}}))
    with pytest.raises(ConfigError, match="trunk 'ip' has no `register` section"):
        load_engine_settings(path, {})


def test_registering_over_tls_needs_the_engines_tls_transport(tmp_path: Path) -> None:
    path = _file(tmp_path, {"transport": "tls"})
    with pytest.raises(ConfigError) as err:
        load_engine_settings(path, ENV)
    msg = str(err.value)
    assert msg.startswith(f"{path}: trunks.pbx.register.transport: tls needs")
    assert "sip.tls is not set" in msg
    # the same from `dialplan validate --config` on a machine without the secrets
    with pytest.raises(ConfigError, match=r"trunks\.pbx\.register\.transport: .*sip\.tls"):
        load_engine_settings(path, {}, secrets=False)


def test_with_sip_tls_a_trunk_registers_over_tls_to_a_sip_or_sips_registrar(
    tmp_path: Path,
) -> None:
    from telephony_bot.sip.trunk_accounts import trunk_lines
    from tests.support.certs import make_server_certs

    pki = make_server_certs(tmp_path / "pki")
    tls = {"cert_file": str(pki.cert), "key_file": str(pki.key), "ca_file": str(pki.ca)}
    for registrar in ("sip:pbx.example.com:5061", "sips:pbx.example.com"):
        path = _file(tmp_path, {"transport": "tls", "registrar": registrar}, sip={"tls": tls})
        s = load_engine_settings(path, ENV)
        line = trunk_lines(s.trunks, ENV)["pbx"]
        # PJSIP opens a TLS connection to the registrar (checked against sip.tls.ca_file)
        assert line.registrar_uri == f"{registrar};transport=tls"
        scheme = registrar.split(":", 1)[0]
        assert line.call_uri("555") == f"{scheme}:555@{line.reg.domain};transport=tls"
        assert line.next_hop_port == 5061  # given, or TLS's default
        assert s.describe()["trunks"].endswith("over tls)")
