"""The two loops of a connected call.

`uplink`: every caller frame goes through the engine's VAD into the barge-in policy, and on
to the provider. `downlink`: every provider event is dispatched - audio to the playout,
transcripts to the turns, function calls to the tools, errors to the recovery - and the
bot's turns are reported as the caller heard them.
"""

from __future__ import annotations

import asyncio

from telephony_bot import log
from telephony_bot.media.vad import FrameVad
from telephony_bot.providers.base import (
    AudioDelta,
    AudioDone,
    FunctionCall,
    ProviderErrorEvent,
    ProviderSession,
    Reconnected,
    ResponseDone,
    ResponseStarted,
    SpeechStarted,
    SpeechStopped,
    TranscriptDelta,
)
from telephony_bot.session.context import CallContext
from telephony_bot.session.control import CallControl
from telephony_bot.session.conversation import heard_text
from telephony_bot.session.failover import Failover
from telephony_bot.session.key_presses import KeyPresses
from telephony_bot.session.ledger import AgentTurn
from telephony_bot.session.playout import Playout
from telephony_bot.session.stall import Filler, Stalled, StallWatch
from telephony_bot.session.tool_calls import ToolCalls

_log = log.get("session")

FRAME_MS = 20


class MediaLoops:
    def __init__(
        self,
        ctx: CallContext,
        playout: Playout,
        control: CallControl,
        tools: ToolCalls,
        failover: Failover,
        keys: KeyPresses,
    ) -> None:
        self.ctx = ctx
        self.keys = keys
        self.failover = failover
        self.playout = playout
        self.control = control
        self.tools = tools
        self.policy = ctx.policy
        self.stall: StallWatch = ctx.stall
        self._reconnected = 0  # Reconnected events seen (a lost connection came back)
        self._item_id = ""  # the assistant item whose audio arrived last
        self._agent_text: dict[str, str] = {}  # assistant transcript deltas, by item
        # turn latency (metrics): caller's last voiced frame (ctx.caller_voice_ms) → first
        # audio of the next reply
        self._reply_due_from: int | None = None  # set when the caller's turn ended
        self._latency_ms: dict[str, int] = {}  # by assistant item, until its turn.agent

    # ---------- caller → provider ----------

    async def uplink(self) -> None:
        ctx = self.ctx
        assert ctx.session is not None
        vad = FrameVad(input_rate=ctx.media_rate)
        media = ctx.call.media
        act = self.playout.act
        while pcm := await media.read_frame():
            now = ctx.now_ms()
            ctx.usage.audio_in_ms += FRAME_MS
            played = media.played_ms
            # the level of what was played: the ledger keeps levels only for the echo gate
            act(self.policy.played(played, None, now))
            self.report_turns(ctx.ledger.finished(played))
            v = vad.process(pcm)
            if v.speech:
                ctx.touch()
                ctx.caller_voice_ms = now
            act(self.policy.caller_frame(v.speech, v.dbfs, now))
            act(self.policy.tick(now))
            self.stall.caller_frame(now, v.speech and not self.policy.bot_speaking)
            self._watch_stall(now)
            up = ctx.to_provider  # the provider's rate (another after a failover)
            await ctx.session.send_audio(pcm if up is None else up.process(pcm))

    # ---------- provider → caller ----------

    async def downlink(self) -> None:
        """Each provider session's events until it ends; after a failover, the next one's."""
        ctx = self.ctx
        while (session := ctx.session) is not None:
            await self._dispatch(session)
            if ctx.session is session:
                return  # it ended and nobody took over: the call is ending

    async def _dispatch(self, session: ProviderSession) -> None:
        ctx = self.ctx
        async for ev in session.events():
            if ctx.session is not session:
                return  # another provider took over: what this one still says is void
            self._signs_of_life(ev)
            if isinstance(ev, AudioDelta):
                self._audio(ev)
            elif isinstance(ev, AudioDone):
                self.playout.model_audio_done(ev.item_id)
            elif isinstance(ev, SpeechStarted):
                self.stall.no_reply_due()  # the caller speaks again: their turn is not over
                self.playout.act(self.policy.provider_speech_started(ctx.now_ms()))
                self.tools.caller_turn(started=True)
            elif isinstance(ev, SpeechStopped):
                self.stall.reply_due(ctx.now_ms())
                self.playout.act(self.policy.provider_speech_stopped(ctx.now_ms()))
                self._reply_due_from = ctx.caller_voice_ms
                self.tools.caller_turn(started=False)
            elif isinstance(ev, TranscriptDelta):
                self._transcript(ev)
            elif isinstance(ev, FunctionCall):
                # Run it once its response completes: a cancelled response's call is void.
                self.tools.called(ev)
            elif isinstance(ev, ResponseStarted):
                self.stall.response_started(ctx.now_ms())
            elif isinstance(ev, ResponseDone):
                await self._response_done(ev)
            elif isinstance(ev, ProviderErrorEvent):
                await self._provider_error(ev)
            elif isinstance(ev, Reconnected):
                self._reconnected += 1
                _log.info("provider reconnected", attempt=ev.attempt)
                ctx.emit("provider.reconnected", attempt=ev.attempt)

    def _signs_of_life(self, ev: object) -> None:
        """What the stall watch learns from any event: the provider hears the caller, or
        its reply goes on."""
        now = self.ctx.now_ms()
        if isinstance(ev, AudioDelta | FunctionCall):
            self.stall.response_event(now)
        elif isinstance(ev, TranscriptDelta):
            if ev.role == "assistant":
                self.stall.response_event(now)
            else:
                self.stall.provider_heard(now)
        elif isinstance(ev, SpeechStarted | SpeechStopped | ResponseStarted):
            self.stall.provider_heard(now)

    def _audio(self, ev: AudioDelta) -> None:
        ctx = self.ctx
        if ev.item_id and self.policy.interrupted(ev.item_id):
            return  # late audio of a reply the caller interrupted: never play it
        if ctx.closing:
            return  # the call is closing with the engine's own last words
        ctx.response_active = True
        if ev.item_id and ev.item_id != self._item_id:
            self._item_id = ev.item_id
            self.policy.reset_item(ev.item_id)
            if self._reply_due_from is not None:
                self._latency_ms[ev.item_id] = ctx.now_ms() - self._reply_due_from
                self._reply_due_from = None
        self.playout.model_audio(ev.item_id, ev.pcm)

    def _transcript(self, ev: TranscriptDelta) -> None:
        ctx = self.ctx
        if not ev.final and ev.role == "assistant":
            self._agent_text[ev.item_id] = self._agent_text.get(ev.item_id, "") + ev.text
        if not ev.final:
            return
        if ev.role == "user" and not ev.text.strip():
            self.stall.no_reply_due()  # the provider heard no words: no reply comes
        privacy = ctx.options.privacy
        if ev.role == "user":
            ctx.result.turns_user += 1
            ctx.conversation.user(ev.text)  # the model's record: as said
            ctx.emit("turn.user", text=privacy.transcript(ev.text), item_id=ev.item_id)
        else:
            ctx.result.turns_agent += 1
            # a truncated reply's final transcript can be empty: keep what was said
            said = self._agent_text.pop(ev.item_id, "")
            ctx.ledger.transcript(ev.item_id, ev.text or said.strip())
        _log.info(f"turn.{ev.role}", item_id=ev.item_id, **self._logged_text(ev.text))

    def _logged_text(self, text: str) -> dict[str, object]:
        """What a log line may say of a transcript: the text (redacted) at debug level or
        with logging.transcripts, else only its length."""
        privacy = self.ctx.options.privacy
        if privacy.log_transcripts or log.debug_enabled():
            return {"text": privacy.transcript(text), "chars": len(text)}
        return {"chars": len(text)}

    async def _response_done(self, ev: ResponseDone) -> None:
        ctx = self.ctx
        ctx.response_active = False
        self.stall.response_done()
        self.playout.last_response_status = ev.status
        if ev.status == "cancelled":
            self.playout.provider_cancelled()
        self.tools.response_done(ev.response_id, ev.status)
        ctx.usage.add_response(ev.usage, ctx.options.prices.of(ctx.config.provider))
        self.playout.act(self.policy.response_done(ctx.now_ms()))
        _log.info("response done", response_id=ev.response_id, status=ev.status)
        await self.control.response_done()
        await self.keys.response_done()

    async def _provider_error(self, ev: ProviderErrorEvent) -> None:
        what: dict[str, object] = {
            "code": ev.code,
            "message": ev.message,
            "retryable": ev.retryable,
            "fatal": ev.fatal,
        }
        _log.warning("provider error", event_id=ev.event_id, **what)
        self.ctx.emit("provider.error", **what)
        if ev.code == "conversation_already_has_active_response":
            self.control.say_collided()
            self.tools.reply_refused()
        if ev.fatal:
            why = f"provider error: {ev.code or ev.message}"
            if not await self.failover.take_over(why):
                await self.control.give_up(why)
        elif ev.code == "connection_lost":
            self.playout.silence()
            self.playout.prompt("reconnecting")
            if self.failover.has_next():
                self.ctx.spawn(self._back_or_over(self.ctx.session, self._reconnected))

    async def _back_or_over(self, session: ProviderSession | None, reconnected: int) -> None:
        """A lost connection with another provider to turn to: give the client
        `reconnect_ms` to restore it, then hand the call over (the caller is waiting)."""
        ctx = self.ctx
        await asyncio.sleep(ctx.options.stall.reconnect_ms / 1000)
        if ctx.session is not session or self._reconnected != reconnected or ctx.closing:
            return
        if not await self.failover.take_over("connection lost", bridge=False):
            _log.warning("no provider took over: the client goes on reconnecting")

    # ---------- a provider that stopped answering ----------

    def _watch_stall(self, now: int) -> None:
        ctx = self.ctx
        if ctx.closing or not ctx.provider.capabilities.speech:
            return
        # a tool the model waits on (not one whose result will follow: tool_tasks holds
        # those no longer) has its own filler, and asks for the reply itself
        busy = bool(ctx.tool_tasks) or self.control.hangup_pending is not None
        for a in self.stall.tick(now, ctx.call.media.queued_ms, busy=busy):
            if isinstance(a, Filler):
                _log.warning(
                    "no reply yet: filler", provider=ctx.config.provider, kind=a.kind,
                    silent_ms=a.silent_ms,
                )  # fmt: skip
                self.playout.prompt("one_moment")
            elif isinstance(a, Stalled):
                ctx.spawn(self._stalled(a), name="stalled")

    async def _stalled(self, a: Stalled) -> None:
        ctx = self.ctx
        provider = ctx.config.provider
        _log.warning("provider stalled", provider=provider, kind=a.kind, waited_ms=a.waited_ms)
        ctx.result.stalls.append({"provider": provider, "kind": a.kind, "waited_ms": a.waited_ms})
        ctx.emit("provider.stalled", provider=provider, kind=a.kind, waited_ms=a.waited_ms)
        why = f"stalled: {a.kind}"
        if not await self.failover.take_over(why, restart=True):
            await self.control.give_up(f"provider {why}")

    # ---------- the bot's turns, as heard ----------

    def report_turns(self, turns: list[AgentTurn]) -> None:
        """The bot's turns once they ended, as the caller heard them: a reply cut short
        keeps the words the caller heard (`generated_text`: all the model had said)."""
        privacy = self.ctx.options.privacy
        for t in turns:
            self.ctx.conversation.assistant(t)
            heard = heard_text(t)
            cut = {} if heard == t.text else {"generated_text": privacy.transcript(t.text)}
            latency = self._latency_ms.pop(t.item_id, None)
            _log.info(
                "turn.agent", item_id=t.item_id, interrupted=t.interrupted,
                played_ms=t.played_ms, **self._logged_text(heard),
            )  # fmt: skip
            self.ctx.emit(
                "turn.agent",
                text=privacy.transcript(heard),
                item_id=t.item_id,
                interrupted=t.interrupted,
                played_ms=t.played_ms,
                **cut,
                **({} if latency is None else {"latency_ms": latency}),
            )
