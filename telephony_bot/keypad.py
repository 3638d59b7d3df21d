"""The phone's keypad, wherever the engine meets it: which keys exist (DTMF, RFC 4733), and
how a burst of key presses reads as a conversation item.

One definition of the item's text (`pressed_text`) and its reading (`parse_pressed`): the
session writes it into the conversation (any Realtime model reads it as plain English), and
the offline engine's flow recognises it and takes the keys as a key press, not as words.
Both sides use these two functions, so the format cannot drift between them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KEYS = "0123456789*#ABCD"  # the 16 DTMF keys (A-D: only on some phones and systems)

_KEY = r"[0-9*#A-D]"
_PRESSED = re.compile(rf"^The caller pressed the keys?: ({_KEY}+)(?: \(ended with ({_KEY})\))?$")
_ONLY = re.compile(rf"^The caller pressed only ({_KEY}) \(the key that ends an input\)$")


def are_keys(text: str) -> bool:
    """Whether `text` is one or more DTMF keys (0-9, *, #, A-D)."""
    return bool(text) and all(c in KEYS for c in text)


@dataclass(frozen=True)
class Pressed:
    """One burst of key presses: the keys, and the key that ended it ("" if none did)."""

    digits: str
    terminator: str = ""

    @property
    def keys(self) -> str:
        """What the caller pressed, as a menu choice: the digits, or the ending key alone."""
        return self.digits or self.terminator


def pressed_text(digits: str, terminator: str = "") -> str:
    """The conversation item for a burst: "The caller pressed the keys: 1234 (ended with #)".
    The ending key is not part of the keys, only noted."""
    if not are_keys(digits) and not (digits == "" and are_keys(terminator)):
        raise ValueError(f"not DTMF keys: {digits!r}")
    if terminator and (len(terminator) != 1 or terminator not in KEYS):
        raise ValueError(f"not a DTMF key: {terminator!r}")
    if not digits:
        return f"The caller pressed only {terminator} (the key that ends an input)"
    noun = "key" if len(digits) == 1 else "keys"
    end = f" (ended with {terminator})" if terminator else ""
    return f"The caller pressed the {noun}: {digits}{end}"


def parse_pressed(text: str) -> Pressed | None:
    """The burst a `pressed_text` item carries, or None for any other text."""
    text = text.strip()
    if m := _PRESSED.match(text):
        return Pressed(m.group(1), m.group(2) or "")
    if m := _ONLY.match(text):
        return Pressed("", m.group(1))
    return None
