"""The two loops of a connected call.

`uplink`: every caller frame goes through the engine's VAD into the barge-in policy, and on
to the provider. `downlink`: every provider event is dispatched - audio to the playout,
transcripts to the turns, function calls to the tools, errors to the recovery - and the
bot's turns are reported as the caller heard them.
"""

from __future__ import annotations

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
    SpeechStarted,
    SpeechStopped,
    TranscriptDelta,
)
from telephony_bot.session.context import CallContext
from telephony_bot.session.control import CallControl
from telephony_bot.session.failover import Failover
from telephony_bot.session.ledger import AgentTurn
from telephony_bot.session.playout import Playout
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
    ) -> None:
        self.ctx = ctx
        self.failover = failover
        self.playout = playout
        self.control = control
        self.tools = tools
        self.policy = ctx.policy
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
            if isinstance(ev, AudioDelta):
                self._audio(ev)
            elif isinstance(ev, AudioDone):
                self.playout.model_audio_done(ev.item_id)
            elif isinstance(ev, SpeechStarted):
                self.playout.act(self.policy.provider_speech_started(ctx.now_ms()))
                self.tools.caller_turn(started=True)
            elif isinstance(ev, SpeechStopped):
                self.playout.act(self.policy.provider_speech_stopped(ctx.now_ms()))
                self._reply_due_from = ctx.caller_voice_ms
                self.tools.caller_turn(started=False)
            elif isinstance(ev, TranscriptDelta):
                self._transcript(ev)
            elif isinstance(ev, FunctionCall):
                # Run it once its response completes: a cancelled response's call is void.
                self.tools.called(ev)
            elif isinstance(ev, ResponseDone):
                await self._response_done(ev)
            elif isinstance(ev, ProviderErrorEvent):
                await self._provider_error(ev)
            elif isinstance(ev, Reconnected):
                _log.info("provider reconnected", attempt=ev.attempt)
                ctx.emit("provider.reconnected", attempt=ev.attempt)

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
        if ev.role == "user":
            ctx.result.turns_user += 1
            ctx.conversation.user(ev.text)
            ctx.emit("turn.user", text=ev.text, item_id=ev.item_id)
        else:
            ctx.result.turns_agent += 1
            # a truncated reply's final transcript can be empty: keep what was said
            said = self._agent_text.pop(ev.item_id, "")
            ctx.ledger.transcript(ev.item_id, ev.text or said.strip())
        _log.info(f"turn.{ev.role}", text=ev.text, item_id=ev.item_id)

    async def _response_done(self, ev: ResponseDone) -> None:
        ctx = self.ctx
        ctx.response_active = False
        self.playout.last_response_status = ev.status
        if ev.status == "cancelled":
            self.playout.provider_cancelled()
        self.tools.response_done(ev.response_id, ev.status)
        ctx.usage.add_response(ev.usage)
        self.playout.act(self.policy.response_done(ctx.now_ms()))
        _log.info("response done", response_id=ev.response_id, status=ev.status)
        await self.control.response_done()

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

    # ---------- the bot's turns, as heard ----------

    def report_turns(self, turns: list[AgentTurn]) -> None:
        for t in turns:
            self.ctx.conversation.assistant(t)
            latency = self._latency_ms.pop(t.item_id, None)
            self.ctx.emit(
                "turn.agent",
                text=t.text,
                item_id=t.item_id,
                interrupted=t.interrupted,
                played_ms=t.played_ms,
                **({} if latency is None else {"latency_ms": latency}),
            )
