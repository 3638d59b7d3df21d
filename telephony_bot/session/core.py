"""One call's session: answer, greet, then carry the conversation between the caller and a
realtime provider — turns and barge-in (session/turns.py decides), tool calls (tools/
executor.py runs them), filler and fallback phrases, usage — until either side hangs up.

Tasks per call: `events` (call events: DTMF, transfer outcomes, the end), `uplink` (caller
frames → local VAD → barge-in policy → provider), `downlink` (provider events → playout,
tools, usage), and timers (max duration, idle). A failing provider never drops the call
silently: the caller hears the engine's own recovery phrase or apology.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from telephony_bot import log
from telephony_bot.callport import (
    CallEnded,
    CallPort,
    DtmfReceived,
    MediaReady,
    TransferOutcome,
)
from telephony_bot.errors import CallGoneError, ProviderError
from telephony_bot.media.vad import FrameVad, frame_dbfs
from telephony_bot.providers.base import (
    AudioDelta,
    AudioDone,
    FunctionCall,
    Provider,
    ProviderErrorEvent,
    ProviderSession,
    Reconnected,
    ResponseDone,
    SessionConfig,
    SpeechStarted,
    SpeechStopped,
    TranscriptDelta,
)
from telephony_bot.session import prompts
from telephony_bot.session.prewarm import Prewarm
from telephony_bot.session.turns import (
    BargeInSettings,
    CancelResponse,
    PausePlayout,
    ResumePlayout,
    ResumeTurn,
    StopPlayout,
    Truncate,
    TurnPolicy,
)
from telephony_bot.session.usage import CallUsage, Prices
from telephony_bot.tools.base import Tool
from telephony_bot.tools.executor import ToolExecutor

_log = log.get("session")

FRAME_MS = 20


@dataclass(frozen=True)
class CallLimits:
    ring_ms: int = 0
    max_call_seconds: float = 0.0  # 0: none
    idle_seconds: float = 0.0  # 0: none; silence on both sides this long ends the call


@dataclass(frozen=True)
class SessionOptions:
    """How the engine behaves around the model on one call (from the route)."""

    greeting: str | None = None  # None: no greeting; "" : the model greets; text: say this
    barge_in: BargeInSettings = field(default_factory=BargeInSettings)
    tools: dict[str, Tool] = field(default_factory=dict)
    filler_after_ms: int = 700
    prices: Prices = field(default_factory=Prices)
    # When the model is gone for good: put the caller through here (a SIP URI) instead of
    # apologising and hanging up.
    on_error_transfer: str | None = None
    # Pre-warm: while the call rings, open the provider session (instructions sent) and
    # start the greeting; answer once its first audio is queued, so the caller hears it at
    # once — or after prewarm_max_wait_ms more ringing at most (see session/prewarm.py).
    prewarm: bool = True
    prewarm_max_wait_ms: int = 2000


@dataclass
class CallResult:
    call_id: str
    ended_by: str = "local"
    reason: str = ""
    dtmf: list[str] = field(default_factory=list)
    media: dict[str, int] = field(default_factory=dict)
    turns_user: int = 0
    turns_agent: int = 0
    barge_ins: int = 0
    tools: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)


class _PlayoutLevels:
    """Level of every 20 ms of bot audio queued, so the policy learns what was just played."""

    def __init__(self) -> None:
        self._levels: list[float] = []  # per queued frame, oldest first
        self._base_ms = 0  # played_ms at which _levels[0] starts
        self._tail = b""

    def queued(self, pcm: bytes) -> None:
        data = self._tail + pcm
        n = len(data) // 960 * 960
        for i in range(0, n, 960):
            self._levels.append(frame_dbfs(data[i : i + 960]))
        self._tail = data[n:]

    def played_up_to(self, played_ms: int) -> float:
        """Max level of frames played since the last call (−120: nothing played)."""
        k = max(0, (played_ms - self._base_ms) // FRAME_MS)
        if k == 0:
            return -120.0
        done, self._levels = self._levels[:k], self._levels[k:]
        self._base_ms += k * FRAME_MS
        return max(done) if done else -120.0

    def cleared(self, played_ms: int) -> None:
        self._levels.clear()
        self._tail = b""
        self._base_ms = played_ms


class CallSession:
    """Runs one call. Also the `CallControl` that builtin tools act through."""

    def __init__(
        self,
        call: CallPort,
        provider: Provider,
        config: SessionConfig,
        options: SessionOptions | None = None,
        limits: CallLimits | None = None,
    ) -> None:
        self.call = call
        self.call_id = call.call_id
        self.provider = provider
        self.config = config
        self.options = options or SessionOptions()
        self.limits = limits or CallLimits()
        self.result = CallResult(call.call_id)
        self.usage = CallUsage()
        self.policy = TurnPolicy(self.options.barge_in)
        self.levels = _PlayoutLevels()
        self.session: ProviderSession | None = None
        self.executor = ToolExecutor(
            self.options.tools,
            self,
            filler_after_ms=self.options.filler_after_ms,
            on_filler=self._filler,
        )
        self._loop = asyncio.get_running_loop()
        self._ended = asyncio.Event()
        self._transfer_waiters: list[asyncio.Future[TransferOutcome]] = []
        self._tool_tasks: set[asyncio.Task[Any]] = set()
        self._response_active = False
        self._item_id = ""
        self._last_activity = self._loop.time()
        self._hangup_pending: str | None = None
        self._last_response_status = ""
        self._mute_provider = False
        self._pending_calls: dict[str, list[FunctionCall]] = {}
        self.first_audio = asyncio.Event()  # bot audio was queued (pre-warm answers then)

    def _now_ms(self) -> int:
        return int(self._loop.time() * 1000)

    # ---------- the call's life ----------

    async def run(self) -> CallResult:
        with log.bind_call(self.call_id):
            try:
                await self._run()
            except Exception as exc:  # noqa: BLE001 - one broken call must not touch others
                _log.exception("session failed", error=str(exc))
                with contextlib.suppress(Exception):
                    await self.call.hangup("session error")
            finally:
                self.executor.cancel_all()
                for t in self._tool_tasks:
                    t.cancel()
                if self.session is not None:
                    with contextlib.suppress(Exception):
                        await self.session.close()
                self.call.media.close()
            self.result.tools = [
                {"name": r.name, "ok": r.ok, "duration_ms": round(r.duration_ms, 1)}
                for r in self.executor.results
            ]
            self.result.usage = self.usage.summary(self.options.prices)
            _log.info(
                "call ended",
                ended_by=self.result.ended_by,
                reason=self.result.reason,
                dtmf="".join(self.result.dtmf),
                turns_user=self.result.turns_user,
                turns_agent=self.result.turns_agent,
                barge_ins=self.result.barge_ins,
                tools=len(self.result.tools),
                usage=self.result.usage,
                **self.result.media,
            )
        return self.result

    async def _run(self) -> None:
        # Watch call events from the start: the caller may hang up while it is still ringing.
        watcher = asyncio.create_task(self._watch_call(), name="call-events")
        tasks: set[asyncio.Task[Any]] = set()
        warm = (
            Prewarm(self._open, tasks, self.first_audio, self.options.greeting is not None)
            if self.options.prewarm
            else None
        )
        try:
            rang = self._loop.time()
            if self.limits.ring_ms:
                await asyncio.wait({watcher}, timeout=self.limits.ring_ms / 1000)
            if warm is not None:
                await warm.ready_or(watcher, rang + self.options.prewarm_max_wait_ms / 1000)
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
        """Connect the provider (instructions go with it), start the audio tasks, greet."""
        try:
            self.session = await self.provider.connect(self.config)
        except ProviderError as exc:
            _log.error("provider unavailable", error=str(exc), retryable=exc.retryable)
            return False
        tasks.add(asyncio.create_task(self._uplink(), name="uplink"))
        tasks.add(asyncio.create_task(self._downlink(), name="downlink"))
        await self._greet()
        return True

    async def _converse(
        self, watcher: asyncio.Task[None], tasks: set[asyncio.Task[Any]], warm: Prewarm | None
    ) -> None:
        opened = await warm.opened() if warm is not None else await self._open(tasks)
        if not opened:
            await self._apologise_and_hang_up("provider unavailable")
            await watcher
            return
        if self.limits.max_call_seconds:
            tasks.add(asyncio.create_task(self._limit(), name="max-duration"))
        if self.limits.idle_seconds:
            tasks.add(asyncio.create_task(self._idle(), name="idle"))
        await watcher

    async def _greet(self) -> None:
        g = self.options.greeting
        if g is None or self.session is None:
            return
        if g == "":
            await self.session.create_response()
        else:
            await self.session.create_response(
                instructions=f"Greet the caller by saying exactly this, and nothing else: {g}"
            )

    # ---------- call events ----------

    async def _watch_call(self) -> None:
        while True:
            ev = await self.call.events.get()
            if isinstance(ev, MediaReady):
                _log.info("media ready", codec=ev.codec)
            elif isinstance(ev, DtmfReceived):
                self.result.dtmf.append(ev.digit)
                self._last_activity = self._loop.time()
                _log.info("dtmf", digit=ev.digit, method=ev.method, duration_ms=ev.duration_ms)
            elif isinstance(ev, TransferOutcome):
                _log.info(
                    "transfer status", target=ev.target, status=ev.status_code, final=ev.final
                )
                if ev.final:
                    for fut in self._transfer_waiters:
                        if not fut.done():
                            fut.set_result(ev)
                    self._transfer_waiters.clear()
            elif isinstance(ev, CallEnded):
                self.result.ended_by = ev.ended_by
                self.result.reason = f"{ev.status_code} {ev.reason}".strip()
                self.result.media = dict(ev.media)
                self._ended.set()
                return

    # ---------- caller → provider ----------

    async def _uplink(self) -> None:
        assert self.session is not None
        vad = FrameVad()
        media = self.call.media
        gate = self.options.barge_in.enabled  # playout levels only feed the barge-in echo gate
        while pcm := await media.read_frame():
            now = self._now_ms()
            self.usage.audio_in_ms += FRAME_MS
            level = self.levels.played_up_to(media.played_ms) if gate else -120.0
            self._act(self.policy.played(media.played_ms, level, now))
            v = vad.process(pcm, media.frame_8k)
            if v.speech:
                self._last_activity = self._loop.time()
            self._act(self.policy.caller_frame(v.speech, v.dbfs, now))
            self._act(self.policy.tick(now))
            await self.session.send_audio(pcm)

    # ---------- provider → caller ----------

    async def _downlink(self) -> None:
        assert self.session is not None
        async for ev in self.session.events():
            if isinstance(ev, AudioDelta):
                if ev.item_id and self.policy.interrupted(ev.item_id):
                    continue  # late audio of a reply the caller interrupted: never play it
                if self._mute_provider:
                    continue  # the call is closing with the engine's own last words
                self._response_active = True
                if ev.item_id and ev.item_id != self._item_id:
                    self._item_id = ev.item_id
                    self.policy.reset_item(ev.item_id)
                ms = len(ev.pcm) // 48
                self.usage.audio_out_ms += ms
                self.call.media.write(ev.pcm)
                self.first_audio.set()
                if self.options.barge_in.enabled:
                    self.levels.queued(ev.pcm)
                self._last_activity = self._loop.time()
                self._act(self.policy.bot_audio(ev.item_id, ms, self._now_ms()))
            elif isinstance(ev, AudioDone):
                self.call.media.end_of_stream()
                self.policy.item_done(ev.item_id)
            elif isinstance(ev, SpeechStarted):
                self._act(self.policy.provider_speech_started(self._now_ms()))
            elif isinstance(ev, SpeechStopped):
                self._act(self.policy.provider_speech_stopped(self._now_ms()))
            elif isinstance(ev, TranscriptDelta):
                if ev.final:
                    if ev.role == "user":
                        self.result.turns_user += 1
                    else:
                        self.result.turns_agent += 1
                    _log.info(f"turn.{ev.role}", text=ev.text, item_id=ev.item_id)
            elif isinstance(ev, FunctionCall):
                # Run it once its response completes: a cancelled response's call is void.
                if ev.response_id:
                    self._pending_calls.setdefault(ev.response_id, []).append(ev)
                else:
                    self._start_tool(ev)
            elif isinstance(ev, ResponseDone):
                self._response_active = False
                self._last_response_status = ev.status
                if ev.status == "cancelled":
                    self._server_interrupted()
                for fc in self._pending_calls.pop(ev.response_id, []):
                    if ev.status == "completed":
                        self._start_tool(fc)
                    else:
                        _log.info("tool call dropped", tool=fc.name, response_status=ev.status)
                self.usage.add_response(ev.usage)
                self.policy.response_done(self._now_ms())
                _log.info("response done", response_id=ev.response_id, status=ev.status)
            elif isinstance(ev, ProviderErrorEvent):
                await self._provider_error(ev)
            elif isinstance(ev, Reconnected):
                _log.info("provider reconnected", attempt=ev.attempt)

    def _act(self, actions: list[Any]) -> None:
        for a in actions:
            if isinstance(a, StopPlayout):
                dropped = self.call.media.clear()
                self.levels.cleared(self.call.media.played_ms)
                self.result.barge_ins += 1
                _log.info("barge_in", dropped_ms=dropped, played_ms=self.call.media.played_ms)
            elif isinstance(a, PausePlayout):
                self.call.media.pause()
            elif isinstance(a, ResumePlayout):
                self.call.media.resume()
                _log.info("barge-in not confirmed: bot audio resumed")
            elif isinstance(a, CancelResponse):
                self._spawn(self.session.cancel_response() if self.session else None)
            elif isinstance(a, Truncate):
                _log.info("truncate", item_id=a.item_id, audio_end_ms=a.audio_end_ms)
                self._spawn(
                    self.session.truncate(a.item_id, a.audio_end_ms) if self.session else None
                )
            elif isinstance(a, ResumeTurn):
                # Only when the provider really cut its reply short on a noise.
                if self._last_response_status == "cancelled" and not self._response_active:
                    _log.info("false interruption: asking the model to go on")
                    self._spawn(self.session.create_response() if self.session else None)

    def _server_interrupted(self) -> None:
        """The provider cancelled its reply itself (its VAD heard the caller first): it
        cannot unsend audio, so stop what is still queued and truncate to what was heard."""
        item, played = self.policy.played_item_ms()
        if not item or self.policy.interrupted(item) or self.call.media.queued_ms == 0:
            return
        end = min(played, self.policy.generated_ms(item))
        self._clear_playout()
        self.result.barge_ins += 1
        _log.info("barge_in", by="provider", item_id=item, audio_end_ms=end)
        self._spawn(self.session.truncate(item, end) if self.session else None)

    def _spawn(self, coro: Any) -> None:
        if coro is not None:
            task = asyncio.create_task(coro)
            self._tool_tasks.add(task)
            task.add_done_callback(self._tool_tasks.discard)

    async def _provider_error(self, ev: ProviderErrorEvent) -> None:
        _log.warning(
            "provider error",
            message=ev.message,
            code=ev.code,
            event_id=ev.event_id,
            retryable=ev.retryable,
            fatal=ev.fatal,
        )
        if ev.fatal:
            await self._apologise_and_hang_up(f"provider error: {ev.code or ev.message}")
        elif ev.code == "connection_lost":
            self._clear_playout()
            self._play_prompt("reconnecting")

    # ---------- tools ----------

    def _start_tool(self, fc: FunctionCall) -> None:
        task = asyncio.create_task(self._run_tool(fc), name=f"tool-{fc.name}")
        self._tool_tasks.add(task)
        task.add_done_callback(self._tool_tasks.discard)

    async def _run_tool(self, fc: FunctionCall) -> None:
        _log.info("tool called", tool=fc.name, call_id=fc.call_id)
        result = await self.executor.run(fc)
        if self.session is None:
            return
        await self.session.send_function_output(fc.call_id, result.output)
        others = [t for t in self._tool_tasks if t is not asyncio.current_task()]
        busy = any(t.get_name().startswith("tool-") and not t.done() for t in others)
        if not busy and self._hangup_pending is None:
            await self.session.create_response()  # the model does not continue on its own

    def _filler(self, tool_name: str) -> None:
        if self.call.media.queued_ms < 200:
            _log.info("filler", tool=tool_name)
            self._play_prompt("one_moment")

    def _clear_playout(self) -> None:
        self.call.media.clear()
        self.levels.cleared(self.call.media.played_ms)
        self._act(self.policy.playout_cleared(self._now_ms()))

    def _play_prompt(self, name: str, closing: bool = False) -> None:
        if closing:
            self._mute_provider = True
        pcm = prompts.load(name)
        self.call.media.write(pcm)
        self.levels.queued(pcm)
        self.call.media.end_of_stream()

    # ---------- CallControl, for builtin tools ----------

    async def hangup_after_playout(self, reason: str) -> None:
        # Tools start only after their response is done, so the last sentence is queued.
        if self._hangup_pending is None:
            self._hangup_pending = reason
            self._spawn(self._hang_up_after_playout(reason))

    async def _hang_up_after_playout(self, reason: str, max_wait_s: float = 15.0) -> None:
        """Hang up once everything queued now (the last sentence, a goodbye) was heard."""
        deadline = self._loop.time() + max_wait_s
        await asyncio.sleep(0.3)  # let the last sentence's audio arrive
        self._mute_provider = True  # nothing the model sends from now on is queued
        media = self.call.media
        target = media.played_ms + media.queued_ms
        while media.played_ms < target and self._loop.time() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # the final frame leaves the encoder
        await self.call.hangup(reason)

    async def transfer(self, target: str) -> tuple[bool, str]:
        fut: asyncio.Future[TransferOutcome] = self._loop.create_future()
        self._transfer_waiters.append(fut)
        await self.call.transfer(target)
        try:
            out = await asyncio.wait_for(fut, timeout=25)
        except TimeoutError:
            return False, "no answer from the transfer target"
        ok = 200 <= out.status_code < 300
        return ok, f"{out.status_code} {out.reason}".strip()

    async def send_dtmf(self, digits: str) -> None:
        await self.call.send_dtmf(digits)

    # ---------- endings ----------

    async def _apologise_and_hang_up(self, reason: str) -> None:
        self._clear_playout()
        target = self.options.on_error_transfer
        if target:
            self._play_prompt("reconnecting", closing=True)  # "Sorry, just a moment."
            media = self.call.media
            until = self._loop.time() + 3
            while media.queued_ms > 0 and self._loop.time() < until:
                await asyncio.sleep(0.05)
            _log.info("model unavailable: transferring the caller", target=target, reason=reason)
            ok, detail = await self.transfer(target)
            if ok:
                await self.call.hangup(f"transferred after {reason}")
                return
            _log.warning("fallback transfer failed", target=target, detail=detail)
        self._play_prompt("apology", closing=True)
        await self._hang_up_after_playout(reason, max_wait_s=8)

    async def _limit(self) -> None:
        await asyncio.sleep(self.limits.max_call_seconds)
        _log.info("maximum call duration reached", max_call_seconds=self.limits.max_call_seconds)
        self._clear_playout()
        self._play_prompt("goodbye", closing=True)
        await self._hang_up_after_playout("max_call_seconds", max_wait_s=5)

    async def _idle(self) -> None:
        limit = self.limits.idle_seconds
        while True:
            await asyncio.sleep(0.5)
            quiet = self._loop.time() - self._last_activity
            if quiet >= limit and self.call.media.queued_ms == 0:
                _log.info("idle timeout", idle_seconds=limit)
                self._play_prompt("goodbye", closing=True)
                await self._hang_up_after_playout("idle", max_wait_s=5)
                return


async def run_call(
    call: CallPort,
    provider: Provider,
    config: SessionConfig,
    limits: CallLimits,
    options: SessionOptions | None = None,
) -> CallResult:
    """Drive one call from offer to end. Never raises for call-level failures."""
    return await CallSession(call, provider, config, options, limits).run()
