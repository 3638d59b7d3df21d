"""When the caller's turn is over: how much silence to wait for, given what was said so far.

Pure policy, used by the engine session (`session.EngineSession`) with the turn detector
(`speech.SpeechDetector`): at each pause the words so far are transcribed, and this module
says how long a pause after those words ends the turn.

- A complete sentence ("What is your address?", "Yes, that's right.") ends after a short
  pause, `short_ms`: people answer that fast.
- An unfinished one waits the full `max_ms` (the session's `silence_duration_ms`, an upper
  bound that is never exceeded): a trailing conjunction or preposition ("...and", "to the"),
  a filler ("um", "so"), a lead-in that announces more ("my number is"), words trailing off
  ("..."), or digits (callers pause between digit groups).
- Words without a sentence end (Whisper left the punctuation off) wait halfway between.
- No words yet (the transcript is not ready, or the audio was a noise): `max_ms`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["TurnEndPolicy", "completeness"]

# A turn ending on one of these words is not over.
_TRAILING = frozenset(
    """
    and or but so because cause then than with without to the a an my your our his her their
    its of for from in on at by about into as if while is are was were i'm it's i'd i'll
    we're you're there's plus also um uh er erm hmm ah well maybe actually basically just
    """.split()
)
# Lead-ins that announce what comes next, checked on the last words.
_LEAD_INS = (
    "my number is",
    "the number is",
    "my name is",
    "it is",
    "that is",
    "i would like",
    "i'd like",
    "i want",
    "i need",
    "i was wondering",
    "what about",
    "how about",
    "let me",
)
_WORD = re.compile(r"[a-z0-9']+")
_TRAILING_OFF = ("...", "…", "-", "—", ",", ";", ":")
_SENTENCE_END = (".", "?", "!")


def completeness(text: str) -> str:
    """'complete', 'unfinished', 'open' (words, no sentence end) or 'empty'."""
    stripped = text.strip().strip("\"'”’)")
    words = _WORD.findall(stripped.lower())
    if not words:
        return "empty"
    if stripped.endswith(_TRAILING_OFF):
        return "unfinished"
    last = words[-1]
    if last in _TRAILING or last.isdigit():
        return "unfinished"
    tail = " ".join(words[-4:])
    if any(tail.endswith(lead) for lead in _LEAD_INS):
        return "unfinished"
    if stripped.endswith(_SENTENCE_END):
        return "complete"
    return "open"


@dataclass(frozen=True, slots=True)
class TurnEndPolicy:
    """Silence that ends a turn: `short_ms` after a complete sentence, `max_ms` (the upper
    bound) after an unfinished one or no words."""

    max_ms: int = 500
    short_ms: int = 250

    def silence_needed_ms(self, transcript: str | None) -> int:
        """How long a pause after `transcript` (None: not known yet) ends the turn."""
        short = min(self.short_ms, self.max_ms)
        kind = "empty" if transcript is None else completeness(transcript)
        if kind == "complete":
            return short
        if kind == "open":
            return (short + self.max_ms) // 2
        return self.max_ms
