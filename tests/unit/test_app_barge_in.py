"""What a route's `barge_in` gives a call: the admin's settings, unless the provider's
audio cannot be barged in on (the echo provider plays the caller's own voice back)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from telephony_bot import app
from telephony_bot.dialplan.loader import load
from telephony_bot.dialplan.router import CallInfo
from telephony_bot.errors import ConfigError
from telephony_bot.session.turns import BargeInSettings

PLAN = """
version: 1
providers:
  offline: {type: local}
defaults:
  provider: offline
  instructions: "You answer for Example Clinic."
routes:
  - name: patient
    match: {number: "+4930100"}
    barge_in: {min_interrupt_ms: 300}
  - name: default
    match: {number: "+4930200"}
  - name: diagnostics
    match: {number: "+4930300"}
    provider: echo
    barge_in: {enabled: true}
"""


def _barge_in(tmp_path: Path, called: str, plan: str = PLAN) -> BargeInSettings:
    path = tmp_path / "plan.yaml"
    path.write_text(plan)
    call = CallInfo(called, "+4930123", {}, datetime(2026, 11, 25, 10, tzinfo=UTC))
    setup, _ = app.for_call(load([path]), call)
    assert setup is not None
    return setup.options.barge_in


def test_a_route_sets_how_long_the_caller_must_talk_over_the_bot(tmp_path: Path) -> None:
    s = _barge_in(tmp_path, "+4930100")
    assert s.enabled and s.min_interrupt_ms == 300


def test_without_a_setting_the_route_gets_the_policys_own_default(tmp_path: Path) -> None:
    s = _barge_in(tmp_path, "+4930200")
    assert s.enabled and s.min_interrupt_ms == BargeInSettings().min_interrupt_ms


def test_the_echo_provider_is_never_barged_in_on_whatever_the_route_says(
    tmp_path: Path,
) -> None:
    assert not _barge_in(tmp_path, "+4930300").enabled


@pytest.mark.parametrize("ms", [39, 2001])
def test_a_plan_outside_the_policys_range_is_refused(tmp_path: Path, ms: int) -> None:
    plan = PLAN.replace("min_interrupt_ms: 300", f"min_interrupt_ms: {ms}")
    with pytest.raises(ConfigError, match="min_interrupt_ms"):
        _barge_in(tmp_path, "+4930100", plan)
