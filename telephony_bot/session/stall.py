"""Stall watch: notices, from the caller's side, a provider that has stopped answering.

Pure policy: no I/O, no asyncio, no clock. Every input carries `now_ms`, a monotonic
millisecond time the session supplies, and `tick` returns what to do (`list[StallAction]`).

A reply is *due* once the caller's turn ended, or the engine asked the model for one (the
greeting, after a tool's result, an operator's `say`, a failover). The caller's turn ended
when the provider's VAD heard them stop - or when the engine's own VAD heard an utterance
of `turn_min_voice_ms` end `turn_grace_ms` ago with no sign from the provider of having
heard it: a provider that stopped answering says nothing at all, not even that the caller
spoke. A reply is *under way* from `response.created` to `response.done`. Three things end
the wait for a reply without one: the caller speaking again (a new turn will end later),
the provider saying it heard no words (an empty transcript: no reply comes to a cough), and
tools running (the tool executor says its own filler and asks for the reply itself).

Two ways to stall, each with its own limit:
- `no_reply`: no `response.created` within `reply_timeout_ms` of the reply falling due;
- `audio_gap`: a reply under way sends nothing (no audio, no transcript) for `audio_gap_ms`
  while the caller hears nothing — audio already sent and still playing is not a stall.

Before either limit, the caller is never left in unexplained silence: when a reply is due
or under way and the playout has been dry for `filler_ms`, a `Filler` is due (at most
`max_fillers` per stall: the filler's own audio ends the dry stretch, so a long stall
hears it again every `filler_ms` or so). A stall is reported once (`Stalled`); the session
then hands the call to the route's next provider - or, with none, to a new session of the
same one - which starts the watch afresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

StallKind = Literal["no_reply", "audio_gap"]


@dataclass(frozen=True)
class StallSettings:
    filler_ms: int = 2000  # unexplained silence before the caller hears a filler
    reply_timeout_ms: int = 5000  # no response.created this long after a reply fell due
    audio_gap_ms: int = 4000  # a reply under way silent (nothing sent, nothing playing)
    # A dropped connection not restored within this hands the call to the route's next
    # provider (with no next provider the client goes on reconnecting).
    reconnect_ms: int = 700
    max_fillers: int = 3
    # the engine's own VAD: an utterance this long (voiced ms, the bot silent) ...
    turn_min_voice_ms: int = 600
    # ... ended this long ago with no word from the provider (it would have said
    # speech_stopped by now: its own silence duration is ~500 ms)
    turn_grace_ms: int = 1200
    frame_ms: int = 20
    enabled: bool = True

    def __post_init__(self) -> None:
        if min(self.filler_ms, self.reply_timeout_ms, self.audio_gap_ms) <= 0:
            raise ValueError("stall durations must be > 0")
        if self.reconnect_ms < 0 or self.max_fillers < 0:
            raise ValueError("reconnect_ms and max_fillers must be >= 0")


@dataclass(frozen=True)
class Filler:
    """The caller has heard nothing for `silent_ms` while a reply is due: say a filler."""

    silent_ms: int
    kind: StallKind


@dataclass(frozen=True)
class Stalled:
    """The provider stalled: hand the call on. `waited_ms`: since the reply fell due (no
    reply) or since the reply's last event (audio gap)."""

    kind: StallKind
    waited_ms: int


StallAction = Filler | Stalled


class StallWatch:
    def __init__(self, settings: StallSettings | None = None) -> None:
        self.settings = settings if settings is not None else StallSettings()
        self._due_at: int | None = None  # a reply is due since (no response.created yet)
        self._active_at: int | None = None  # a reply is under way; its last event
        self._dry_since: int | None = None  # the playout ran dry (since the last filler)
        self._silent_since: int | None = None  # ... first, in this stall (fillers or not)
        self._fillers = 0  # fillers said in this stall
        self._reported = False  # this stall was reported
        self.stalls = 0
        # the caller's utterance as the engine's VAD hears it
        self._utt_onset: int | None = None
        self._utt_last = 0  # its last voiced frame
        self._utt_voiced = 0
        self._heard_at: int | None = None  # the provider's last sign of hearing the caller

    @property
    def watching(self) -> bool:
        return self._due_at is not None or self._active_at is not None

    # ---- what happened ----

    def reply_due(self, now_ms: int) -> None:
        """The caller's turn ended, or the engine asked the model for a reply."""
        if self._active_at is None and self._due_at is None:
            self._due_at = now_ms
            self._fresh()
            self._dry_since = self._silent_since = now_ms  # unless the next tick hears audio

    def provider_heard(self, now_ms: int) -> None:
        """The provider showed it hears the caller (speech started/stopped, a transcript,
        a response)."""
        self._heard_at = now_ms

    def caller_frame(self, now_ms: int, voiced: bool) -> None:
        """The engine's VAD on one caller frame (`voiced`: speech, and the bot silent)."""
        s = self.settings
        if voiced:
            if self._utt_onset is None:
                self._utt_onset, self._utt_voiced = now_ms, 0
            self._utt_voiced += s.frame_ms
            self._utt_last = now_ms
            return
        onset = self._utt_onset
        if onset is None or now_ms - self._utt_last < s.turn_grace_ms:
            return
        self._utt_onset = None
        heard = self._heard_at is not None and self._heard_at >= onset - s.turn_grace_ms
        if self._utt_voiced >= s.turn_min_voice_ms and not heard:
            self.reply_due(self._utt_last)  # its turn ended then; the provider said nothing

    def no_reply_due(self) -> None:
        """No reply is coming, and rightly: the caller speaks again, or said no words."""
        if self._active_at is None:
            self._due_at = None

    def response_started(self, now_ms: int) -> None:
        self._due_at = None
        self._active_at = now_ms
        self._fresh()

    def response_event(self, now_ms: int) -> None:
        """Audio, a transcript or a function call of the reply under way arrived."""
        if self._active_at is not None:
            self._active_at = now_ms
            self._dry_since = self._silent_since = None
            self._fillers = 0

    def response_done(self) -> None:
        self._active_at = None
        self._due_at = None

    def reset(self) -> None:
        """A new provider took the call over (it is asked for its own reply)."""
        self._due_at = self._active_at = None
        self._fresh()

    # ---- every frame ----

    def tick(self, now_ms: int, queued_ms: int, *, busy: bool = False) -> list[StallAction]:
        """`queued_ms`: bot audio waiting to be played; `busy`: tools are running."""
        s = self.settings
        if not s.enabled:
            return []
        if busy:
            self._due_at = None  # the tool path asks for the reply when it is ready
        if not self.watching:
            self._dry_since = self._silent_since = None
            return []
        if queued_ms > 0:
            self._dry_since = None  # the caller hears something (a filler, say)
        else:
            if self._dry_since is None:
                self._dry_since = now_ms
            if self._silent_since is None:
                self._silent_since = now_ms
        if self._reported:
            return []
        out: list[StallAction] = []
        kind: StallKind = "no_reply" if self._due_at is not None else "audio_gap"
        since = self._due_at if self._due_at is not None else self._active_at
        assert since is not None
        if self._dry_since is not None and self._fillers < s.max_fillers:
            silent = now_ms - max(since, self._dry_since)
            if silent >= s.filler_ms:
                self._fillers += 1
                self._dry_since = None  # the filler plays now; silence is counted after it
                out.append(Filler(silent, kind))
        if kind == "no_reply":
            waited, limit = now_ms - since, s.reply_timeout_ms
        elif self._silent_since is not None:  # a reply's audio still playing is no gap
            waited, limit = now_ms - max(since, self._silent_since), s.audio_gap_ms
        else:
            return out
        if waited >= limit:
            self._reported = True
            self.stalls += 1
            out.append(Stalled(kind, waited))
        return out

    def _fresh(self) -> None:
        self._dry_since = self._silent_since = None
        self._fillers = 0
        self._reported = False
