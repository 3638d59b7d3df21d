"""Engine settings: file + environment, clear errors, secrets that never print."""

from __future__ import annotations

from pathlib import Path

import pytest

from telephony_bot import log
from telephony_bot.cli import main
from telephony_bot.config import load_engine_settings
from telephony_bot.errors import ConfigError


def test_file_then_environment_with_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(
        "mqtt:\n  host: broker.local\n  port: 8883\n  tls: true\n  password: s3cret\n"
        "cdr:\n  path: " + str(tmp_path / "cdr.jsonl") + "\n"
        "outbound:\n  trunk: sip:10.0.0.5:5060\n  allow: ['+4930*']\n"
    )
    s = load_engine_settings(cfg, {"TELEPHONY_BOT_MQTT_PORT": "8884",
                                   "TELEPHONY_BOT_ADMIN_TOKEN": "tok-123"})  # fmt: skip
    assert s.mqtt is not None and s.mqtt.host == "broker.local" and s.mqtt.port == 8884
    assert s.mqtt.prefix == "telephony-bot" and s.mqtt.node  # hostname by default
    assert s.mqtt.tls and s.mqtt.keepalive == 30
    assert s.outbound.allow == ("+4930*",) and s.admin.host == "127.0.0.1"
    assert s.admin.token is not None and s.admin.token.get_secret_value() == "tok-123"
    text = repr(s) + str(s.describe())
    assert "s3cret" not in text and "tok-123" not in text


def test_mqtt_is_off_unless_configured() -> None:
    assert load_engine_settings(None, {}).mqtt is None
    assert load_engine_settings(None, {"TELEPHONY_BOT_MQTT_PASSWORD": "x"}).mqtt is None
    s = load_engine_settings(None, {"TELEPHONY_BOT_MQTT_HOST": "127.0.0.1",
                                    "TELEPHONY_BOT_MQTT_COMMANDS": "say,hangup"})  # fmt: skip
    assert s.mqtt is not None and s.mqtt.commands == ("say", "hangup")


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("mqtt:\n  port: 99999\n", "mqtt.port: Input should be less than or equal to 65535"),
        ("mqtt:\n  prefix: 'a/#'\n", "mqtt.prefix: must be non-empty, without '+', '#'"),
        ("mqtt:\n  colour: red\n", "mqtt.colour: unknown setting"),
        ("mqtt:\n  commands: [fly]\n", "unknown verbs ['fly']"),
        ("mqtt:\n  tls: true\n  ca_file: /nope/ca.pem\n", "mqtt.ca_file: no such file"),
        ("outbound:\n  trunk: 'sip:1@2.3.4.5'\n", "outbound.trunk: must be a SIP URI without"),
        ("cdr:\n  path: /nope/dir/cdr.jsonl\n", "cdr.path: directory /nope/dir does not exist"),
        ("- a\n", "the top level must be a mapping"),
        ("mqtt: [\n", "not valid YAML"),
    ],
)
def test_bad_settings_say_file_field_and_why(tmp_path: Path, yaml_text: str, message: str) -> None:
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(ConfigError) as exc:
        load_engine_settings(cfg, {})
    assert str(cfg) in str(exc.value) and message in str(exc.value)


def test_a_bad_config_stops_the_worker_at_start_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "engine.yaml"
    cfg.write_text("admin:\n  port: -1\n")
    assert main(["worker", "--provider", "echo", "--config", str(cfg)]) == 2
    assert "admin.port" in capsys.readouterr().err


def test_secret_named_log_fields_are_masked(capfd: pytest.CaptureFixture[str]) -> None:
    log.setup("json", "info")
    log.get("t").info("x", password="pw-1", admin_token="tok-2", api_key="k-3", user="bob")
    err = capfd.readouterr().err
    assert "pw-1" not in err and "tok-2" not in err and "k-3" not in err and "bob" in err


def test_serve_validates_the_config_before_starting_workers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "engine.yaml"
    cfg.write_text("outbound:\n  trunk: http://x\n")
    assert main(["serve", "--provider", "echo", "--config", str(cfg)]) == 2
    assert "outbound.trunk" in capsys.readouterr().err
