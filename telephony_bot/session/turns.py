"""Barge-in and turn policy: decides when the caller has really interrupted the bot.

Pure logic, no I/O, no asyncio, no clock: every input carries `now_ms`, a monotonic millisecond
timestamp the caller of this module supplies, and every method returns the actions to take
(`list[Action]`, usually empty). The session core performs them and logs `Interruption`.

Two signals, fastest first
--------------------------
1. The engine's own VAD (`media.vad.FrameVad`, WebRTC VAD on every 20 ms caller frame) is the
   first stage. It reacts within a frame or two of onset, long before the provider's event can
   arrive over the network. While the bot is speaking (audio played within the last
   `speaking_hangover_ms`, or still queued), a run of caller speech frames that are not echo and
   that lasts `min_interrupt_ms` over the bot's speech interrupts it: `StopPlayout` (clear the
   playout buffer, the caller hears silence from the next frame), `CancelResponse` (only while a
   response is still being generated) and `Truncate` (so the model's memory of what it said ends
   where the caller stopped hearing it). One tolerated non-speech frame inside a run does not
   reset it; two do. Shorter runs - a cough, a "mhm" - do nothing.
2. The provider's own VAD (`speech_started`) is the second stage. If the local run already
   qualifies the interruption happens (once: a late provider event after a local interruption
   does nothing). If the provider hears speech while the bot talks but the engine's VAD hears
   none (no run reaching `min_interrupt_ms`) within `false_interrupt_ms`, the provider was
   fooled (echo, noise, a cough) and may have cut its own response: `ResumeTurn` tells the core
   to ask for the turn again / resume. A run still in progress when the window closes is
   waited for.

Echo gating
-----------
Without a perfect echo canceller the caller side carries the bot's own voice, attenuated by the
echo return loss and delayed by the round trip. A caller frame whose level is at or below
`max(level played in the last echo_window_ms) - echo_return_loss_db` is explained as echo and
does not count as caller speech, however sure the VAD is. A caller talking over the bot is
louder than that bound and counts.

`echo_return_loss_db` is the worst case; most lines return far less echo (a handset with a
good echo canceller, a softphone, a digital trunk: often nothing at all). So the policy also
measures the line: for every caller frame while the bot speaks it notes how far below the
played level the caller side was, and the smallest such distance over the last
`erl_window_ms` (leaving out the newest `erl_guard_ms`, where a caller's own onset would be)
is the echo this line really returns. The gate then sits `erl_margin_db` under that,
between `echo_return_loss_db` and `max_echo_return_loss_db` — so on a quiet line the quiet
first syllables of a caller's barge-in count at once, and on an echoing line nothing changes.
Measuring starts `echo_window_ms` after the bot starts speaking (its echo may still be on the
way before that), and until `erl_min_ms` has been measured the worst case applies.

Every interruption, one decision point
--------------------------------------
The caller's voice (above), the provider cancelling its own reply (`provider_cancelled`: its
VAD heard the caller first), an operator's `say` that cuts the bot off (`interrupt(by="say")`),
a key the caller pressed over the bot (`interrupt(by="dtmf")`) and the output gate: each goes
through `_cut`, which returns the same actions in the same order - `StopPlayout(by)`,
`CancelResponse` while a response is still being generated, `Truncate` - and records an
`Interruption` with its cause.

Truncation rule
---------------
`Truncate(item_id, audio_end_ms)` with `audio_end_ms = min(played_ms, generated_ms)` for the
item being played: the caller heard `played_ms` of it (what actually left the media, counted
from where the item started on the media's cumulative played axis), and the server rejects
an end beyond the audio it generated. Never negative, never twice for one interruption or one
item. Audio that arrives for an interrupted item afterwards is ignored (the core should drop it
rather than play it).

Timeline
--------
The played audio itself is recorded once, in `session.ledger.PlayoutLedger` (items back to
back on the played axis, the engine's prompts among them, levels, turns as heard); this policy
writes to it as bot audio is queued and played and clears it when it decides the playout is
cleared.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from telephony_bot.session.ledger import SILENCE_DBFS, PlayoutLedger

Cause = Literal["caller", "provider", "say", "gate", "dtmf"]
MIN_INTERRUPT_MS = 150  # the default; a dialplan may set min_interrupt_ms in this range:
MIN_INTERRUPT_RANGE_MS = (40, 2000)


@dataclass(frozen=True)
class BargeInSettings:
    min_interrupt_ms: int = MIN_INTERRUPT_MS  # caller speech over the bot must last this long
    echo_return_loss_db: float = 15.0  # caller level <= played level - this is echo of the bot
    echo_window_ms: int = 300  # how far back to look at played levels (covers the echo delay)
    false_interrupt_ms: int = 800  # provider speech_started with no local speech within this
    enabled: bool = True
    frame_ms: int = 20  # duration of one caller frame (`caller_frame` now_ms = end of the frame)
    speaking_hangover_ms: int = 100  # the bot counts as speaking this long after audio played
    # First stage: after this much caller speech over the bot, pause (not drop) its audio, so
    # the bot goes quiet fast; a noise that ends before `min_interrupt_ms` resumes it. 0, or
    # not less than min_interrupt_ms: off.
    pause_after_ms: int = 40
    # The line's measured echo (see "Echo gating"): off when max <= echo_return_loss_db.
    max_echo_return_loss_db: float = 40.0
    erl_margin_db: float = 6.0
    erl_window_ms: int = 2000
    erl_guard_ms: int = 200
    erl_min_ms: int = 300

    def __post_init__(self) -> None:
        if self.min_interrupt_ms < 0 or self.echo_window_ms < 0 or self.false_interrupt_ms < 0:
            raise ValueError("barge-in durations must be >= 0")
        if self.frame_ms <= 0:
            raise ValueError(f"frame_ms must be > 0, got {self.frame_ms}")
        if self.pause_after_ms < 0:
            raise ValueError("pause_after_ms must be >= 0")


# ---------- actions ----------


@dataclass(frozen=True)
class StopPlayout:
    """Clear the playout buffer now: the caller must stop hearing the bot."""

    by: Cause = "caller"  # who cut the bot off (see `Interruption.cause`)


@dataclass(frozen=True)
class CancelResponse:
    """Cancel the response the provider is still generating."""


@dataclass(frozen=True)
class Truncate:
    """Tell the provider the caller heard only `audio_end_ms` of `item_id`'s audio."""

    item_id: str
    audio_end_ms: int


@dataclass(frozen=True)
class ResumeTurn:
    """The provider's speech_started was a false interruption: ask for the turn again / resume."""


@dataclass(frozen=True)
class PausePlayout:
    """Hold the bot's audio (keep it queued): the caller may be starting to talk."""


@dataclass(frozen=True)
class ResumePlayout:
    """It was only a noise: play the held audio on from where it stopped."""


Action = StopPlayout | CancelResponse | Truncate | ResumeTurn | PausePlayout | ResumePlayout


@dataclass(frozen=True)
class Interruption:
    """One confirmed barge-in, for the core to log."""

    started_ms: int  # onset of the caller's speech over the bot (start of its first frame)
    confirmed_ms: int  # now_ms when the policy decided
    item_id: str  # the item being played ("" if none was known)
    played_ms: int  # how much of the item had been played (unclamped)
    truncate_ms: int | None  # the Truncate sent, None if none was
    by_provider: bool = False  # confirmed on the provider's speech_started, not a caller frame
    # caller: their voice over the bot; provider: it cancelled its reply itself; say: an
    # operator's `say` cut the bot off; gate: the output gate stopped a sentence; dtmf: the
    # caller pressed a key over the bot
    cause: Cause = "caller"


# ---------- policy ----------


@dataclass
class _Run:
    onset: int  # start of the first qualifying frame's audio
    last_speech: int  # now_ms (end) of the last qualifying frame
    gap: int = 0  # consecutive non-qualifying frames since last_speech
    over_bot_since: int | None = None  # start of the part of the run heard over the bot
    interrupted: bool = False  # this run already caused an interruption
    qualified: bool = False  # the run reached min_interrupt_ms (speech, not over-bot)


@dataclass
class _PendingCheck:
    """The provider said speech_started while the bot spoke; local VAD has not confirmed."""

    since: int
    deadline: int
    resolved: bool = False


@dataclass
class _Played:
    total: int = 0  # last played_ms_total reported (to see it advance)
    last_advance_ms: int | None = None  # now_ms when played_ms_total last grew
    levels: deque[tuple[int, float]] = field(default_factory=deque)


class _EchoMeter:
    """How far below the bot's played level the caller side stays while the bot speaks."""

    def __init__(self, s: BargeInSettings) -> None:
        self.s = s
        self._gaps: deque[tuple[int, float]] = deque()  # (now_ms, played max - caller level)

    def note(self, now_ms: int, played_max: float, caller_level: float) -> None:
        if played_max <= SILENCE_DBFS:
            return
        self._gaps.append((now_ms, played_max - caller_level))
        horizon = now_ms - self.s.erl_window_ms
        while self._gaps and self._gaps[0][0] < horizon:
            self._gaps.popleft()

    def loss_db(self, now_ms: int) -> float:
        """The echo return loss to assume now (dB)."""
        s = self.s
        if s.max_echo_return_loss_db <= s.echo_return_loss_db:
            return s.echo_return_loss_db
        settled = [g for t, g in self._gaps if t <= now_ms - s.erl_guard_ms]
        if len(settled) * s.frame_ms < s.erl_min_ms:
            return s.echo_return_loss_db
        measured = min(settled) - s.erl_margin_db
        return max(s.echo_return_loss_db, min(s.max_echo_return_loss_db, measured))


class TurnPolicy:
    """Decides barge-in from local VAD frames, provider VAD events and playout progress."""

    def __init__(
        self, settings: BargeInSettings | None = None, ledger: PlayoutLedger | None = None
    ) -> None:
        self.settings = settings if settings is not None else BargeInSettings()
        self.ledger = ledger if ledger is not None else PlayoutLedger(self.settings.frame_ms)
        self._played = _Played()
        self._echo = _EchoMeter(self.settings)
        self._speaking_since: int | None = None
        self._run: _Run | None = None
        self._pending: _PendingCheck | None = None
        self._paused = False
        self._response_active = False
        self._truncated: set[str] = set()  # items already truncated / interrupted
        self._fresh: set[str] = set()  # items reset_item() asked to start anew
        self._now: int | None = None  # the latest now_ms seen
        self.interruptions: list[Interruption] = []
        self.false_interruptions = 0

    # ---- state ----

    @property
    def bot_speaking(self) -> bool:
        """Bot audio is queued, or some was played within `speaking_hangover_ms` of the latest
        `now_ms` this policy was given."""
        return self._now is not None and self._speaking(self._now)

    def _speaking(self, now_ms: int) -> bool:
        if self.ledger.model_queued_ms() > 0:
            return True
        last = self._played.last_advance_ms
        return last is not None and now_ms - last <= self.settings.speaking_hangover_ms

    @property
    def last_interruption(self) -> Interruption | None:
        return self.interruptions[-1] if self.interruptions else None

    @property
    def response_active(self) -> bool:
        return self._response_active

    def interrupted(self, item_id: str) -> bool:
        """The item was cut by a barge-in: drop any audio of it that still arrives."""
        return item_id in self._truncated and item_id not in self._fresh

    def generated_ms(self, item_id: str) -> int:
        """Audio generated so far for the item's current stretch of playout (0 if unknown)."""
        entry = self.ledger.entry(item_id)
        return entry.generated if entry else 0

    def played_item_ms(self) -> tuple[str, int]:
        """(item being played, ms of it played so far, unclamped); ("", 0) if none."""
        entry = self.ledger.current()
        if entry is None:
            return "", 0
        return entry.item_id, max(0, self.ledger.played_ms - entry.start)

    # ---- bot side ----

    def bot_audio(
        self,
        item_id: str,
        duration_ms: int,
        now_ms: int,
        pcm: bytes = b"",
        played_ms: int | None = None,
    ) -> list[Action]:
        """The provider generated `duration_ms` more audio for `item_id`, queued for playout
        (`pcm`: the audio, for the echo gate's levels; `played_ms`: the media's position)."""
        if duration_ms <= 0:
            return self._expire(now_ms)
        if self.interrupted(item_id):
            return self._expire(now_ms)  # late audio of an interrupted item: not played
        self._response_active = True
        fresh = item_id in self._fresh
        self._fresh.discard(item_id)
        self._truncated.discard(item_id)
        self.ledger.queued(item_id, duration_ms, pcm, played_ms, new_entry=fresh)
        return self._expire(now_ms)

    def engine_audio(
        self, duration_ms: int, now_ms: int, pcm: bytes = b"", played_ms: int | None = None
    ) -> list[Action]:
        """The engine queued a prompt of its own (filler, apology, goodbye): it takes its
        place in the playout, but it is no model item to interrupt or truncate."""
        self.ledger.queued("", duration_ms, pcm, played_ms)
        return self._expire(now_ms)

    def played(self, played_ms_total: int, level_dbfs: float | None, now_ms: int) -> list[Action]:
        """Every playout frame: the media's cumulative played ms and the level of what was
        played (None: the level of the audio the ledger holds for that stretch)."""
        p = self._played
        level = self.ledger.played(played_ms_total)
        if level_dbfs is not None:
            level = level_dbfs
        if played_ms_total > p.total:
            p.last_advance_ms = now_ms
        p.total = played_ms_total
        p.levels.append((now_ms, level))
        self._trim_levels(now_ms)
        return self._expire(now_ms)

    def playout_cleared(self, now_ms: int, played_ms: int | None = None) -> list[Action]:
        """The core cleared the playout buffer for its own reasons: queued audio is gone."""
        self._cleared(played_ms)
        return self._expire(now_ms)

    def interrupt(self, now_ms: int, played_ms: int, *, by: Cause) -> list[Action]:
        """Cut the bot off for a reason other than the caller's voice (an operator's `say`
        with interrupt, the output gate): the same actions as a barge-in."""
        return self._cut(now_ms, played_ms, cause=by, started_ms=now_ms) + self._expire(now_ms)

    def provider_cancelled(self, now_ms: int, played_ms: int, queued_ms: int) -> list[Action]:
        """The provider cancelled its reply itself (its VAD heard the caller first). It cannot
        unsend audio: stop what is still queued (`queued_ms` in the media) and truncate the
        item to what was heard - unless nothing is queued or the item was already cut."""
        entry = self.ledger.current()
        if entry is None or self.interrupted(entry.item_id) or queued_ms == 0:
            return self._expire(now_ms)
        actions = self._cut(now_ms, played_ms, cause="provider", started_ms=now_ms, cancel=False)
        return actions + self._expire(now_ms)

    def response_done(self, now_ms: int) -> list[Action]:
        """The provider finished (or cancelled) the response: nothing left to cancel."""
        self._response_active = False
        return self._expire(now_ms)

    def item_done(self, item_id: str) -> None:
        """All audio of `item_id` has been generated."""
        self.ledger.done(item_id)

    def reset_item(self, item_id: str) -> None:
        """A new assistant item starts under this id: its counters start from zero."""
        self._fresh.add(item_id)
        self._response_active = True

    # ---- caller side ----

    def caller_frame(self, speech: bool, level_dbfs: float, now_ms: int) -> list[Action]:
        """The engine's VAD result for one caller frame (`now_ms` = end of the frame)."""
        s = self.settings
        self._trim_levels(now_ms)
        qualifying = speech and not self._is_echo(level_dbfs, now_ms)
        speaking = self._speaking(now_ms)
        if not speaking:
            self._speaking_since = None
        elif self._speaking_since is None:
            self._speaking_since = now_ms
        elif now_ms - self._speaking_since >= s.echo_window_ms and self._played.levels:
            # The bot has spoken long enough for its echo, if any, to have come back.
            self._echo.note(now_ms, max(v for _, v in self._played.levels), level_dbfs)
        run = self._run
        if qualifying:
            if run is None:
                run = self._run = _Run(onset=now_ms - s.frame_ms, last_speech=now_ms)
            else:
                run.last_speech = now_ms
                run.gap = 0
        elif run is not None:
            run.gap += 1
            if run.gap > 1:  # two non-speech frames end the run
                self._run = run = None
        actions: list[Action] = []
        if run is not None:
            if speaking:
                if run.over_bot_since is None:
                    run.over_bot_since = max(run.onset, now_ms - s.frame_ms)
            else:
                run.over_bot_since = None
            if qualifying and run.last_speech - run.onset >= s.min_interrupt_ms:
                run.qualified = True
                if self._pending is not None:
                    self._pending.resolved = True  # the provider heard real speech
            if (
                qualifying
                and speaking
                and run.over_bot_since is not None
                and run.last_speech - run.over_bot_since >= s.min_interrupt_ms
            ):
                actions += self._interrupt(now_ms, by_provider=False)
        actions += self._pause_or_resume(run, qualifying, speaking)
        actions += self._expire(now_ms)
        return actions

    def _pause_or_resume(self, run: _Run | None, qualifying: bool, speaking: bool) -> list[Action]:
        s = self.settings
        if not (s.enabled and 0 < s.pause_after_ms < s.min_interrupt_ms):
            return []
        if self._paused:
            if run is None:  # the sound ended before it became an interruption
                self._paused = False
                return [ResumePlayout()]
            return []
        if (
            run is not None
            and qualifying
            and speaking
            and not run.interrupted
            and run.over_bot_since is not None
            and run.last_speech - run.over_bot_since >= s.pause_after_ms
        ):
            self._paused = True
            return [PausePlayout()]
        return []

    def provider_speech_started(self, now_ms: int) -> list[Action]:
        """The provider's VAD heard the caller start speaking."""
        if not self.settings.enabled or not self._speaking(now_ms):
            return self._expire(now_ms)
        run = self._run
        if run is not None and run.interrupted:
            return self._expire(now_ms)  # already handled locally: once per interruption
        if run is not None and run.qualified:
            return self._interrupt(now_ms, by_provider=True) + self._expire(now_ms)
        if self._pending is None:
            self._pending = _PendingCheck(now_ms, now_ms + self.settings.false_interrupt_ms)
        return self._expire(now_ms)

    def provider_speech_stopped(self, now_ms: int) -> list[Action]:
        """The provider's VAD heard the caller stop (the false-interruption window still runs)."""
        return self._expire(now_ms)

    def tick(self, now_ms: int) -> list[Action]:
        """Call periodically (e.g. every frame) so timeouts fire without other input."""
        return self._expire(now_ms)

    # ---- internals ----

    def _is_echo(self, level_dbfs: float, now_ms: int) -> bool:
        levels = self._played.levels
        if not levels:
            return False
        bound = max(level for _, level in levels) - self._echo.loss_db(now_ms)
        return level_dbfs <= bound

    def echo_return_loss_db(self, now_ms: int) -> float:
        """The echo gate's current distance below the played level (for logs and tests)."""
        return self._echo.loss_db(now_ms)

    def _trim_levels(self, now_ms: int) -> None:
        levels = self._played.levels
        horizon = now_ms - self.settings.echo_window_ms
        while levels and levels[0][0] < horizon:
            levels.popleft()

    def _interrupt(self, now_ms: int, *, by_provider: bool) -> list[Action]:
        run = self._run
        if not self.settings.enabled or run is None or run.interrupted:
            return []
        run.interrupted = True
        if self._pending is not None:
            self._pending.resolved = True
        started = run.over_bot_since if run.over_bot_since is not None else run.onset
        return self._cut(now_ms, None, cause="caller", started_ms=started, by_provider=by_provider)

    def _cut(
        self,
        now_ms: int,
        played_ms: int | None,
        *,
        cause: Cause,
        started_ms: int,
        cancel: bool = True,
        by_provider: bool = False,
    ) -> list[Action]:
        """Every interruption: silence now, cancel the response still being generated,
        truncate the item being played to what was heard. Late audio of the cut items
        (the one playing, and the newest) is dropped from then on."""
        ledger = self.ledger
        if played_ms is not None and played_ms > ledger.played_ms:
            ledger.played(played_ms)
        self._paused = False  # StopPlayout drops what was held
        actions: list[Action] = [StopPlayout(cause)]
        if cancel and self._response_active:
            actions.append(CancelResponse())
        entry = ledger.current()
        item_id, played = (
            ("", 0) if entry is None else (entry.item_id, ledger.played_ms - entry.start)
        )
        truncate_ms: int | None = None
        if entry is not None and item_id not in self._truncated:
            truncate_ms = max(0, min(played, entry.generated))
            actions.append(Truncate(item_id, truncate_ms))
            self._truncated.add(item_id)
        newest = ledger.last_model_item()
        if newest:
            self._truncated.add(newest)
            self._fresh.discard(newest)
        self.interruptions.append(
            Interruption(
                started_ms=started_ms,
                confirmed_ms=now_ms,
                item_id=item_id,
                played_ms=max(0, played),
                truncate_ms=truncate_ms,
                by_provider=by_provider,
                cause=cause,
            )
        )
        self._cleared(None)  # the buffer is cleared: the bot falls silent now
        return actions

    def _cleared(self, played_ms: int | None) -> None:
        at = self.ledger.played_ms if played_ms is None else max(played_ms, self.ledger.played_ms)
        self.ledger.cleared(at)
        self._played.last_advance_ms = None

    def _expire(self, now_ms: int) -> list[Action]:
        if self._now is None or now_ms > self._now:
            self._now = now_ms
        pending = self._pending
        if pending is None:
            return []
        if pending.resolved:
            self._pending = None
            return []
        if now_ms < pending.deadline:
            return []
        if self._run is not None and not self._run.interrupted:
            return []  # the caller is making sound right now: let the run decide
        self._pending = None
        if not self.settings.enabled:
            return []
        self.false_interruptions += 1
        return [ResumeTurn()]
