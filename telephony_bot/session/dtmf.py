"""The caller's key presses, gathered into bursts: one burst, one thing the model is told.

Pure logic, no I/O, no clock: every input carries `now_ms` (monotonic milliseconds), and the
session (`key_presses.KeyPresses`) carries out what each step returns.

A burst is the keys a caller types in one go ("1234#", "1"). It ends:
- at once on the route's `terminator` key (default `#`): the terminator is not part of the
  burst's digits, only noted (`Burst.terminator`); the terminator alone ends an empty burst
  (a caller pressing only `#` means something too: "skip", "done");
- at once when it holds `max_digits` keys (a menu that takes one key need not wait);
- `inter_digit_ms` after its last key (default 2 s): the caller stopped typing.

Barge-in: a key pressed while the bot speaks cuts the bot off at once (`interrupt`, on by
default), through the same path as a caller's voice (`Playout.interrupt`, cause "dtmf"):
the caller hears silence from the next frame and the model keeps only what was heard. A key
press is deliberate — no echo, no cough — so no confirmation is waited for; callers press a
key to skip a prompt they know ("press 1 for sales" before it ends). With `interrupt` off
the bot finishes its sentence, and the burst is answered after the reply under way.

Keys reach the model only with `to_model` (default on): then each burst becomes one user
item and a response is asked for. Without it the bursts are still events (`dtmf.input`),
and a key never cuts the bot off (nothing would answer the silence).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from telephony_bot import keypad

INTER_DIGIT_MS = 2000  # the default; a dialplan may set inter_digit_ms in this range:
INTER_DIGIT_RANGE_MS = (300, 10000)
MAX_DIGITS = 32  # a burst never grows beyond this many keys


@dataclass(frozen=True)
class DtmfSettings:
    to_model: bool = True  # each burst becomes a user item, and the model answers it
    terminator: str = "#"  # ends a burst at once; "" for none
    inter_digit_ms: int = INTER_DIGIT_MS  # a burst ends this long after its last key
    max_digits: int = MAX_DIGITS  # a burst ends at once when it holds this many keys
    interrupt: bool = True  # a key pressed while the bot speaks cuts the bot off

    def __post_init__(self) -> None:
        if self.terminator and (len(self.terminator) != 1 or self.terminator not in keypad.KEYS):
            raise ValueError(f"terminator must be one DTMF key or empty, got {self.terminator!r}")
        if self.inter_digit_ms <= 0:
            raise ValueError("inter_digit_ms must be > 0")
        if not 1 <= self.max_digits <= MAX_DIGITS:
            raise ValueError(f"max_digits must be 1..{MAX_DIGITS}")


Ending = Literal["terminator", "timeout", "max_digits"]


@dataclass(frozen=True)
class Burst:
    digits: str  # the keys, without the terminator
    terminator: str  # the key that ended the burst ("" when it timed out or was full)
    ended: Ending

    @property
    def text(self) -> str:
        """The user item the model is given (`keypad.pressed_text`)."""
        return keypad.pressed_text(self.digits, self.terminator)


@dataclass(frozen=True)
class KeyStep:
    """What one key press asks of the session."""

    interrupt: bool = False  # cut the bot off now
    burst: Burst | None = None  # a burst ended with this key


class DtmfCollector:
    """The burst being typed. `key()` for each key; `expire()` once `due_ms` has passed."""

    def __init__(self, settings: DtmfSettings) -> None:
        self.settings = settings
        self._digits = ""
        self._last_ms: int | None = None

    @property
    def typing(self) -> str:
        """The keys of the burst not yet ended."""
        return self._digits

    @property
    def due_ms(self) -> int | None:
        """When the burst being typed ends unless another key comes (None: no burst)."""
        if self._last_ms is None:
            return None
        return self._last_ms + self.settings.inter_digit_ms

    def key(self, key: str, now_ms: int, *, bot_speaking: bool) -> KeyStep:
        """The caller pressed `key`; `bot_speaking`: the bot's audio is playing (or a reply
        is being made). A key that is not a DTMF key is ignored."""
        s = self.settings
        if len(key) != 1 or key not in keypad.KEYS:
            return KeyStep()
        interrupt = s.interrupt and s.to_model and bot_speaking
        if s.terminator and key == s.terminator:
            return KeyStep(interrupt, self._end("terminator", key))
        self._digits += key
        self._last_ms = now_ms
        if len(self._digits) >= s.max_digits:
            return KeyStep(interrupt, self._end("max_digits"))
        return KeyStep(interrupt)

    def expire(self, now_ms: int) -> Burst | None:
        """The burst, if the caller stopped typing `inter_digit_ms` ago."""
        due = self.due_ms
        if due is None or now_ms < due:
            return None
        return self._end("timeout")

    def _end(self, ended: Ending, terminator: str = "") -> Burst:
        burst = Burst(self._digits, terminator, ended)
        self._digits = ""
        self._last_ms = None
        return burst
