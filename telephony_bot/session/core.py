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
import collections
import contextlib
import json
import time
from dataclasses import dataclass, field
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
from telephony_bot.errors import CallGoneError, ProviderError
from telephony_bot.events.bus import Bus, NullBus
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
    say_exactly,
)
from telephony_bot.session import prompts
from telephony_bot.session.agent_turns import AgentTurns
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
MAX_HEADER_CHARS = 200  # per SIP header value in call.started
SAY_WAIT_S = 20.0  # a queued `say` waits at most this long for the current reply to end
HANGUP_TAIL_S = 0.5  # after the last frame of a goodbye leaves, before the BYE


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


@dataclass(frozen=True)
class CallMeta:
    """Where the call came from and which plan it runs (for events and the CDR)."""

    direction: str = "inbound"  # inbound | outbound
    route: str | None = None
    plan_version: str = ""
    provider: str = ""


@dataclass
class CallResult:
    call_id: str
    ended_by: str = "local"
    reason: str = ""  # the SIP status of the end, e.g. "200 Normal call clearing"
    sip_status: int = 0
    hangup_reason: str = ""  # why the engine hung up (a tool, a limit, a command), if it did
    # wall-clock times (seconds since the epoch); None: it did not happen
    setup_at: float = 0.0
    answered_at: float | None = None
    first_audio_at: float | None = None  # first bot audio queued to the caller (the greeting)
    ended_at: float = 0.0
    codec: str = ""
    dtmf: list[str] = field(default_factory=list)
    media: dict[str, int] = field(default_factory=dict)
    turns_user: int = 0
    turns_agent: int = 0
    barge_ins: int = 0
    tools: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)

    @property
    def end_reason(self) -> str:
        """Why the call ended, in words: the engine's own reason, else the SIP status."""
        return self.hangup_reason or self.reason


def event_headers(headers: dict[str, str]) -> dict[str, str]:
    """SIP headers as call.started shows them: trimmed, secret-named ones masked."""
    return {
        k: "***" if log.is_secret_key(k) else str(v)[:MAX_HEADER_CHARS] for k, v in headers.items()
    }


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
        *,
        bus: Bus | None = None,
        meta: CallMeta | None = None,
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
        # turn latency (metrics): caller's last voiced frame → first audio of the next reply
        self._caller_voice_ms: int | None = None  # loop ms of the last voiced caller frame
        self._reply_due_from: int | None = None  # set when the caller's turn ended
        self._latency_ms: dict[str, int] = {}  # by assistant item, until its turn.agent
        self.bus = bus if bus is not None else NullBus()
        self.meta = meta or CallMeta()
        self.agent_turns = AgentTurns()
        self._hangup_reason: str | None = None  # why this side hung up
        self._says: collections.deque[str] = collections.deque()  # texts waiting to be said
        self._say_sent: str | None = None  # the say whose response.create is in flight
        self._ready = asyncio.Event()  # connected to the provider
        self._agent_text: dict[str, str] = {}  # assistant transcript deltas, by item
        self._cut_items: set[str] = set()  # replies a `say` cut off: their late audio is dropped
        self.first_audio = asyncio.Event()  # bot audio was queued (pre-warm answers then)

    def emit(self, type_: str, **data: Any) -> None:
        """Publish a call event (synchronous, never blocks, never raises)."""
        try:
            self.bus.emit(type_, self.call_id, **data)
        except Exception:  # noqa: BLE001 - events must never touch the call
            _log.exception("event publish failed", type=type_)

    def _now_ms(self) -> int:
        return int(self._loop.time() * 1000)

    # ---------- the call's life ----------

    async def run(self) -> CallResult:
        with log.bind_call(self.call_id):
            self.result.setup_at = time.time()
            offer = self.call.offer
            self.emit(
                "call.started",
                direction=self.meta.direction,
                called=offer.called,
                caller=offer.caller,
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
                    await self._hangup("session error")
            finally:
                self.executor.cancel_all()
                for t in self._tool_tasks:
                    t.cancel()
                if self.session is not None:
                    with contextlib.suppress(Exception):
                        await self.session.close()
                self.call.media.close()
            self.result.tools = [
                {
                    "name": r.name,
                    "ok": r.ok,
                    "duration_ms": round(r.duration_ms, 1),
                    **({"error": r.error} if r.error else {}),
                }
                for r in self.executor.results
            ]
            self.result.usage = self.usage.summary(self.options.prices)
            self._emit_turns(self.agent_turns.flush(self.call.media.played_ms))
            self.result.ended_at = time.time()
            if self.result.ended_by == "local" and self._hangup_reason:
                self.result.hangup_reason = self._hangup_reason
            since = self.result.answered_at
            self.emit(
                "call.ended",
                ended_by=self.result.ended_by,
                reason=self.result.end_reason,
                sip_status=self.result.sip_status,
                duration_s=round(self.result.ended_at - since, 2) if since else 0.0,
                underruns=self.result.media.get("underruns", 0),  # gaps heard (metrics)
            )
            _log.info(
                "call ended",
                ended_by=self.result.ended_by,
                reason=self.result.reason,
                hangup_reason=self.result.hangup_reason or None,
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
            self._ready.set()
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
            await self.session.create_response(instructions=say_exactly(g))

    # ---------- call events ----------

    async def _watch_call(self) -> None:
        while True:
            ev = await self.call.events.get()
            if isinstance(ev, MediaReady):
                _log.info("media ready", codec=ev.codec)
                self.result.codec = ev.codec
            elif isinstance(ev, CallAnswered):
                if self.result.answered_at is None:
                    self.result.answered_at = time.time()
                    self.result.codec = ev.codec or self.result.codec
                    self.emit("call.answered", codec=self.result.codec)
            elif isinstance(ev, DtmfReceived):
                self.result.dtmf.append(ev.digit)
                self._last_activity = self._loop.time()
                _log.info("dtmf", digit=ev.digit, method=ev.method, duration_ms=ev.duration_ms)
                self.emit("dtmf", digit=ev.digit, method=ev.method, duration_ms=ev.duration_ms)
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
                self.result.sip_status = ev.status_code
                self.result.media = dict(ev.media)
                if self.result.answered_at is None and ev.status_code // 100 == 2:
                    self.result.answered_at = time.time()  # CONFIRMED was never reported
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
            self._emit_turns(self.agent_turns.finished(media.played_ms))
            self._act(self.policy.played(media.played_ms, level, now))
            v = vad.process(pcm, media.frame_8k)
            if v.speech:
                self._last_activity = self._loop.time()
                self._caller_voice_ms = now
            self._act(self.policy.caller_frame(v.speech, v.dbfs, now))
            self._act(self.policy.tick(now))
            await self.session.send_audio(pcm)

    # ---------- provider → caller ----------

    async def _downlink(self) -> None:
        assert self.session is not None
        async for ev in self.session.events():
            if isinstance(ev, AudioDelta):
                if ev.item_id and (
                    self.policy.interrupted(ev.item_id) or ev.item_id in self._cut_items
                ):
                    continue  # late audio of a reply the caller interrupted: never play it
                if self._mute_provider:
                    continue  # the call is closing with the engine's own last words
                self._response_active = True
                if ev.item_id and ev.item_id != self._item_id:
                    self._item_id = ev.item_id
                    self.policy.reset_item(ev.item_id)
                    if self._reply_due_from is not None:
                        self._latency_ms[ev.item_id] = self._now_ms() - self._reply_due_from
                        self._reply_due_from = None
                ms = len(ev.pcm) // 48
                self.usage.audio_out_ms += ms
                if self.result.first_audio_at is None:
                    self.result.first_audio_at = time.time()
                self.agent_turns.audio(ev.item_id, ms, self.call.media.played_ms)
                self.call.media.write(ev.pcm)
                self.first_audio.set()
                if self.options.barge_in.enabled:
                    self.levels.queued(ev.pcm)
                self._last_activity = self._loop.time()
                self._act(self.policy.bot_audio(ev.item_id, ms, self._now_ms()))
            elif isinstance(ev, AudioDone):
                self.call.media.end_of_stream()
                self.policy.item_done(ev.item_id)
                self.agent_turns.audio_done(ev.item_id)
            elif isinstance(ev, SpeechStarted):
                self._act(self.policy.provider_speech_started(self._now_ms()))
            elif isinstance(ev, SpeechStopped):
                self._act(self.policy.provider_speech_stopped(self._now_ms()))
                self._reply_due_from = self._caller_voice_ms
            elif isinstance(ev, TranscriptDelta):
                if not ev.final and ev.role == "assistant":
                    self._agent_text[ev.item_id] = self._agent_text.get(ev.item_id, "") + ev.text
                if ev.final:
                    if ev.role == "user":
                        self.result.turns_user += 1
                        self.emit("turn.user", text=ev.text, item_id=ev.item_id)
                    else:
                        self.result.turns_agent += 1
                        # a truncated reply's final transcript can be empty: keep what was said
                        said = self._agent_text.pop(ev.item_id, "")
                        self.agent_turns.transcript(ev.item_id, ev.text or said.strip())
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
                self._say_sent = None
                await self._next_say()
            elif isinstance(ev, ProviderErrorEvent):
                await self._provider_error(ev)
            elif isinstance(ev, Reconnected):
                _log.info("provider reconnected", attempt=ev.attempt)
                self.emit("provider.reconnected", attempt=ev.attempt)

    def _act(self, actions: list[Any]) -> None:
        for a in actions:
            if isinstance(a, StopPlayout):
                dropped = self.call.media.clear()
                played = self.call.media.played_ms
                self.levels.cleared(played)
                self.agent_turns.cleared(played)
                self.result.barge_ins += 1
                _log.info("barge_in", dropped_ms=dropped, played_ms=played)
                _, item_ms = self.policy.played_item_ms()
                its = self.policy.interruptions  # latency: caller's voice onset → silence
                lat = {"latency_ms": self._now_ms() - its[-1].started_ms} if its else {}
                self.emit("barge_in", by="caller", played_ms=item_ms, dropped_ms=dropped, **lat)
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
        dropped = self.call.media.queued_ms
        self._clear_playout()
        self.result.barge_ins += 1
        _log.info("barge_in", by="provider", item_id=item, audio_end_ms=end)
        self.emit("barge_in", by="provider", played_ms=end, dropped_ms=dropped)
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
        self.emit(
            "provider.error",
            code=ev.code,
            message=ev.message,
            retryable=ev.retryable,
            fatal=ev.fatal,
        )
        if ev.code == "conversation_already_has_active_response" and self._say_sent:
            # our `say` met a reply that had just started: say it after that one
            self._says.appendleft(self._say_sent)
            self._say_sent = None
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
        try:
            arguments: Any = json.loads(fc.arguments or "{}")
        except json.JSONDecodeError:
            arguments = fc.arguments
        self.emit("tool.called", tool=fc.name, tool_call_id=fc.call_id, arguments=arguments)
        result = await self.executor.run(fc)
        self.emit(
            "tool.result",
            tool=fc.name,
            tool_call_id=fc.call_id,
            ok=result.ok,
            duration_ms=round(result.duration_ms, 1),
            error=result.error or None,
        )
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
        self.agent_turns.cleared(self.call.media.played_ms)
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
        # The last frame has left the bridge, but the caller hears it only once it is out of
        # the line's jitter buffers (adaptive ones grow to 100-300 ms on a busy path): a BYE
        # sent sooner clips the goodbye.
        await asyncio.sleep(HANGUP_TAIL_S)
        await self._hangup(reason)

    async def transfer(self, target: str) -> tuple[bool, str]:
        fut: asyncio.Future[TransferOutcome] = self._loop.create_future()
        self._transfer_waiters.append(fut)
        self.emit("transfer.started", target=target)
        try:
            await self.call.transfer(target)
        except Exception as exc:  # noqa: BLE001 - reported as the transfer's outcome
            self._transfer_waiters.remove(fut)
            self.emit("transfer.failed", target=target, status=0, reason=str(exc))
            return False, str(exc)
        try:
            out = await asyncio.wait_for(fut, timeout=25)
        except TimeoutError:
            reason = "no answer from the transfer target"
            self.emit("transfer.failed", target=target, status=0, reason=reason)
            return False, reason
        ok = 200 <= out.status_code < 300
        detail = f"{out.status_code} {out.reason}".strip()
        self.emit(
            "transfer.completed" if ok else "transfer.failed",
            target=target,
            status=out.status_code,
            reason=out.reason,
        )
        return ok, detail

    async def send_dtmf(self, digits: str) -> None:
        await self.call.send_dtmf(digits)

    # ---------- what integrators ask of a live call (events/control verbs) ----------

    async def hangup_now(self, reason: str) -> None:
        """End the call at once (an operator's or integrator's decision)."""
        self._mute_provider = True
        await self._hangup(reason)

    async def say(self, text: str, *, interrupt: bool = False) -> tuple[bool, str]:
        """Have the bot speak `text`: now, cutting off its current reply (`interrupt`), or
        once the reply it is giving has ended. Works with any Realtime-protocol model: a
        `response.create` whose instructions ask for exactly this text (the local engine
        speaks such a text verbatim)."""
        if not self.provider.capabilities.speech:
            name = self.provider.name
            return False, f"this call's provider ({name}) has no voice of its own to speak text"
        if self.session is None or not self._ready.is_set():
            return False, "the call is not connected to its model yet"
        if self._mute_provider:
            return False, "the call is closing"
        if interrupt:
            self._interrupt_bot()
            self._says.clear()  # `now` replaces anything still waiting
        self._says.append(text)
        queued = not interrupt and (self._response_active or self._say_sent is not None)
        if not self._response_active:
            await self._next_say()
        return True, "queued after the current reply" if queued else ""

    async def _next_say(self) -> None:
        if not self._says or self._say_sent is not None or self.session is None:
            return
        if self._mute_provider:
            self._says.clear()
            return
        text = self._says.popleft()
        self._say_sent = text
        await self.session.create_response(instructions=say_exactly(text))

    def _interrupt_bot(self) -> None:
        """Stop the bot's current reply as a barge-in would: the caller hears silence now,
        and the model remembers only what the caller heard."""
        item, played = self.policy.played_item_ms()
        if item and not self.policy.interrupted(item):
            end = min(played, self.policy.generated_ms(item))
            self._spawn(self.session.truncate(item, end) if self.session else None)
        if self._item_id:
            self._cut_items.add(self._item_id)
        if self._response_active:
            self._spawn(self.session.cancel_response() if self.session else None)
        self._clear_playout()

    async def inject(
        self, *, text: str | None = None, image_data_url: str | None = None, role: str = "user"
    ) -> tuple[bool, str]:
        """Add a conversation item the model sees from its next reply on."""
        if not self.provider.capabilities.conversation:
            return (
                False,
                f"this call's provider ({self.provider.name}) has no conversation to add to",
            )
        if self.session is None or not self._ready.is_set():
            return False, "the call is not connected to its model yet"
        try:
            if text is not None:
                await self.session.add_text_item(text, "system" if role == "system" else "user")
            if image_data_url is not None:
                await self.session.add_image_item(image_data_url)
        except ProviderError as exc:
            return False, f"the model of this call cannot take that: {exc}"
        except ValueError as exc:
            return False, str(exc)
        return True, ""

    def _emit_turns(self, turns: list[Any]) -> None:
        for t in turns:
            latency = self._latency_ms.pop(t.item_id, None)
            self.emit(
                "turn.agent",
                text=t.text,
                item_id=t.item_id,
                interrupted=t.interrupted,
                played_ms=t.played_ms,
                **({} if latency is None else {"latency_ms": latency}),
            )

    async def _hangup(self, reason: str) -> None:
        if self._hangup_reason is None:
            self._hangup_reason = reason
        await self.call.hangup(reason)

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
                await self._hangup(f"transferred after {reason}")
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
    *,
    bus: Bus | None = None,
    meta: CallMeta | None = None,
) -> CallResult:
    """Drive one call from offer to end. Never raises for call-level failures."""
    return await CallSession(call, provider, config, options, limits, bus=bus, meta=meta).run()
