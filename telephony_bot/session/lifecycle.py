"""One call's life: ring (pre-warming the model), answer, greet, converse until either side
hangs up or a limit ends it, then report. A failing provider never drops the call
silently: the caller hears the engine's own apology, or is put through to a person.

The parts of a call, each in its own module:
- `context.CallContext`: the state they share;
- `playout.Playout`: what the caller hears, and the carrying out of every interruption;
- `media_loops.MediaLoops`: caller → provider (VAD, barge-in policy) and provider → caller;
- `control.CallControl`: the verbs tools, MQTT and HTTP use (hang up, transfer, say...);
- `tool_calls.ToolCalls`: the model's function calls;
- `failover.Failover`: which provider serves the call, and who takes over;
- `key_presses.KeyPresses`: the caller's keys, burst by burst, to the model (`dtmf`, pure);
- `turns.TurnPolicy` (pure) decides barge-in and truncation; `ledger.PlayoutLedger` (pure)
  holds what was heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from telephony_bot import log
from telephony_bot.callport import (
    CallAnswered,
    CallEnded,
    CallPort,
    DtmfReceived,
    MediaReady,
    TransferOutcome,
)
from telephony_bot.errors import CallGoneError
from telephony_bot.providers.base import Provider, SessionConfig, say_exactly
from telephony_bot.session.context import CallContext, EventSink
from telephony_bot.session.control import CallControl
from telephony_bot.session.failover import Failover
from telephony_bot.session.key_presses import KeyPresses
from telephony_bot.session.media_loops import MediaLoops
from telephony_bot.session.playout import Playout
from telephony_bot.session.prewarm import Prewarm
from telephony_bot.session.result import CallResult
from telephony_bot.session.settings import CallLimits, CallMeta, SessionOptions
from telephony_bot.session.tool_calls import ToolCalls

_log = log.get("session")

MAX_HEADER_CHARS = 200  # per SIP header value in call.started


def event_headers(headers: dict[str, str]) -> dict[str, str]:
    """SIP headers as call.started shows them: trimmed, secret-named ones masked."""
    return {
        k: "***" if log.is_secret_key(k) else str(v)[:MAX_HEADER_CHARS] for k, v in headers.items()
    }


class CallSession:
    """Runs one call; `control` is what may be done to it while it runs."""

    def __init__(
        self,
        call: CallPort,
        provider: Provider,
        config: SessionConfig,
        options: SessionOptions | None = None,
        limits: CallLimits | None = None,
        *,
        bus: EventSink | None = None,
        meta: CallMeta | None = None,
    ) -> None:
        ctx = CallContext(
            call, provider, config, options or SessionOptions(), limits or CallLimits(), bus, meta
        )
        self.ctx = ctx
        self.call = call
        self.call_id = call.call_id
        self.meta = ctx.meta
        self.result = ctx.result
        self.playout = Playout(ctx)
        self.control = CallControl(ctx, self.playout)
        self.tools = ToolCalls(ctx, self.playout, self.control)
        self.failover = Failover(ctx, self.playout)
        self.keys = KeyPresses(ctx, self.playout)
        self.loops = MediaLoops(
            ctx, self.playout, self.control, self.tools, self.failover, self.keys
        )

    # ---------- the call's life ----------

    async def run(self) -> CallResult:
        ctx = self.ctx
        with log.bind_call(self.call_id):
            self.result.setup_at = time.time()
            offer = self.call.offer
            ctx.emit(
                "call.started",
                direction=self.meta.direction,
                called=offer.called,
                caller=offer.caller,
                trunk=offer.trunk or None,
                route=self.meta.route,
                plan_version=self.meta.plan_version,
                provider=self.meta.provider,
                headers=event_headers(offer.headers),
            )
            try:
                await self._run()
            except Exception as exc:  # noqa: BLE001 - one broken call must not touch others
                _log.exception("session failed", error=str(exc))
                with contextlib.suppress(Exception):
                    await ctx.hangup("session error")
            finally:
                self.tools.call_ended()
                for t in ctx.tasks:
                    t.cancel()
                if ctx.session is not None:
                    with contextlib.suppress(Exception):
                        await ctx.session.close()
                self.call.media.close()
            self._report()
        return self.result

    def _report(self) -> None:
        ctx, result = self.ctx, self.result
        result.tools = self.tools.summary()
        # the record shows the keys as the events did: masked when the route says so
        if result.dtmf and ctx.options.privacy.mask_dtmf:
            result.dtmf = [ctx.options.privacy.digits("".join(result.dtmf))]
        result.usage = ctx.usage.summary()
        self.loops.report_turns(ctx.ledger.flush(self.call.media.played_ms))
        result.ended_at = time.time()
        if result.ended_by == "local" and ctx.hangup_reason:
            result.hangup_reason = ctx.hangup_reason
        since = result.answered_at
        ctx.emit(
            "call.ended",
            ended_by=result.ended_by,
            reason=result.end_reason,
            sip_status=result.sip_status,
            duration_s=round(result.ended_at - since, 2) if since else 0.0,
            underruns=result.media.get("underruns", 0),  # gaps heard (metrics)
        )
        _log.info(
            "call ended",
            ended_by=result.ended_by,
            reason=result.reason,
            hangup_reason=result.hangup_reason or None,
            dtmf="".join(result.dtmf),
            turns_user=result.turns_user,
            turns_agent=result.turns_agent,
            barge_ins=result.barge_ins,
            tools=len(result.tools),
            usage=result.usage,
            **result.media,
        )

    async def _run(self) -> None:
        ctx = self.ctx
        # Watch call events from the start: the caller may hang up while it is still ringing.
        watcher = asyncio.create_task(self._watch_call(), name="call-events")
        tasks: set[asyncio.Task[Any]] = set()
        warm = (
            Prewarm(self._open, tasks, ctx.first_audio, ctx.options.greeting is not None)
            if ctx.options.prewarm
            else None
        )
        try:
            rang = ctx.loop.time()
            if ctx.limits.ring_ms:
                await asyncio.wait({watcher}, timeout=ctx.limits.ring_ms / 1000)
            if warm is not None:
                await warm.ready_or(watcher, rang + ctx.options.prewarm_max_wait_ms / 1000)
            if watcher.done():
                _log.info("caller hung up before answer")
                return
            try:
                await self.call.answer()
            except CallGoneError:
                await watcher
                return
            await self._converse(watcher, tasks, warm)
        finally:
            for t in (watcher, *tasks):
                t.cancel()
            await asyncio.gather(watcher, *tasks, return_exceptions=True)

    async def _open(self, tasks: set[asyncio.Task[Any]]) -> bool:
        """Connect the provider (instructions go with it), start the media loops, greet."""
        ctx = self.ctx
        session = await self.failover.first()
        if session is None:
            return False
        ctx.connected(session)
        tasks.add(asyncio.create_task(self.loops.uplink(), name="uplink"))
        tasks.add(asyncio.create_task(self.loops.downlink(), name="downlink"))
        await self._greet()
        return True

    async def _converse(
        self, watcher: asyncio.Task[None], tasks: set[asyncio.Task[Any]], warm: Prewarm | None
    ) -> None:
        limits = self.ctx.limits
        opened = await warm.opened() if warm is not None else await self._open(tasks)
        if not opened:
            await self.control.give_up("provider unavailable")
            await watcher
            return
        if limits.max_call_seconds:
            tasks.add(asyncio.create_task(self._limit(), name="max-duration"))
        if limits.idle_seconds:
            tasks.add(asyncio.create_task(self._idle(), name="idle"))
        await watcher

    async def _greet(self) -> None:
        g = self.ctx.options.greeting
        if g is not None:
            await self.ctx.ask_reply(say_exactly(g) if g else None)

    # ---------- call events ----------

    async def _watch_call(self) -> None:
        ctx, result = self.ctx, self.result
        while True:
            ev = await self.call.events.get()
            if isinstance(ev, MediaReady):
                _log.info("media ready", codec=ev.codec)
                result.codec = ev.codec
            elif isinstance(ev, CallAnswered):
                if result.answered_at is None:
                    result.answered_at = time.time()
                    result.codec = ev.codec or result.codec
                    ctx.emit("call.answered", codec=result.codec)
            elif isinstance(ev, DtmfReceived):
                result.dtmf.append(ev.digit)
                ctx.touch()
                key = ctx.options.privacy.digits(ev.digit)  # masked when the route says so
                _log.info("dtmf", digit=key, method=ev.method, duration_ms=ev.duration_ms)
                ctx.emit("dtmf", digit=key, method=ev.method, duration_ms=ev.duration_ms)
                self.keys.pressed(ev.digit)
            elif isinstance(ev, TransferOutcome):
                self.control.transfer_outcome(ev)
            elif isinstance(ev, CallEnded):
                result.ended_by = ev.ended_by
                result.reason = f"{ev.status_code} {ev.reason}".strip()
                result.sip_status = ev.status_code
                result.media = dict(ev.media)
                if result.answered_at is None and ev.status_code // 100 == 2:
                    result.answered_at = time.time()  # CONFIRMED was never reported
                ctx.ended.set()
                return

    # ---------- limits ----------

    async def _limit(self) -> None:
        limit = self.ctx.limits.max_call_seconds
        await asyncio.sleep(limit)
        _log.info("maximum call duration reached", max_call_seconds=limit)
        self.playout.silence()
        self.playout.prompt("goodbye", closing=True)
        await self.playout.hang_up_after_playout("max_call_seconds", max_wait_s=5)

    async def _idle(self) -> None:
        ctx = self.ctx
        limit = ctx.limits.idle_seconds
        while True:
            await asyncio.sleep(0.5)
            quiet = ctx.loop.time() - ctx.last_activity
            if quiet >= limit and self.call.media.queued_ms == 0:
                _log.info("idle timeout", idle_seconds=limit)
                self.playout.prompt("goodbye", closing=True)
                await self.playout.hang_up_after_playout("idle", max_wait_s=5)
                return


async def run_call(
    call: CallPort,
    provider: Provider,
    config: SessionConfig,
    limits: CallLimits,
    options: SessionOptions | None = None,
    *,
    bus: EventSink | None = None,
    meta: CallMeta | None = None,
) -> CallResult:
    """Drive one call from offer to end. Never raises for call-level failures."""
    return await CallSession(call, provider, config, options, limits, bus=bus, meta=meta).run()
