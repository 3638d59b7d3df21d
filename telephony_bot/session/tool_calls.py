"""The model's function calls on one call: each runs once its response completed (a
cancelled response's call is void), through the executor (timeouts, argument checks, filler
when slow); its output goes back to the model, which is then asked to go on.

A tool marked async, or one still running when the route's tool window closes, is answered
at once with `PENDING_OUTPUT` and runs on; its result (or its failure) is given to the model
later as a message, at the quiet moment `result_waits.ResultWaits` picks, and the model is
asked to reply. A result that arrives after the call ended is logged and published
(`tool.result` with `late: true`), never dropped silently.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from telephony_bot import log
from telephony_bot.providers.base import PENDING_OUTPUT, FunctionCall, result_follows
from telephony_bot.session.context import CallContext
from telephony_bot.session.control import CallControl
from telephony_bot.session.playout import Playout
from telephony_bot.session.result_waits import (
    AskAgain,
    Deliver,
    Line,
    PlayFiller,
    ResultWaits,
    pending_after_ms,
)
from telephony_bot.tools.base import ToolResult
from telephony_bot.tools.executor import ToolExecutor

_log = log.get("session")

WATCH_S = 0.1  # how often the line is looked at while a result is awaited or held
# Tools whose result was still awaited when their call ended: they run on to their own
# timeout (held here, as nothing else refers to them) and their result is logged.
_AFTER_CALL: set[asyncio.Task[Any]] = set()


@dataclass
class ToolRun:
    """One function call, as the call record shows it."""

    call_id: str
    name: str
    is_async: bool
    started: float  # loop time
    pending_ms: float | None = None  # when the model was told the result will follow
    result: ToolResult | None = None
    delivered_ms: float | None = None  # when a result that followed was given to the model

    def record(self) -> dict[str, Any]:
        r = self.result
        out: dict[str, Any] = {
            "name": self.name,
            "ok": r.ok if r else None,  # None: no result by the end of the call
            "duration_ms": round(r.duration_ms, 1) if r else None,
        }
        if r is not None and r.error:
            out["error"] = r.error
        if self.pending_ms is not None:
            out["async"] = self.is_async
            out["pending_ms"] = round(self.pending_ms, 1)
            out["delivered"] = self.delivered_ms is not None
            if self.delivered_ms is not None:
                out["delivered_ms"] = round(self.delivered_ms, 1)
        return out


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
        self.waits = ResultWaits()
        self.runs: list[ToolRun] = []  # in the order the model called them
        self._pending: dict[str, list[FunctionCall]] = {}  # by response, until it is done
        self._following: set[asyncio.Task[Any]] = set()  # told "will follow", still running
        self._held: dict[str, tuple[ToolRun, str]] = {}  # results to give: (run, message)
        self._watch: asyncio.Task[None] | None = None
        self._ended = False

    # ---- what the provider and the caller do ----

    def called(self, fc: FunctionCall) -> None:
        if fc.response_id:
            self._pending.setdefault(fc.response_id, []).append(fc)
        else:
            self._start(fc)

    def response_done(self, response_id: str, status: str) -> None:
        self.waits.response_done(self.ctx.now_ms())
        for fc in self._pending.pop(response_id, []):
            if status == "completed":
                self._start(fc)
            else:
                _log.info("tool call dropped", tool=fc.name, response_status=status)

    def caller_turn(self, *, started: bool) -> None:
        """The provider's VAD heard the caller start (or stop) a turn."""
        if started:
            self.waits.caller_started()
        else:
            self.waits.caller_stopped(self.ctx.now_ms())

    def reply_refused(self) -> None:
        """The model refused a request for a reply: one was under way already."""
        self.waits.refused()

    def call_ended(self) -> None:
        """Tools that have not answered are stopped; those whose result was to follow run
        on to their own timeout, and their result is logged as late."""
        self._ended = True
        for t in self.ctx.tool_tasks:
            t.cancel()
        for t in self._following:
            _AFTER_CALL.add(t)
            t.add_done_callback(_AFTER_CALL.discard)
        for run, _ in self._held.values():
            _log.info("tool result not given: the call ended", tool=run.name,
                      tool_call_id=run.call_id)  # fmt: skip

    def summary(self) -> list[dict[str, Any]]:
        """What each tool call did, for the call record."""
        return [r.record() for r in self.runs]

    # ---- one call ----

    def _start(self, fc: FunctionCall) -> None:
        task = asyncio.create_task(self._run(fc), name=f"tool-{fc.name}")
        self.ctx.tool_tasks.add(task)
        task.add_done_callback(self.ctx.tool_tasks.discard)

    async def _run(self, fc: FunctionCall) -> None:
        ctx = self.ctx
        _log.info("tool called", tool=fc.name, tool_call_id=fc.call_id)  # call_id: the call's
        try:
            arguments: Any = json.loads(fc.arguments or "{}")
        except json.JSONDecodeError:
            arguments = fc.arguments
        shown = ctx.options.privacy.arguments(fc.name, arguments)  # sensitive values masked
        ctx.emit("tool.called", tool=fc.name, tool_call_id=fc.call_id, arguments=shown)
        ctx.conversation.function_call(fc.call_id, fc.name, fc.arguments)
        tool = ctx.options.tools.get(fc.name)
        # a call that cannot run is answered at once, async tool or not
        is_async = tool is not None and tool.is_async and self.executor.refusal(fc) is None
        run = ToolRun(fc.call_id, fc.name, is_async, ctx.loop.time())
        self.runs.append(run)
        work = asyncio.create_task(self.executor.run(fc), name=f"tool-run-{fc.name}")
        try:
            window_s = pending_after_ms(is_async, ctx.options.tool_window_ms) / 1000
            if window_s > 0:
                await asyncio.wait({work}, timeout=window_s)
            if work.done():
                run.result = work.result()
                self._emit_result(run)
                await self._answer(fc, run.result.output)
                return
            await self._follow(fc, run)
            result = await work
        except asyncio.CancelledError:
            work.cancel()
            raise
        finally:
            self._following.discard(asyncio.current_task())  # type: ignore[arg-type]
        self._arrived(run, result)

    async def _follow(self, fc: FunctionCall, run: ToolRun) -> None:
        """Tell the model the result will follow; the tool runs on."""
        ctx = self.ctx
        run.pending_ms = (ctx.loop.time() - run.started) * 1000
        me = asyncio.current_task()
        assert me is not None
        ctx.tool_tasks.discard(me)  # answered (for now): others' answers may ask for a reply
        self._following.add(me)
        _log.info("tool result will follow", tool=fc.name, tool_call_id=fc.call_id,
                  after_ms=round(run.pending_ms), declared_async=run.is_async)  # fmt: skip
        ctx.emit("tool.pending", tool=fc.name, tool_call_id=fc.call_id,
                 after_ms=round(run.pending_ms), declared_async=run.is_async)  # fmt: skip
        self.waits.pending(fc.call_id)
        self._watch_line()
        await self._answer(fc, PENDING_OUTPUT)

    async def _answer(self, fc: FunctionCall, output: str) -> None:
        """The call's output to the model; then, unless another tool is about to answer (or
        the call is ending), the model is asked to go on: it does not on its own."""
        ctx = self.ctx
        if ctx.session is None:
            return
        ctx.conversation.function_output(fc.call_id, output)
        await ctx.session.send_function_output(fc.call_id, output)
        me = asyncio.current_task()
        busy = any(not t.done() for t in ctx.tool_tasks if t is not me)
        if not busy and self.control.hangup_pending is None:
            self.waits.asked(ctx.now_ms())
            await ctx.ask_reply()  # the model does not continue on its own

    def _arrived(self, run: ToolRun, result: ToolResult) -> None:
        """A result the model was told would follow is here: held for the next quiet
        moment, or, the call having ended, logged as late."""
        run.result = result
        if self._ended:
            _log.info(
                "tool result after the call",
                tool=run.name,
                tool_call_id=run.call_id,
                ok=result.ok,
                duration_ms=round(result.duration_ms, 1),
                output_chars=len(result.output),
                error=result.error or None,
            )
            self._emit_result(run, late=True)
            return
        self._emit_result(run)
        text = result_follows(run.name, run.call_id, result.output, result.ok)
        self._held[run.call_id] = (run, text)
        self.waits.arrived(run.call_id)

    def _emit_result(self, run: ToolRun, *, late: bool = False) -> None:
        r = run.result
        assert r is not None
        self.ctx.emit(
            "tool.result",
            tool=run.name,
            tool_call_id=run.call_id,
            ok=r.ok,
            duration_ms=round(r.duration_ms, 1),
            error=r.error or None,
            pending=run.pending_ms is not None,
            late=late,
            output_chars=len(r.output),
        )

    # ---- results that follow: the line watched until each is given ----

    def _watch_line(self) -> None:
        if self._watch is None or self._watch.done():
            self._watch = asyncio.create_task(self._watching(), name="tool-results")
            self.ctx.tasks.add(self._watch)  # cancelled with the call
            self._watch.add_done_callback(self.ctx.tasks.discard)

    async def _watching(self) -> None:
        ctx = self.ctx
        while self.waits.watching:
            await asyncio.sleep(WATCH_S)
            if ctx.closing or self.control.hangup_pending is not None or ctx.session is None:
                continue
            for action in self.waits.step(self._line()):
                try:
                    await self._act(action)
                except Exception:  # noqa: BLE001 - the watch goes on for the other results
                    _log.exception("tool results: action failed", action=type(action).__name__)

    async def _act(self, action: Deliver | AskAgain | PlayFiller) -> None:
        session = self.ctx.session
        assert session is not None
        if isinstance(action, Deliver):
            await self._give(action.call_ids)
        elif isinstance(action, AskAgain):
            _log.info("asking again for the reply that gives tool results")
            await self.ctx.ask_reply()
        else:
            _log.info("filler", waiting_for=sorted(self.waits.awaited))
            self.playout.prompt("one_moment")

    def _line(self) -> Line:
        ctx = self.ctx
        return Line(
            now_ms=ctx.now_ms(),
            bot_queued_ms=ctx.call.media.queued_ms,
            bot_generating=ctx.response_active,
            caller_voice_ms=ctx.caller_voice_ms,
            tools_running=any(not t.done() for t in ctx.tool_tasks),
        )

    async def _give(self, call_ids: tuple[str, ...]) -> None:
        """The results as messages (kept in the conversation, so a provider taking over
        has them too), then one request for a reply."""
        ctx = self.ctx
        assert ctx.session is not None
        for call_id in call_ids:
            run, text = self._held.pop(call_id)
            ctx.conversation.followed_result(text)
            await ctx.session.add_text_item(text, "system")
            run.delivered_ms = (ctx.loop.time() - run.started) * 1000
            _log.info("tool result given", tool=run.name, tool_call_id=call_id,
                      after_ms=round(run.delivered_ms))  # fmt: skip
        await ctx.ask_reply()

    def _filler(self, tool_name: str) -> None:
        """A tool has run `filler_after_ms` (the executor's call)."""
        if self.ctx.closing or not self.waits.early_filler(self._line()):
            return
        _log.info("filler", tool=tool_name)
        self.playout.prompt("one_moment")
