"""The model's function calls on one call: each runs once its response completed (a
cancelled response's call is void), through the executor (timeouts, argument checks, filler
when slow); its output goes back to the model, which is then asked to go on.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from telephony_bot import log
from telephony_bot.providers.base import FunctionCall
from telephony_bot.session.context import CallContext
from telephony_bot.session.control import CallControl
from telephony_bot.session.playout import Playout
from telephony_bot.tools.executor import ToolExecutor

_log = log.get("session")


class ToolCalls:
    def __init__(self, ctx: CallContext, playout: Playout, control: CallControl) -> None:
        self.ctx = ctx
        self.playout = playout
        self.control = control
        self.executor = ToolExecutor(
            ctx.options.tools,
            control,
            filler_after_ms=ctx.options.filler_after_ms,
            on_filler=self._filler,
            privacy=ctx.options.privacy,
        )
        self._pending: dict[str, list[FunctionCall]] = {}  # by response, until it is done

    def called(self, fc: FunctionCall) -> None:
        if fc.response_id:
            self._pending.setdefault(fc.response_id, []).append(fc)
        else:
            self._start(fc)

    def response_done(self, response_id: str, status: str) -> None:
        for fc in self._pending.pop(response_id, []):
            if status == "completed":
                self._start(fc)
            else:
                _log.info("tool call dropped", tool=fc.name, response_status=status)

    def cancel_all(self) -> None:
        self.executor.cancel_all()
        for t in self.ctx.tool_tasks:
            t.cancel()

    def summary(self) -> list[dict[str, Any]]:
        """What each tool call did, for the call record."""
        return [
            {
                "name": r.name,
                "ok": r.ok,
                "duration_ms": round(r.duration_ms, 1),
                **({"error": r.error} if r.error else {}),
            }
            for r in self.executor.results
        ]

    def _start(self, fc: FunctionCall) -> None:
        task = asyncio.create_task(self._run(fc), name=f"tool-{fc.name}")
        self.ctx.tool_tasks.add(task)
        task.add_done_callback(self.ctx.tool_tasks.discard)

    async def _run(self, fc: FunctionCall) -> None:
        ctx = self.ctx
        _log.info("tool called", tool=fc.name, call_id=fc.call_id)
        try:
            arguments: Any = json.loads(fc.arguments or "{}")
        except json.JSONDecodeError:
            arguments = fc.arguments
        shown = ctx.options.privacy.arguments(fc.name, arguments)  # sensitive values masked
        ctx.emit("tool.called", tool=fc.name, tool_call_id=fc.call_id, arguments=shown)
        ctx.conversation.function_call(fc.call_id, fc.name, fc.arguments)
        result = await self.executor.run(fc)
        ctx.emit(
            "tool.result",
            tool=fc.name,
            tool_call_id=fc.call_id,
            ok=result.ok,
            duration_ms=round(result.duration_ms, 1),
            error=result.error or None,
        )
        if ctx.session is None:
            return
        ctx.conversation.function_output(fc.call_id, result.output)
        await ctx.session.send_function_output(fc.call_id, result.output)
        me = asyncio.current_task()
        busy = any(not t.done() for t in ctx.tool_tasks if t is not me)
        if not busy and self.control.hangup_pending is None:
            await ctx.ask_reply()  # the model does not continue on its own

    def _filler(self, tool_name: str) -> None:
        if self.ctx.call.media.queued_ms < 200:
            _log.info("filler", tool=tool_name)
            self.playout.prompt("one_moment")
