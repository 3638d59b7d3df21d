"""The engine's own fallback phrases (24 kHz PCM16), played when no model can speak."""

from __future__ import annotations

import wave
from functools import cache
from pathlib import Path

PROMPTS = Path(__file__).resolve().parents[1] / "assets" / "prompts"


@cache
def load(name: str) -> bytes:
    """PCM16 mono 24 kHz of a prompt: one_moment, reconnecting, apology, still_there, goodbye."""
    with wave.open(str(PROMPTS / f"{name}.wav"), "rb") as w:
        if w.getframerate() != 24000 or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"prompt {name}: expected 24 kHz mono PCM16")
        return w.readframes(w.getnframes())
