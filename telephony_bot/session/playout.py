"""What the caller hears of the bot. The model's audio and the engine's own prompts reach the
call's media only through here, each recorded in the ledger as it is queued; the policy's
actions (stop, pause, resume, cancel, truncate) are carried out here, whoever caused them: the
caller's voice, the provider, an operator's `say`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from telephony_bot import log
from telephony_bot.session import prompts
from telephony_bot.session.context import CallContext
from telephony_bot.session.turns import (
    Action,
    CancelResponse,
    Cause,
    PausePlayout,
    ResumePlayout,
    ResumeTurn,
    StopPlayout,
    Truncate,
)

_log = log.get("session")

# After the last frame of a goodbye leaves, before the BYE: the far end plays what its jitter
# buffer holds (100-300 ms on a busy path; more on a loaded softphone, as on a busy test
# machine where 0.5 s clipped the last word about one call in seven)
HANGUP_TAIL_S = 0.8


class Playout:
    def __init__(self, ctx: CallContext) -> None:
        self.ctx = ctx
        self.media = ctx.call.media
        self.policy = ctx.policy
        self.last_response_status = ""  # of the provider's latest response (false barge-in)

    # ---- audio in ----

    def model_audio(self, item_id: str, pcm: bytes) -> None:
        """Queue the model's audio for `item_id` (PCM16 at the provider's rate)."""
        ctx = self.ctx
        assert ctx.session is not None
        ms = len(pcm) * 500 // ctx.session.audio_rate  # as generated: what truncation counts
        ctx.usage.audio_out_ms += ms
        if ctx.result.first_audio_at is None:
            ctx.result.first_audio_at = time.time()
        if ctx.from_provider is not None:
            pcm = ctx.from_provider.process(pcm)
        played = self.media.played_ms
        self.media.write(pcm)
        ctx.first_audio.set()
        ctx.touch()
        self.act(self.policy.bot_audio(item_id, ms, ctx.now_ms(), pcm, played))

    def model_audio_done(self, item_id: str) -> None:
        self.media.end_of_stream()
        self.policy.item_done(item_id)

    def prompt(self, name: str, closing: bool = False) -> None:
        """Play one of the engine's own phrases (`closing`: its last words on this call)."""
        self._engine_audio(prompts.load(name, self.ctx.media_rate), closing)

    def recorded(self, pcm24: bytes, closing: bool = False) -> None:
        """Play a plan's recorded prompt (24 kHz PCM16), as the engine's own words."""
        self._engine_audio(prompts.at_rate(pcm24, self.ctx.media_rate), closing)

    def _engine_audio(self, pcm: bytes, closing: bool) -> None:
        if closing:
            self.ctx.closing = True
        rate = self.ctx.media_rate
        played = self.media.played_ms
        self.media.write(pcm)
        self.act(self.policy.engine_audio(len(pcm) * 500 // rate, self.ctx.now_ms(), pcm, played))
        self.media.end_of_stream()

    # ---- cutting the bot off ----

    def interrupt(self, by: Cause) -> None:
        """Cut the bot off now, as a barge-in would: the caller hears silence from the next
        frame, and the model remembers only what the caller heard."""
        self.act(self.policy.interrupt(self.ctx.now_ms(), self.media.played_ms, by=by))

    def provider_cancelled(self) -> None:
        """The provider cancelled its reply itself (its VAD heard the caller first)."""
        m = self.media
        self.act(self.policy.provider_cancelled(self.ctx.now_ms(), m.played_ms, m.queued_ms))

    def silence(self) -> None:
        """Drop what is queued for the engine's own reasons (a lost connection, a closing)."""
        self._clear()
        self.act(self.policy.playout_cleared(self.ctx.now_ms(), self.media.played_ms))

    def act(self, actions: list[Action]) -> None:
        """Carry out the policy's actions."""
        ctx, session = self.ctx, self.ctx.session
        for a in actions:
            if isinstance(a, StopPlayout):
                self._stopped(a.by)
            elif isinstance(a, PausePlayout):
                self.media.pause()
            elif isinstance(a, ResumePlayout):
                self.media.resume()
                _log.info("barge-in not confirmed: bot audio resumed")
            elif isinstance(a, CancelResponse):
                ctx.spawn(session.cancel_response() if session else None)
            elif isinstance(a, Truncate):
                _log.info("truncate", item_id=a.item_id, audio_end_ms=a.audio_end_ms)
                ctx.spawn(session.truncate(a.item_id, a.audio_end_ms) if session else None)
            elif isinstance(a, ResumeTurn):
                # Only when the provider really cut its reply short on a noise.
                if self.last_response_status == "cancelled" and not ctx.response_active:
                    _log.info("false interruption: asking the model to go on")
                    ctx.spawn(ctx.ask_reply())

    def _clear(self) -> int:
        """Drop all queued bot audio; the next reply starts clean (no tail of this one)."""
        if self.ctx.from_provider is not None:
            self.ctx.from_provider.reset()
        return self.media.clear()

    def _stopped(self, by: Cause) -> None:
        dropped = self._clear()
        played = self.media.played_ms
        it = self.policy.last_interruption
        if by not in ("caller", "provider", "dtmf"):  # the caller did not interrupt
            _log.info("bot cut off", by=by, dropped_ms=dropped, played_ms=played)
            return
        self.ctx.result.barge_ins += 1
        _log.info("barge_in", by=by, dropped_ms=dropped, played_ms=played)
        data: dict[str, Any] = {"by": by, "dropped_ms": dropped}
        if it is not None:
            heard = (
                it.truncate_ms if by == "provider" and it.truncate_ms is not None else it.played_ms
            )
            data["played_ms"] = heard
            if by == "caller":  # latency: the caller's voice onset → silence
                data["latency_ms"] = self.ctx.now_ms() - it.started_ms
        self.ctx.emit("barge_in", **data)

    # ---- the end of the call ----

    async def played_out(self, max_wait_s: float) -> None:
        """Wait until what is queued now has been played (at most `max_wait_s`)."""
        loop, media = self.ctx.loop, self.media
        deadline = loop.time() + max_wait_s
        target = media.played_ms + media.queued_ms
        while media.played_ms < target and loop.time() < deadline:
            await asyncio.sleep(0.05)

    async def hang_up_after_playout(self, reason: str, max_wait_s: float = 15.0) -> None:
        """Hang up once everything queued now (the last sentence, a goodbye) was heard."""
        started = self.ctx.loop.time()
        await asyncio.sleep(0.3)  # let the last sentence's audio arrive
        self.ctx.closing = True  # nothing the model sends from now on is queued
        await self.played_out(max(0.0, max_wait_s - (self.ctx.loop.time() - started)))
        # The last frame has left the media, but the caller hears it only once it is out of
        # the line's jitter buffers (adaptive ones grow to 100-300 ms on a busy path): a BYE
        # sent sooner clips the goodbye.
        await asyncio.sleep(HANGUP_TAIL_S)
        await self.ctx.hangup(reason)
