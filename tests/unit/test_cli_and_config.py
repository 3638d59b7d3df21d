from __future__ import annotations

import subprocess
import sys

import pytest

from telephony_bot.cli import main
from telephony_bot.config import SipSettings
from telephony_bot.errors import ConfigError


def test_more_than_four_calls_per_worker_is_refused_with_advice() -> None:
    with pytest.raises(ConfigError, match="--workers"):
        SipSettings(max_calls=8)


def test_bad_host_and_port_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="IP address"):
        SipSettings(host="not-an-ip")
    with pytest.raises(ConfigError, match="1..65535"):
        SipSettings(port=70000)


def test_unknown_provider_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "--provider", "nope", "--sip-port", "1"]) == 2
    assert "unknown provider 'nope'" in capsys.readouterr().err


def test_bad_dialplan_is_a_usage_error_naming_the_file(tmp_path, capsys) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("version: 1\ndefaults:\n  provider: echo\n  colour: blue\n")
    assert main(["serve", "--dialplan", str(plan)]) == 2
    err = capsys.readouterr().err
    assert "plan.yaml" in err and "colour" in err


def test_usage_errors_exit_2_and_help_exits_0() -> None:
    cmd = [sys.executable, "-m", "telephony_bot.cli"]
    assert subprocess.run([*cmd, "serve", "--workers", "x"], capture_output=True).returncode == 2
    for sub in ("serve", "worker", "dial"):
        res = subprocess.run([*cmd, sub, "--help"], capture_output=True, text=True)
        assert res.returncode == 0 and "--" in res.stdout
