"""Admin flags on the command line: ports per worker under serve, no API beyond loopback
without a token, the token only from the config or the environment."""

from __future__ import annotations

import pytest

from telephony_bot import cli
from telephony_bot.errors import ConfigError


def _settings(argv: list[str]):  # noqa: ANN202
    return cli._engine_settings(cli.build_parser().parse_args(argv))


def test_admin_port_and_host_flags_override_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEPHONY_BOT_ADMIN_TOKEN", "tok")
    e = _settings(["worker", "--admin-port", "9100"])
    assert (e.admin.host, e.admin.port, e.admin.token.get_secret_value()) == (
        "127.0.0.1", 9100, "tok",
    )  # fmt: skip
    monkeypatch.setenv("TELEPHONY_BOT_ADMIN_PORT", "9100")
    assert _settings(["worker", "--no-admin"]).admin.port is None
    assert _settings(["serve", "--admin-host", "0.0.0.0"]).admin.host == "0.0.0.0"


def test_no_open_api_beyond_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TELEPHONY_BOT_ADMIN_TOKEN", raising=False)
    assert _settings(["worker", "--admin-port", "9100"]).admin.token is None  # loopback: ok
    with pytest.raises(ConfigError, match="needs a token"):
        _settings(["serve", "--admin-port", "9100", "--admin-host", "0.0.0.0"])


def test_workers_under_serve_get_loopback_ports_after_the_admin_port() -> None:
    assert cli._worker_admin_args(9100, 0) == ["--admin-host", "127.0.0.1", "--admin-port", "9101"]
    assert cli._worker_admin_args(9100, 2)[-1] == "9103"
    assert cli._worker_admin_args(None, 1) == ["--no-admin"]
