"""Admission policy (pure): who may start a call and how fast; digest auth of INVITEs; the
trunk config it is built from."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from telephony_bot.admission import (
    Admission,
    Credentials,
    Limits,
    Load,
    Nonces,
    TrunkRule,
    digest_params,
    digest_response,
    parse_networks,
    setup_budget,
)
from telephony_bot.config import load_engine_settings
from telephony_bot.errors import ConfigError
from telephony_bot.trunk_config import trunk_rules


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


IDLE = Load(calls=0, max_calls=4)


def _adm(trunks=(), clock=None, **limits) -> Admission:
    c = clock or Clock()
    return Admission(trunks, Limits(**limits), max_calls=4, clock=c, wall=c)


def test_without_trunks_loopback_and_private_sources_are_taken_and_the_internet_is_refused():
    a = _adm()
    for ip in ("127.0.0.2", "10.1.2.3", "192.168.1.20", "172.16.0.9", "::1", "fd00::5"):
        assert a.check(ip, "INVITE", {}, IDLE).admitted, ip
    v = a.check("1.2.3.4", "INVITE", {}, IDLE)
    assert (v.status, v.why) == (403, "not_allowed")
    assert _adm(allow_any=True).check("1.2.3.4", "INVITE", {}, IDLE).admitted


def test_a_trunk_allow_list_takes_its_sources_only_and_names_the_trunk():
    a = _adm([TrunkRule("pbx", parse_networks(["127.0.0.1/32"]))])
    ok = a.check("127.0.0.1", "INVITE", {}, IDLE)
    assert ok.admitted and ok.trunk == "pbx"
    no = a.check("127.0.0.2", "INVITE", {}, IDLE)  # loopback, but not on the list
    assert (no.status, no.reason, no.why) == (403, "Forbidden", "not_allowed")


def test_a_call_sent_to_a_registered_trunks_contact_is_taken_as_that_trunk() -> None:
    # A registrar on the internet sends the calls for our extension to the Contact we
    # registered, whose line token only it knows: no allow list needed, the rates still apply.
    a = _adm(per_source_rate=1, per_source_burst=1)
    assert a.check("1.2.3.4", "INVITE", {}, IDLE).why == "not_allowed"
    v = a.check("1.2.3.4", "INVITE", {}, IDLE, line_trunk="pbx")
    assert v.admitted and v.trunk == "pbx"
    assert a.check("1.2.3.4", "INVITE", {}, IDLE, line_trunk="pbx").why == "rate_source"


def _authorization(challenge: str, user: str, password: str, uri: str = "sip:100@x") -> str:
    p = digest_params(challenge)
    p.update(username=user, uri=uri, nc="00000001", cnonce="abc", qop="auth")
    p["response"] = digest_response(p, password, "INVITE")
    fields = ", ".join(f'{k}="{v}"' for k, v in p.items() if k not in ("algorithm", "stale"))
    return "Digest " + fields


def test_digest_auth_challenges_admits_the_right_password_and_refuses_a_wrong_one():
    clock = Clock()
    trunk = TrunkRule("carrier", (), Credentials("carrier", "s3cret", "bots"))
    a = _adm([trunk], clock)
    first = a.check("1.2.3.4", "INVITE", {}, IDLE)
    assert (first.status, first.why) == (401, "auth_required")
    name, challenge = first.headers[0]
    assert name == "WWW-Authenticate" and 'realm="bots"' in challenge and 'qop="auth"' in challenge
    good = a.check(
        "1.2.3.4", "INVITE", {"Authorization": _authorization(challenge, "carrier", "s3cret")}, IDLE
    )
    assert good.admitted and good.trunk == "carrier"
    bad = a.check(
        "1.2.3.4", "INVITE", {"Authorization": _authorization(challenge, "carrier", "guess")}, IDLE
    )
    assert (bad.status, bad.why) == (403, "auth_failed")
    clock.t += 301  # the nonce has expired: a fresh challenge, marked stale
    stale = a.check(
        "1.2.3.4", "INVITE", {"Authorization": _authorization(challenge, "carrier", "s3cret")}, IDLE
    )
    assert stale.status == 401 and "stale=true" in stale.headers[0][1]


def test_a_nonce_signed_by_another_process_is_not_fresh():
    assert not Nonces(b"a" * 32).fresh(Nonces(b"b" * 32).make(100.0), 100.0)
    assert Nonces(b"a" * 32).fresh(Nonces(b"a" * 32).make(100.0), 150.0)


def test_one_source_over_its_rate_gets_503_with_retry_after_and_others_still_get_in():
    clock = Clock()
    a = _adm(clock=clock, per_source_rate=2, per_source_burst=3, rate=100, burst=100)
    assert all(a.check("10.0.0.1", "INVITE", {}, IDLE).admitted for _ in range(3))
    v = a.check("10.0.0.1", "INVITE", {}, IDLE)
    assert (v.status, v.why) == (503, "rate_source") and ("Retry-After", "5") in v.headers
    assert a.check("10.0.0.2", "INVITE", {}, IDLE).admitted
    clock.t += 0.5  # one token back
    assert a.check("10.0.0.1", "INVITE", {}, IDLE).admitted


def test_all_sources_together_are_held_to_the_global_rate():
    a = _adm(rate=1, burst=2)
    assert a.check("10.0.0.1", "INVITE", {}, IDLE).admitted
    assert a.check("10.0.0.2", "INVITE", {}, IDLE).admitted
    assert a.check("10.0.0.3", "INVITE", {}, IDLE).why == "rate_global"


def test_the_setup_budget_keeps_pjsip_io_queue_handles_from_running_out():
    # 64 handles - 24 reserved - 2 per live call, two sockets per setup, reusable after 0.5 s
    assert setup_budget(4) == 16 and setup_budget(1) == 19
    clock = Clock()
    a = _adm(clock=clock, rate=1000, burst=1000, allow_any=True)
    for i in range(16):
        assert a.check(f"10.0.1.{i}", "INVITE", {}, IDLE).admitted
    assert a.check("10.0.2.1", "INVITE", {}, IDLE).why == "setup_budget"
    clock.t += 0.51
    assert a.check("10.0.2.1", "INVITE", {}, IDLE).admitted


def test_a_full_worker_is_busy_a_draining_one_unavailable():
    a = _adm()
    assert a.check("10.0.0.1", "INVITE", {}, Load(4, 4)).status == 486
    v = a.check("10.0.0.1", "INVITE", {}, Load(0, 4, draining=True))
    assert (v.status, v.why) == (503, "draining") and v.headers == (("Retry-After", "5"),)


def test_a_source_with_unacked_calls_is_refused_unless_it_is_a_trunk():
    a = _adm([TrunkRule("pbx", parse_networks(["10.0.0.0/8"]))])
    v = a.check("10.0.0.1", "INVITE", {}, Load(2, 4, unacked_from_source=2))
    assert v.admitted  # a trunk: its PBX sends every call from one address
    b = _adm()
    v = b.check("10.0.0.1", "INVITE", {}, Load(2, 4, unacked_from_source=2))
    assert (v.status, v.why) == (503, "unacked_source")
    assert b.check("10.0.0.1", "INVITE", {}, Load(2, 4, unacked_from_source=1)).admitted


def test_the_front_door_is_trusted_past_allow_lists_and_per_source_limits():
    proxy = ipaddress.ip_address("127.0.0.1")
    a = _adm(
        [TrunkRule("pbx", parse_networks(["192.0.2.0/24"]))],
        per_source_rate=1,
        per_source_burst=1,
        trusted_proxies=(proxy,),
    )
    assert all(a.check("127.0.0.1", "INVITE", {}, IDLE).admitted for _ in range(5))
    assert a.check("127.0.0.2", "INVITE", {}, IDLE).why == "not_allowed"
    # the caller behind it (its address passed on) still cannot hold lines with unACKed calls
    busy_caller = Load(3, 4, unacked_from_source=2)
    assert a.check("127.0.0.1", "INVITE", {}, busy_caller).why == "unacked_source"
    via_trunk = a.check("127.0.0.1", "INVITE", {"X-Telephony-Bot-Trunk": "pbx"}, busy_caller)
    assert via_trunk.admitted and via_trunk.trunk == "pbx"


def test_trunks_come_from_the_config_with_their_secrets_from_the_environment(tmp_path: Path):
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(
        "trunks:\n"
        "  pbx: {allow: ['127.0.0.1/32']}\n"
        "  carrier:\n"
        "    auth: {user: carrier, password_env: TRUNK_PW}\n"
        "sip:\n  admission: {rate: 7, allow_any: false}\n"
    )
    settings = load_engine_settings(cfg, env={})
    assert settings.sip.admission.rate == 7
    with pytest.raises(ConfigError, match="trunks.carrier.auth: environment variable TRUNK_PW"):
        trunk_rules(settings.trunks, env={})
    rules = trunk_rules(settings.trunks, env={"TRUNK_PW": "pw"})
    assert [r.name for r in rules] == ["pbx", "carrier"]
    assert rules[1].auth is not None and rules[1].auth.password == "pw"
    assert "pw" not in repr(rules)  # never printed


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("trunks:\n  pbx: {allow: ['10.0.0.0/33']}\n", "trunks.pbx.allow: '10.0.0.0/33' is not"),
        (
            "trunks:\n  pbx: {auth: {user: u, password_env: A, password_file: /x}}\n",
            "trunks.pbx.auth: give exactly one of password_env or password_file",
        ),
        ("trunks:\n  'bad name': {allow: []}\n", "trunk name 'bad name'"),
        ("sip:\n  admission: {trusted_proxies: [front]}\n", "'front' is not an IP address"),
    ],
)
def test_bad_trunk_and_admission_settings_name_the_file_and_field(
    tmp_path: Path, yaml_text: str, message: str
) -> None:
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(ConfigError, match="engine.yaml") as err:
        load_engine_settings(cfg, env={})
    assert message in str(err.value)
