"""What `serve` and `worker` decide at start from a plan: which routes can take calls here
(a hosted model needs its key, the offline engine none) and whether the offline engine must
be started (by the provider's type, whatever the plan calls it)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from telephony_bot import app
from telephony_bot.dialplan.loader import LoadedPlan, load
from telephony_bot.dialplan.router import CallInfo
from telephony_bot.errors import ConfigError, ProviderError
from telephony_bot.providers.base import SessionConfig

KEY = "TB_TEST_CHECK_KEY"
PLAN = f"""
version: 1
providers:
  realtime: {{type: openai, model: gpt-realtime, api_key_env: {KEY}}}
  offline: {{type: local}}
defaults:
  provider: realtime
  instructions: "You answer for Example Clinic."
routes:
  - name: day
    match: {{number: "+4930100"}}
  - name: night
    match: {{number: "+4930200"}}
    provider: offline
  - name: day-with-fallback
    match: {{number: "+4930300"}}
    provider: [realtime, offline]
"""


def _plan(tmp_path: Path, text: str = PLAN) -> LoadedPlan:
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    return load([path])


def test_without_the_key_only_the_routes_that_need_it_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY, raising=False)
    loaded = _plan(tmp_path)
    idle = app.check(loaded)  # no error: the offline routes answer
    assert idle == [
        f"route 'day' cannot take calls (provider openai: set the environment variable {KEY}): "
        "its callers get on_error"
    ]  # 'day-with-fallback' falls over to the offline engine
    monkeypatch.setenv(KEY, "sk-test")
    assert app.check(loaded) == []


async def test_a_call_to_a_route_without_its_key_is_refused_by_the_provider_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its provider refuses to connect, without a retry: the session gives the call to the
    route's next provider, else on_error (tests/unit/test_on_error.py)."""
    monkeypatch.delenv(KEY, raising=False)
    call = CallInfo("+4930100", "+4930999", {}, datetime(2026, 11, 25, 10, tzinfo=UTC))
    setup, _ = app.for_call(_plan(tmp_path), call)
    assert setup is not None
    with pytest.raises(ProviderError) as err:
        await setup.provider.connect(SessionConfig())
    assert not err.value.retryable and KEY in str(err.value)


def test_a_plan_no_route_of_which_can_run_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY, raising=False)
    only_hosted = PLAN.split("  - name: night")[0]
    with pytest.raises(ConfigError, match=f"no route can take calls: route 'day' .*{KEY}"):
        app.check(_plan(tmp_path, only_hosted))
    with pytest.raises(ConfigError, match="no route can take calls"):
        app.check(_plan(tmp_path), "realtime")  # --provider realtime: every route needs it


def test_the_offline_engine_is_started_for_a_provider_of_type_local_whatever_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY, "sk-test")
    loaded = _plan(tmp_path)
    assert app.needs_local_engine(loaded)
    assert app.needs_local_engine(loaded, "offline")  # --provider offline (type local)
    assert app.needs_local_engine(loaded, "local")
    assert not app.needs_local_engine(loaded, "echo")
    assert not app.needs_local_engine(loaded, "realtime")
    fallback_only = PLAN.replace("    provider: offline\n", "")  # night on realtime too
    assert app.needs_local_engine(_plan(tmp_path, fallback_only))  # day-with-fallback's
