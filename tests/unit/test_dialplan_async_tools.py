"""`async: true` on a tool and the route's `tool_window_ms`: what a call is given, and the
mistakes an admin can make, reported with file and line."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from telephony_bot import app
from telephony_bot.dialplan.loader import json_schema, load
from telephony_bot.dialplan.router import CallInfo
from telephony_bot.errors import DialplanError

PLAN = """
version: 1
defaults:
  provider: echo
  tools: [track_parcel, opening_hours]
tools:
  track_parcel:
    python: "tests.support.tools:track_parcel"
    async: true
    timeout_s: 300
    parameters: {type: object, properties: {order: {type: string}}}
  opening_hours:
    python: "tests.support.tools:opening_hours"
routes:
  - name: patient
    match: {number: "+4930100"}
    tool_window_ms: 3000
  - name: default
    match: {number: "+4930200"}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def _setup(tmp_path: Path, called: str) -> app.CallSetup:
    call = CallInfo(called, "+4930123", {}, datetime(2026, 11, 25, 10, tzinfo=UTC))
    setup, _ = app.for_call(load([_write(tmp_path, PLAN)]), call)
    assert setup is not None
    return setup


def test_an_async_tool_reaches_the_call_as_async_with_its_long_timeout(tmp_path: Path) -> None:
    tools = _setup(tmp_path, "+4930200").options.tools
    assert tools["track_parcel"].is_async and tools["track_parcel"].timeout_s == 300
    assert not tools["opening_hours"].is_async


def test_the_tool_window_is_five_seconds_unless_the_route_says_otherwise(
    tmp_path: Path,
) -> None:
    assert _setup(tmp_path, "+4930200").options.tool_window_ms == 5000
    assert _setup(tmp_path, "+4930100").options.tool_window_ms == 3000


def _problems(path: Path) -> list[str]:
    with pytest.raises(DialplanError) as info:
        load(path, env={})
    return [str(i) for i in info.value.issues]


def test_long_timeouts_need_async_and_a_builtin_cannot_be_async(tmp_path: Path) -> None:
    f = _write(
        tmp_path,
        """
        version: 1
        tools:
          slow:
            python: "x.tools:slow"
            timeout_s: 300
          bye:
            builtin: hangup
            async: true
          slower:
            python: "x.tools:slower"
            async: true
            timeout_s: 900
          alert:
            mqtt: {topic: alerts, response_timeout_s: 300}
          alert_async:
            async: true
            timeout_s: 310
            mqtt: {topic: alerts, response_timeout_s: 300}
        defaults:
          provider: local
          tool_window_ms: 100
        """,
    )
    assert _problems(f) == [
        f"{f}:5:16 tools.slow.timeout_s: at most 120 s; a tool that may take longer must be "
        "async (async: true allows up to 600 s)",
        f"{f}:7:14 tools.bye.builtin: builtin hangup answers at once and cannot be async: "
        "async applies to http, mqtt and python tools",
        f"{f}:12:16 tools.slower.timeout_s: expected less than or equal to 600, got 900",
        f"{f}:14:11 tools.alert.mqtt: response_timeout_s is at most 120 s; a tool that may "
        "wait longer must be async (async: true allows up to 600 s)",
        f"{f}:21:19 defaults.tool_window_ms: expected greater than or equal to 500, got 100",
    ]


def test_the_json_schema_offers_async_under_its_own_name() -> None:
    tool = json.loads(json.dumps(json_schema()))["$defs"]["ToolDef"]["properties"]
    assert tool["async"]["type"] == "boolean" and "is_async" not in tool
