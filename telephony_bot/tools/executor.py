"""Run the model's function calls: scoped to the route's tools, arguments checked, each
with its own timeout, cancelled on hangup, errors returned to the model as the output.

When a tool takes longer than `filler_after_ms` the executor calls `on_filler()` once, so
the session can play a short phrase and the caller never sits in dead air. A tool whose
result follows later (async, or past the tool window) runs here to its end all the same;
`session/tool_calls.py` decides what the model is told meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from telephony_bot import log
from telephony_bot.providers.base import FunctionCall
from telephony_bot.redact import Privacy
from telephony_bot.tools.base import CallControl, Tool, ToolError, ToolResult, to_output

_log = log.get("tools")

_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "object": dict,
    "array": list,
}


def check_arguments(schema: dict[str, Any], args: Any) -> None:
    """The model's arguments against the tool's JSON Schema (draft 2020-12, every keyword);
    the first problem becomes a tool error the model reads and can correct."""
    if not isinstance(args, dict):
        raise ToolError("arguments must be a JSON object")
    try:
        from jsonschema import Draft202012Validator
    except ImportError:  # pragma: no cover - a dependency; the light check below remains
        _light_check(schema, args)
        return
    errors = sorted(Draft202012Validator(schema).iter_errors(args), key=lambda e: list(e.path))
    if errors:
        err = errors[0]
        where = ".".join(str(p) for p in err.path)
        raise ToolError(f"invalid arguments{' at ' + where if where else ''}: {err.message}")


def _light_check(schema: dict[str, Any], args: dict[str, Any]) -> None:
    """Required keys present, top-level property types and enums respected."""
    for key in schema.get("required", []):
        if key not in args:
            raise ToolError(f"missing required argument {key!r}")
    props = schema.get("properties", {})
    for key, value in args.items():
        prop = props.get(key)
        if prop is None:
            if schema.get("additionalProperties") is False:
                raise ToolError(f"unexpected argument {key!r}")
            continue
        want = _JSON_TYPES.get(prop.get("type", ""))
        if want and (not isinstance(value, want) or (want is int and isinstance(value, bool))):
            raise ToolError(f"argument {key!r} must be of type {prop['type']}")
        if "enum" in prop and value not in prop["enum"]:
            raise ToolError(f"argument {key!r} must be one of {prop['enum']}")


class ToolExecutor:
    def __init__(
        self,
        tools: dict[str, Tool],
        call: CallControl,
        *,
        filler_after_ms: int = 700,
        on_filler: Callable[[str], None] | None = None,
        privacy: Privacy | None = None,
    ) -> None:
        """`privacy`: whose parameters are sensitive; a result's `error` (for events, logs
        and the call record) never shows their values, its `output` (for the model) does."""
        self.tools = tools
        self.call = call
        self.privacy = privacy or Privacy()
        self.filler_after_ms = filler_after_ms
        self.on_filler = on_filler

    def refusal(self, fc: FunctionCall) -> str | None:
        """Why `fc` cannot run (not on this line, arguments wrong), or None: it can."""
        try:
            self._checked(fc)
        except ToolError as exc:
            return str(exc)
        return None

    def _checked(self, fc: FunctionCall) -> tuple[Tool, dict[str, Any]]:
        tool = self.tools.get(fc.name)
        if tool is None:
            raise ToolError(f"tool {fc.name!r} is not available on this line")
        try:
            args = json.loads(fc.arguments or "{}")
        except json.JSONDecodeError as exc:
            raise ToolError(f"arguments are not valid JSON: {exc.msg}") from None
        check_arguments(tool.spec.parameters, args)
        return tool, args

    async def run(self, fc: FunctionCall) -> ToolResult:
        """Run `fc` to its end (its tool's timeout at most); cancelling this stops the tool."""
        t0 = time.monotonic()
        filler_played = False
        try:
            tool, args = self._checked(fc)
            task = asyncio.create_task(tool.run(args, self.call), name=f"tool-{fc.name}")
            try:
                done, _ = await asyncio.wait({task}, timeout=self.filler_after_ms / 1000)
                if not done and self.on_filler is not None:
                    filler_played = True
                    self.on_filler(fc.name)
                remaining = tool.timeout_s - (time.monotonic() - t0)
                value = await asyncio.wait_for(task, timeout=max(0.0, remaining))
            except TimeoutError:
                raise ToolError(f"{fc.name} did not answer within {tool.timeout_s:g} s") from None
            finally:
                task.cancel()  # nothing when it is done; else its caller gave up on it
            result = ToolResult(
                fc.call_id, fc.name, to_output(value), True, _ms(t0), filler_played=filler_played
            )
        except ToolError as exc:
            result = self._error(fc, str(exc), t0, filler_played)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - an integrator's bug must not end the call
            if self.privacy.sensitive.get(fc.name):  # its message may quote an argument
                why = self.privacy.tool_text(fc.name, fc.arguments, f"{type(exc).__name__}: {exc}")
                _log.error("tool raised", tool=fc.name, error=why)
            else:
                _log.exception("tool raised", tool=fc.name)
            result = self._error(fc, f"{fc.name} failed: {type(exc).__name__}", t0, filler_played)
        _log.info(
            "tool result",
            tool=fc.name,
            ok=result.ok,
            duration_ms=round(result.duration_ms, 1),
            error=result.error or None,
            filler=result.filler_played,
        )
        return result

    def _error(self, fc: FunctionCall, msg: str, t0: float, filler: bool) -> ToolResult:
        out = json.dumps({"error": msg})  # the model's: it knows the values
        shown = self.privacy.tool_text(fc.name, fc.arguments, msg)
        return ToolResult(fc.call_id, fc.name, out, False, _ms(t0), error=shown,
                          filler_played=filler)  # fmt: skip


def _ms(t0: float) -> float:
    return (time.monotonic() - t0) * 1000
