"""What the bot still had to say when the caller cut it off, and whether what the caller said
over it was only a backchannel ("mm hmm", "okay", "uh huh") — then the bot goes on from the
sentence it was in, instead of treating the sound as a turn and answering "Sorry, I didn't
catch that".

Pure: no I/O, no clock. The engine session records, for each spoken item, its clauses and the
audio position where each one started; `unheard` turns a truncation point into the text from
the clause being heard onwards; `is_backchannel` judges the caller's words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["NEAR_END_MS", "SHORT_TURN_MS", "is_backchannel", "resumes", "unheard"]

# A cut this close to the end of everything the bot meant to say is an answer, not an
# interruption: "okay" over the last words of "... Shall I book it?" means yes.
NEAR_END_MS = 700.0
MAX_WORDS = 4
# A turn this short (the audio committed for it, pre-roll included) of a few words that the
# conversation cannot use was a noise the caller made over the bot, whatever the recogniser
# made of it (Whisper tiny hears "mm hmm" as "Amen, them." or "Hmm." or nothing).
SHORT_TURN_MS = 1600.0
SHORT_TURN_WORDS = 3

_SOUNDS = {
    "mm", "mmm", "mhm", "mmhmm", "hm", "hmm", "hmmm", "uh", "uhhuh", "huh", "um", "umm", "ah",
    "aha", "ahh", "oh", "ooh", "er", "erm", "okay", "ok", "k", "yeah", "yes", "yep", "yup",
    "right", "sure", "alright", "i", "see", "got", "it", "cool", "fine", "good", "great",
    "go", "on", "uhuh", "mmkay", "gotcha",
}  # fmt: skip


def _words(text: str) -> list[str]:
    text = text.lower().replace("-", "").replace("'", "")
    return re.findall(r"[a-z]+", text)


def is_backchannel(text: str) -> bool:
    """True for words that only show the caller is listening ("Mm-hmm.", "Okay.", "Uh huh,
    yeah", "I see", "go on"), and for nothing at all (a cough, a breath the detector took
    for speech); False as soon as a word carries content ("okay but what time")."""
    words = _words(text)
    if len(words) > MAX_WORDS:
        return False
    return all(w in _SOUNDS for w in words)


def resumes(text: str, turn_ms: float, *, understood: bool) -> bool:
    """Whether the caller's turn over the bot's speech leaves the bot to go on: a
    backchannel, or a short turn of a few words that nothing in the conversation
    `understood`."""
    if is_backchannel(text):
        return True
    return turn_ms <= SHORT_TURN_MS and len(_words(text)) <= SHORT_TURN_WORDS and not understood


def unheard(
    clauses: Sequence[str],
    starts: Sequence[float],
    *,
    heard_ms: float,
    generated_ms: float,
    complete: bool,
) -> str:
    """The text from the clause the caller was hearing at `heard_ms` to the end.

    `clauses`: everything the item was to say, clause by clause; `starts[i]`: where clause i's
    audio began in the item (as many as were synthesised); `generated_ms`: the item's audio so
    far; `complete`: every clause was synthesised. "" when the cut came within NEAR_END_MS of
    the end of a complete item, or there is nothing left."""
    if not clauses:
        return ""
    if complete and generated_ms - heard_ms <= NEAR_END_MS:
        return ""
    k = 0
    for i, start in enumerate(starts):
        if start <= heard_ms:
            k = i
    return " ".join(c.strip() for c in clauses[k:] if c.strip())
