"""The front door's configuration, state parsing and log forwarding (no processes, except
`kamailio -c` to check that a rendered configuration is one Kamailio accepts)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from telephony_bot.errors import ConfigError
from telephony_bot.frontdoor import kamailio, rpc
from telephony_bot.frontdoor.render import (
    FrontDoorConfig,
    WorkerAddress,
    render_cfg,
    render_dispatcher_list,
    render_template,
    write,
)
from telephony_bot.frontdoor.service import FrontDoor

REMOTE = tuple(WorkerAddress.parse(w) for w in ("10.0.0.5:5061", "10.0.0.5:5062", "10.0.0.6:5061"))


def _cfg(tmp: Path, **kw: object) -> FrontDoorConfig:
    args: dict[str, object] = {
        "listen_host": "127.0.0.1",
        "listen_port": 5060,
        "workers": REMOTE,
        "run_dir": tmp,
    }
    args.update(kw)
    return FrontDoorConfig(**args)  # type: ignore[arg-type]


def test_worker_addresses_parse_with_transport_and_ipv6() -> None:
    assert WorkerAddress.parse("10.0.0.5:5061").uri == "sip:10.0.0.5:5061"
    assert WorkerAddress.parse("bot2.example.net:5070/tcp").uri == (
        "sip:bot2.example.net:5070;transport=tcp"
    )
    assert WorkerAddress.parse("[fd00::7]:5061").uri == "sip:[fd00::7]:5061"
    for bad in ("10.0.0.5", "10.0.0.5:0", "10.0.0.5:5061/sctp", "a b:1"):
        with pytest.raises(ConfigError):
            WorkerAddress.parse(bad)


def test_dispatcher_list_gives_every_worker_a_unique_id_and_the_four_call_maximum(
    tmp_path: Path,
) -> None:
    lines = render_dispatcher_list(_cfg(tmp_path)).splitlines()[1:]
    assert lines == [
        "1 sip:10.0.0.5:5061 8 0 duid=w0;maxload=4",
        "1 sip:10.0.0.5:5062 8 0 duid=w1;maxload=4",
        "1 sip:10.0.0.6:5061 8 0 duid=w2;maxload=4",
    ]


def test_config_listens_on_the_public_port_and_points_at_its_run_dir(tmp_path: Path) -> None:
    text = render_cfg(_cfg(tmp_path, transports=("udp",), ping_interval_s=5))
    assert "listen=udp:127.0.0.1:5060" in text and "listen=tcp" not in text
    assert "disable_tcp=yes" in text
    assert f'"list_file", "{tmp_path}/dispatcher.list"' in text
    assert f'"binrpc", "unix:{tmp_path}/kamailio.ctl"' in text
    assert '"ds_ping_interval", 5)' in text
    assert 'ds_select_dst("1", "10")' in text  # call-load distribution
    assert "{{" not in text
    # every local address: Kamailio binds each itself (never 0.0.0.0 in Via/Record-Route)
    anywhere = render_cfg(_cfg(tmp_path, listen_host="0.0.0.0"))
    assert "port=5060" in anywhere and "listen=" not in anywhere


def test_template_placeholders_must_match_exactly() -> None:
    assert render_template("a {{x}} b", {"x": "1"}) == "a 1 b"
    with pytest.raises(ConfigError, match="missing"):
        render_template("a {{x}} {{y}}", {"x": "1"})
    with pytest.raises(ConfigError, match="unused"):
        render_template("a {{x}}", {"x": "1", "z": "2"})


def test_bad_front_door_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least one worker"):
        render_cfg(_cfg(tmp_path, workers=()))
    with pytest.raises(ConfigError, match="twice"):
        render_cfg(_cfg(tmp_path, workers=(REMOTE[0], REMOTE[0])))


@pytest.mark.skipif(shutil.which("kamailio") is None and not Path("/usr/sbin/kamailio").exists(),
                    reason="kamailio is not installed")  # fmt: skip
def test_kamailio_accepts_the_rendered_config_for_workers_on_other_machines(
    tmp_path: Path,
) -> None:
    path = write(_cfg(tmp_path, listen_host="127.0.0.1", listen_port=15999))
    kamailio.check_config(path)  # raises ConfigError with Kamailio's complaint


def test_missing_kamailio_is_a_clear_error_naming_the_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kamailio.shutil, "which", lambda _name: None)
    monkeypatch.setattr(kamailio, "_SEARCH", ("/nonexistent",))
    with pytest.raises(ConfigError, match="Debian package `kamailio`.*--front-door none"):
        kamailio.binary()


LIST_REPLY = {
    "NRSETS": 1,
    "RECORDS": [
        {
            "SET": {
                "ID": 1,
                "TARGETS": [
                    {
                        "DEST": {
                            "URI": "sip:127.0.0.1:5062",
                            "FLAGS": "IP",
                            "ATTRS": {"DUID": "w1", "MAXLOAD": 4},
                            "LATENCY": {"AVG": 0, "TIMEOUT": 3},
                            "RUNTIME": {"DLGLOAD": 0},
                        }
                    },
                    {
                        "DEST": {
                            "URI": "sip:127.0.0.1:5061",
                            "FLAGS": "AP",
                            "ATTRS": {"DUID": "w0", "MAXLOAD": 4},
                            "LATENCY": {"AVG": 0.5, "TIMEOUT": 0},
                            "RUNTIME": {"DLGLOAD": 3},
                        }
                    },
                ],
            }
        }
    ],
}


def test_dispatcher_state_is_read_per_worker_in_worker_order() -> None:
    workers = rpc.parse_dispatcher_list(LIST_REPLY)
    assert [(w.duid, w.state, w.load, w.maxload) for w in workers] == [
        ("w0", "active", 3, 4),
        ("w1", "inactive", 0, 4),
    ]
    table = rpc.status_table(workers)
    assert "w1" in table and "inactive" in table
    assert table.splitlines()[-1] == "1/2 workers active; 3 calls; capacity 4"


def test_status_without_a_running_front_door_says_so(tmp_path: Path) -> None:
    with pytest.raises(rpc.FrontDoorUnavailableError, match="no front door control socket"):
        rpc.dispatcher_list(tmp_path)


def test_state_changes_and_kamailio_lines_become_log_lines(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from telephony_bot import log

    log.setup("json")
    door = FrontDoor(_cfg(tmp_path, workers=REMOTE[:2]))
    workers = rpc.parse_dispatcher_list(LIST_REPLY)
    door._update(workers)
    door._update(workers)  # no change: nothing more
    door.on_output(" 3(17677) WARNING: <script>: front door: every worker is full; 486 for x\n")
    door.on_output("Listening on \n")
    err = capfd.readouterr().err
    assert err.count('"front door ready"') == 1
    assert err.count('"worker state changed"') == 1  # w1 inactive; w0 active is no news
    assert '"state": "inactive"' in err and '"worker": 1' in err
    assert '"message": "front door: every worker is full; 486 for x"' in err
    assert '"level": "warning"' in err
    assert '"message": "Listening on"' in err


def test_serve_refuses_worker_ports_that_overlap_the_public_port(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from telephony_bot.cli import main

    argv = ["serve", "--workers", "2", "--provider", "echo", "--sip-port", "5060"]
    assert main([*argv, "--worker-port", "5059"]) == 2
    assert "overlaps the front door" in capsys.readouterr().err


def test_serve_with_several_workers_and_no_kamailio_names_the_package_before_starting_any(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from telephony_bot.cli import main

    monkeypatch.setattr(kamailio.shutil, "which", lambda _name: None)
    monkeypatch.setattr(kamailio, "_SEARCH", ("/nonexistent",))
    argv = ["serve", "--workers", "2", "--provider", "echo", "--run-dir", str(tmp_path / "r")]
    assert main(argv) == 2
    assert "Debian package `kamailio`" in capsys.readouterr().err


def test_the_trunk_registration_block_relays_only_to_the_trunks_registrars(tmp_path: Path) -> None:
    from telephony_bot.frontdoor.render import TrunkRelay
    from telephony_bot.trunk_config import TrunkRegister

    # without trunks: every REGISTER is refused, no keepalive runs
    text = render_cfg(_cfg(tmp_path))
    assert '=~ "^$"' in text and "rtimer" not in text
    pbx = TrunkRegister(registrar="sip:PBX.example.com:5070", user="2001", password_env="X",
                        keepalive_s=20)  # fmt: skip
    provider = TrunkRegister(registrar="sip:sip.provider.example", user="49301", password_env="Y",
                             transport="tcp", outbound_proxy="sip:10.1.1.1:5060;lr")  # fmt: skip
    relays = (TrunkRelay.of("pbx", pbx), TrunkRelay.of("provider", provider))
    assert relays[1].keepalive == "sip:10.1.1.1:5060;transport=tcp"  # the next hop
    text = render_cfg(_cfg(tmp_path, trunks=relays))
    assert '=~ "^(pbx[.]example[.]com|sip[.]provider[.]example)$"' in text
    assert "interval=15;" in text  # the shortest keepalive of the trunks
    assert '$uac_req(ruri) = "sip:PBX.example.com:5070";' in text
    assert '$uac_req(ruri) = "sip:10.1.1.1:5060;transport=tcp";' in text
    if shutil.which("kamailio") or Path("/usr/sbin/kamailio").exists():
        kamailio.check_config(write(_cfg(tmp_path, trunks=relays, listen_port=15998)))


def _trunk_config(tmp: Path) -> Path:
    path = tmp / "engine.yaml"
    path.write_text(
        "trunks:\n  pbx:\n    register:\n      registrar: sip:pbx.example.com\n"
        "      user: '2001'\n      password_env: PBX_PASSWORD\n"
    )
    return path


def test_serve_lets_worker_0_alone_register_naming_the_front_door(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from telephony_bot import cli

    monkeypatch.setenv("PBX_PASSWORD", "pw")
    seen: list[list[tuple[str, ...]]] = []
    monkeypatch.setattr(
        cli, "_supervise", lambda specs, *_a: seen.append([s.argv for s in specs]) or 0
    )
    base = [
        "serve",
        "--workers",
        "2",
        "--provider",
        "echo",
        "--config",
        str(_trunk_config(tmp_path)),
    ]

    def flags(argv: tuple[str, ...]) -> tuple[str | None, bool]:
        address = (
            argv[argv.index("--front-door-address") + 1] if "--front-door-address" in argv else None
        )
        return address, "--no-register" in argv

    # workers here, the front door on another machine; another machine registers
    assert (
        cli.main([*base, "--front-door", "none", "--front-door-address", "203.0.113.10:5060"]) == 0
    )
    assert [flags(a) for a in seen[-1]] == [
        ("203.0.113.10:5060", False),
        ("203.0.113.10:5060", True),
    ]
    assert cli.main([*base, "--front-door", "none", "--front-door-address", "203.0.113.10:5060",
                     "--no-register"]) == 0  # fmt: skip
    assert [flags(a) for a in seen[-1]] == [
        ("203.0.113.10:5060", True),
        ("203.0.113.10:5060", True),
    ]
    # no front door at all: worker 0 registers for itself
    assert cli.main([*base, "--front-door", "none", "--sip-host", "127.0.0.1"]) == 0
    assert [flags(a) for a in seen[-1]] == [(None, False), (None, True)]


def test_frontdoor_render_takes_the_trunks_from_the_engine_config_without_their_secrets(
    tmp_path: Path,
) -> None:
    from telephony_bot.cli import main

    out = tmp_path / "out"
    argv = ["frontdoor", "render", "--worker", "10.0.0.5:5061", "--out", str(out),
            "--config", str(_trunk_config(tmp_path))]  # fmt: skip
    assert main(argv) == 0  # PBX_PASSWORD is not set here: not needed
    text = (out / "kamailio.cfg").read_text()
    assert '=~ "^(pbx[.]example[.]com)$"' in text
    assert '$uac_req(ruri) = "sip:pbx.example.com";' in text
