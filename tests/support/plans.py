"""Dialplans for tests whose model is the scripted realtime server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.realtime_server import ScriptedRealtimeServer

KEY_ENV = "TB_TEST_REALTIME_KEY"  # the variable the plan names for the (fake) API key

LOOKUP_TOOL = {
    "python": "tests.support.tools:slow_lookup",
    "description": "Free appointment slots on a day",
    "parameters": {
        "type": "object",
        "properties": {"day": {"type": "string"}},
        "required": ["day"],
    },
}


def model_of(server: ScriptedRealtimeServer) -> str:
    """The model name a plan gives for `server` (its dialect's)."""
    return "gpt-4o-realtime-preview-2024-12-17" if server.dialect == "preview" else "gpt-realtime"


def scripted_plan(
    tmp: Path,
    server: ScriptedRealtimeServer,
    routes: list[dict[str, Any]] | None = None,
    **defaults: object,
) -> Path:
    """A plan whose defaults put every call on `server` (its dialect's model), with the
    `lookup` tool defined; `defaults` override or add default fields."""
    model = model_of(server)
    d: dict[str, Any] = {
        "provider": "openai",
        "instructions": "You are a test agent.",
        "voice": "alloy",
        "greeting": "",
        "openai": {
            "model": model,
            "dialect": server.dialect,
            "base_url": server.url,
            "api_key_env": KEY_ENV,
        },
    }
    d.update(defaults)
    plan: dict[str, Any] = {"version": 1, "defaults": d, "tools": {"lookup": LOOKUP_TOOL}}
    if routes is not None:
        plan["routes"] = routes
    path = tmp / "plan.yaml"
    path.write_text(json.dumps(plan))  # JSON is YAML
    return path


def fallback_plan(
    tmp: Path, main: ScriptedRealtimeServer, backup: ScriptedRealtimeServer, **defaults: object
) -> Path:
    """`scripted_plan` whose calls have `provider: [main, backup]`: the backup takes over
    when main cannot go on."""
    path = scripted_plan(tmp, main)
    plan = json.loads(path.read_text())

    def named(server: ScriptedRealtimeServer) -> dict[str, object]:
        model = (
            "gpt-4o-realtime-preview-2024-12-17" if server.dialect == "preview" else "gpt-realtime"
        )
        return {"type": "compatible", "base_url": server.url, "api_key_env": KEY_ENV,
                "dialect": server.dialect, "model": model}  # fmt: skip

    plan["providers"] = {"main": named(main), "backup": named(backup)}
    plan["defaults"] |= {"provider": ["main", "backup"], **defaults}
    path.write_text(json.dumps(plan))
    return path
