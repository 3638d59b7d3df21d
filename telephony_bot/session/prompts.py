"""The engine's own fallback phrases (PCM16), played when no model can speak."""

from __future__ import annotations

import wave
from functools import cache
from pathlib import Path

from telephony_bot.media.resample import resample_once

PROMPTS = Path(__file__).resolve().parents[1] / "assets" / "prompts"
RATE = 24000  # the rate the phrases are stored at


@cache
def load(name: str, rate: int = RATE) -> bytes:
    """PCM16 mono of a prompt at `rate` (made once per rate): one_moment, reconnecting,
    apology, still_there, goodbye."""
    with wave.open(str(PROMPTS / f"{name}.wav"), "rb") as w:
        if w.getframerate() != RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"prompt {name}: expected 24 kHz mono PCM16")
        pcm = w.readframes(w.getnframes())
    return pcm if rate == RATE else resample_once(pcm, RATE, rate)
