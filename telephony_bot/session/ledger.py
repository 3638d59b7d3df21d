"""What the caller actually heard of the bot: the one record of played audio.

Pure bookkeeping (no I/O, no clock). Every ms of audio queued for the caller, the model's
replies and the engine's own prompts alike, is placed on the media's cumulative played-ms
axis (`CallMedia.played_ms`, which the carrier owns) in the order it was queued: an entry
starts where the previous one ends, or where playback stands if the queue had run dry.
Clearing the playout (a barge-in, an operator's `say`, a closing prompt) drops the queued
entries and rebases the axis at the played position.

From this one record come:
- the item being played and how much of it was heard (`current`): the truncate point;
- how much audio is still queued (`queued_ms`): whether the bot is speaking;
- the level of each 20 ms frame as it is played (`played`): the barge-in echo gate;
- the bot's turns as heard (`finished`, `flush`): a turn ends once its transcript is known
  and its audio was all played (`interrupted=False`), or the playout was cleared under it
  (`interrupted=True`, `played_ms` = what had been heard), or the call ended.

`session.turns.TurnPolicy` is the only writer of the timeline (it decides when playout is
cleared); the session adds transcripts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

SILENCE_DBFS = -120.0


@dataclass(frozen=True)
class AgentTurn:
    item_id: str
    text: str
    interrupted: bool
    played_ms: int
    generated_ms: int = field(default=0, compare=False)  # all the audio it had


@dataclass
class Entry:
    """A stretch of the played axis: one model item's audio, or an engine prompt's."""

    item_id: str  # "" for the engine's own prompts (filler, apology, goodbye)
    start: int  # axis position of its first ms
    generated: int = 0  # ms of audio queued for it
    done: bool = False  # all of its audio has been generated

    @property
    def end(self) -> int:
        return self.start + self.generated

    @property
    def is_model(self) -> bool:
        return bool(self.item_id)


@dataclass
class _Turn:
    """A model item as the caller heard it, kept until it is reported."""

    start: int = -1  # axis position of its first audio (-1: no audio yet)
    generated: int = 0
    done: bool = False
    text: str | None = None  # final transcript, once known
    cut_at: int | None = None  # ms of it heard when the playout was cleared under it


class PlayoutLedger:
    def __init__(
        self,
        frame_ms: int = 20,
        level: Callable[[bytes], float] | None = None,
        sample_rate: int = 24000,
    ) -> None:
        """`level`: dBFS of one frame of PCM16 at `sample_rate` (the media's); None: levels
        are not kept (only the barge-in echo gate needs them)."""
        self.frame_ms = frame_ms
        self._level = level
        self._frame_bytes = sample_rate * 2 * frame_ms // 1000
        self._timeline: list[Entry] = []  # queued or playing, oldest first
        self._base = 0  # where the (empty) timeline restarts
        self._played = 0  # the latest played position reported
        self._turns: dict[str, _Turn] = {}
        self._levels: deque[float] = deque()  # per queued frame, oldest first
        self._levels_base = 0  # played position where _levels[0] starts
        self._tail = b""  # queued audio short of a whole frame (for levels)

    # ---- writes ----

    def queued(
        self,
        item_id: str,
        ms: int,
        pcm: bytes = b"",
        played_ms: int | None = None,
        *,
        new_entry: bool = False,
    ) -> None:
        """`ms` more audio of `item_id` ("" for an engine prompt) was queued for playout;
        `pcm`: that audio (for its levels); `played_ms`: the media's played position now,
        if fresher than the last reported; `new_entry`: it starts a new stretch even if the
        last one is the same item's."""
        if played_ms is not None and played_ms > self._played:
            self._played = played_ms
        last = self._timeline[-1] if self._timeline else None
        if last is not None and last.item_id == item_id and item_id and not new_entry:
            last.generated += ms
        else:
            start = max(last.end if last else self._base, self._played)
            self._timeline.append(Entry(item_id, start, ms))
        if item_id:
            turn = self._turns.setdefault(item_id, _Turn())
            if turn.cut_at is None:
                if turn.start < 0:
                    turn.start = self._timeline[-1].start
                turn.generated += ms
        if pcm and self._level is not None:
            data = self._tail + pcm
            n = len(data) // self._frame_bytes * self._frame_bytes
            for i in range(0, n, self._frame_bytes):
                self._levels.append(self._level(data[i : i + self._frame_bytes]))
            self._tail = data[n:]

    def done(self, item_id: str) -> None:
        """All audio of `item_id` has been generated."""
        for entry in reversed(self._timeline):
            if entry.item_id == item_id:
                entry.done = True
                break
        self._turns.setdefault(item_id, _Turn()).done = True

    def transcript(self, item_id: str, text: str) -> None:
        self._turns.setdefault(item_id, _Turn()).text = text

    def played(self, played_ms: int) -> float:
        """The media's played position advanced to `played_ms`: the max level of the frames
        played since the last call (SILENCE_DBFS when none, or when levels are not kept)."""
        if played_ms < self._played:  # the counter restarted (a new media): rebase
            self.cleared(played_ms)
        self._played = played_ms
        self._prune()
        k = max(0, (played_ms - self._levels_base) // self.frame_ms)
        if k == 0:
            return SILENCE_DBFS
        self._levels_base += k * self.frame_ms
        loudest = SILENCE_DBFS
        for _ in range(min(k, len(self._levels))):
            loudest = max(loudest, self._levels.popleft())
        return loudest

    def cleared(self, played_ms: int) -> None:
        """Queued audio was dropped at `played_ms`: model items not fully heard are cut where
        they stand. An item still streaming is cut too, even if every ms it sent so far has
        played: a model streaming at real time keeps the queue near empty, and what it would
        have sent next is what the caller will not hear."""
        for turn in self._turns.values():
            if turn.cut_at is not None:
                continue
            if turn.start < 0:
                turn.cut_at = 0  # nothing of it was heard
            elif turn.start + turn.generated > played_ms or not turn.done:
                turn.cut_at = max(0, min(played_ms - turn.start, turn.generated))
        self._timeline.clear()
        self._base = self._played = played_ms
        self._levels.clear()
        self._levels_base = played_ms
        self._tail = b""

    # ---- reads ----

    @property
    def played_ms(self) -> int:
        return self._played

    @property
    def queued_ms(self) -> int:
        end = self._timeline[-1].end if self._timeline else self._base
        return max(0, end - self._played)

    def model_queued_ms(self) -> int:
        """Queued audio of the model's items (the engine's prompts left out)."""
        ends = [e.end for e in self._timeline if e.is_model]
        return max(0, max(ends) - self._played) if ends else 0

    def current(self) -> Entry | None:
        """The model entry containing the played position, else the last one already begun
        (an engine prompt playing in between does not count)."""
        pos = self._played
        found = None
        for entry in self._timeline:
            if entry.start > pos:
                break
            if entry.is_model:
                found = entry
                if pos < entry.end:
                    break
        return found

    def entry(self, item_id: str) -> Entry | None:
        """The item's entry on the timeline (None once it was cleared or is long played)."""
        for e in reversed(self._timeline):
            if e.item_id == item_id:
                return e
        return None

    def last_model_item(self) -> str:
        for e in reversed(self._timeline):
            if e.is_model:
                return e.item_id
        return ""

    def finished(self, played_ms: int) -> list[AgentTurn]:
        """Turns that ended by now (in the order their items began)."""
        out: list[AgentTurn] = []
        for key, t in list(self._turns.items()):
            if t.text is None:
                continue
            if t.cut_at is not None:
                out.append(AgentTurn(key, t.text, True, t.cut_at, t.generated))
            elif t.start < 0:
                if not t.done:
                    continue
                out.append(AgentTurn(key, t.text, False, 0))  # a text-only item
            elif t.done and played_ms >= t.start + t.generated:
                out.append(AgentTurn(key, t.text, False, t.generated, t.generated))
            else:
                continue
            del self._turns[key]
        return out

    def flush(self, played_ms: int) -> list[AgentTurn]:
        """The call ended: every turn with a transcript, heard as far as it was."""
        out = self.finished(played_ms)
        for key, t in list(self._turns.items()):
            if t.text is None:
                continue
            heard = 0 if t.start < 0 else max(0, min(played_ms - t.start, t.generated))
            out.append(AgentTurn(key, t.text, heard < t.generated, heard, t.generated))
            del self._turns[key]
        return out

    # ---- internals ----

    def _prune(self) -> None:
        """Forget fully played entries, keeping the last model one (truncation may still
        need it)."""
        pos = self._played
        tl = self._timeline
        while len(tl) > 1 and tl[0].end <= pos and tl[1].start <= pos:
            if tl[0].is_model and not any(e.is_model for e in tl[1:]):
                break
            tl.pop(0)
