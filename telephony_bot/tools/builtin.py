"""Builtin tools: hang up, transfer to a number the dialplan names, send DTMF."""

from __future__ import annotations

from typing import Any

from telephony_bot import keypad
from telephony_bot.providers.base import ToolSpec
from telephony_bot.tools.base import CallControl, FunctionTool, ToolError


def hangup_tool() -> FunctionTool:
    async def run(args: dict[str, Any], call: CallControl) -> Any:
        await call.hangup_after_playout(str(args.get("reason", "model ended the call")))
        return {"ok": True, "note": "the call ends after your current sentence"}

    spec = ToolSpec(
        "hangup",
        "End the call once you have said goodbye.",
        {"type": "object", "properties": {"reason": {"type": "string"}}},
    )
    return FunctionTool(spec, run, timeout_s=5)


def transfer_tool(targets: dict[str, str]) -> FunctionTool:
    """Transfer to one of the plan's named targets; the model never supplies a number."""
    names = sorted(targets)

    async def run(args: dict[str, Any], call: CallControl) -> Any:
        name = str(args.get("destination", names[0] if len(names) == 1 else ""))
        if name not in targets:
            raise ToolError(f"unknown destination {name!r}; choose one of {names}")
        ok, detail = await call.transfer(targets[name], by="model")
        if not ok:  # e.g. "486 Busy Here; the caller is still on the line"
            raise ToolError(f"transfer to {name} failed: {detail}")
        return {"ok": True, "destination": name, "status": detail}

    spec = ToolSpec(
        "transfer",
        "Transfer the caller to a human. Destinations: " + ", ".join(names),
        {
            "type": "object",
            "properties": {"destination": {"type": "string", "enum": names}},
            "required": ["destination"] if len(names) > 1 else [],
        },
    )
    return FunctionTool(spec, run, timeout_s=30)


def send_dtmf_tool() -> FunctionTool:
    async def run(args: dict[str, Any], call: CallControl) -> Any:
        digits = str(args.get("digits", ""))
        if not keypad.are_keys(digits):
            raise ToolError("digits must be 0-9, *, #, A-D")
        await call.send_dtmf(digits)
        return {"ok": True, "sent": digits}

    spec = ToolSpec(
        "send_dtmf",
        "Send touch-tone digits on the call (e.g. to navigate another system's menu).",
        {
            "type": "object",
            "properties": {"digits": {"type": "string"}},
            "required": ["digits"],
        },
    )
    return FunctionTool(spec, run, timeout_s=10)
