"""What the front door admits, as rendered for Kamailio from `trunks:` and `sip.admission`
(no processes, except `kamailio -c` on the rendered configuration)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from telephony_bot.config import AdmissionSettings, load_engine_settings
from telephony_bot.frontdoor import kamailio, rpc, trust
from telephony_bot.frontdoor.render import FrontDoorConfig, WorkerAddress, write


def _settings(tmp: Path, text: str):
    cfg = tmp / "engine.yaml"
    cfg.write_text(text)
    return load_engine_settings(cfg, env={})


def test_trunk_sources_go_to_the_address_file_tagged_with_their_trunk(tmp_path: Path) -> None:
    s = _settings(
        tmp_path,
        "trunks:\n"
        "  pbx: {allow: ['192.0.2.0/24', '198.51.100.7']}\n"
        "  carrier: {allow: ['203.0.113.0/28'], auth: {user: c, password_env: PW}}\n"
        "  outbound_only: {}\n",
    )
    t = trust.from_settings(s.trunks, s.sip.admission, 2, {})
    assert t.mode == "trunks" and [x.name for x in t.trunks] == ["pbx", "carrier"]
    lines = trust.address_file(t).splitlines()[1:]
    assert lines == [
        "1 192.0.2.0 24 0 pbx",
        "1 198.51.100.7 32 0 pbx",
        "2 203.0.113.0 28 0 carrier",  # its sources must also authenticate
    ]
    route = trust.admit_route(t)
    assert 'pv_proxy_authenticate("telephony-bot", "$env(PW)", "0")' in route
    assert '$au == "c" && allow_source_address("2") && $avp(peer_tag) == "carrier"' in route
    assert 'proxy_challenge("telephony-bot", "0")' in route


def test_without_trunks_only_private_networks_are_let_in_unless_allow_any() -> None:
    private = trust.FrontDoorTrust()
    lines = trust.address_file(private).splitlines()
    assert "3 127.0.0.0 8 0 private" in lines and "3 192.168.0.0 16 0 private" in lines
    assert 'allow_source_address("3")' in trust.admit_route(private)
    assert '$var(why) = "not_allowed"' in trust.admit_route(private)
    anyone = trust.FrontDoorTrust(allow_any=True)
    assert len(trust.address_file(anyone).splitlines()) == 1  # the header only
    assert "\treturn;" in trust.admit_route(anyone).splitlines()[-1]


def test_flood_limits_follow_the_admission_settings() -> None:
    a = AdmissionSettings(rate=15, per_source_rate=12, per_source_burst=10)
    t = trust.from_settings({}, a, 3, {})
    assert t.pike_density == 24 and t.global_rate == 45  # 12/s over pike's 2 s; 15/s × 3


def test_a_password_kept_in_a_file_is_read_by_kamailio_from_a_variable(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    s = _settings(
        tmp_path, f"trunks:\n  carrier:\n    auth: {{user: c, password_file: {secret}}}\n"
    )
    t = trust.from_settings(s.trunks, s.sip.admission, 1, {"carrier": "TB_PW_CARRIER"})
    route = trust.admit_route(t)
    assert "$env(TB_PW_CARRIER)" in route and "s3cret" not in route


def test_names_that_would_break_the_script_are_refused() -> None:
    bad = trust.FrontDoorTrust((trust.FrontTrunk("x", (), 'a"; exit; "', "r", "PW"),))
    with pytest.raises(ValueError, match="cannot go into"):
        trust.admit_route(bad)


@pytest.mark.skipif(shutil.which("kamailio") is None and not Path("/usr/sbin/kamailio").exists(),
                    reason="kamailio is not installed")  # fmt: skip
def test_kamailio_accepts_the_rendered_trust(tmp_path: Path) -> None:
    t = trust.FrontDoorTrust(
        (
            trust.FrontTrunk("pbx", ("127.0.0.1/32",)),
            trust.FrontTrunk("carrier", (), "carrier", "bots", "TRUNK_PW"),
        )
    )
    cfg = FrontDoorConfig("127.0.0.1", 5060, (WorkerAddress("127.0.0.1", 5061),), tmp_path, trust=t)
    path = write(cfg)
    kamailio.check_config(path)
    text = path.read_text()
    assert "sanity_check" in text and "pike_check_req" in text and "{{" not in text
    assert (tmp_path / "address.list").read_text().count("pbx") == 1


def test_the_front_doors_refusals_read_from_its_htable_become_prometheus_text() -> None:
    dump = [
        {"entry": 3, "size": 1, "slot": [{"name": "flood", "value": 974, "type": "int"}]},
        {"entry": 9, "size": 1, "slot": [{"name": "not_allowed", "value": 2, "type": "int"}]},
    ]
    counts = rpc.parse_refusals(dump)
    assert counts == {"flood": 974, "not_allowed": 2}
    text = rpc.prometheus_refusals(counts).decode()
    assert 'telephony_bot_frontdoor_invites_refused_total{reason="flood"} 974' in text
    assert "# TYPE telephony_bot_frontdoor_invites_refused_total counter" in text
