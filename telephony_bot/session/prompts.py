"""The engine's own phrases (PCM16), played when no model can speak: the built-in ones by
name, and a plan's recorded prompt (`on_error.say`) read from its WAV file."""

from __future__ import annotations

import wave
from functools import cache
from pathlib import Path

import numpy as np

from telephony_bot.media.resample import resample_once

PROMPTS = Path(__file__).resolve().parents[1] / "assets" / "prompts"
RATE = 24000  # the rate the phrases are kept at
MAX_PROMPT_S = 30.0  # a recorded prompt longer than this is refused
PROMPT_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)


class PromptError(ValueError):
    """A recorded prompt that cannot be played; the message says why."""


@cache
def load(name: str, rate: int = RATE) -> bytes:
    """PCM16 mono of a prompt at `rate` (made once per rate): one_moment, reconnecting,
    apology, still_there, goodbye."""
    with wave.open(str(PROMPTS / f"{name}.wav"), "rb") as w:
        if w.getframerate() != RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"prompt {name}: expected 24 kHz mono PCM16")
        pcm = w.readframes(w.getnframes())
    return at_rate(pcm, rate)


def at_rate(pcm24: bytes, rate: int) -> bytes:
    """A phrase kept at 24 kHz, at the call's media `rate`."""
    return pcm24 if rate == RATE else resample_once(pcm24, RATE, rate)


def read_wav(path: Path) -> bytes:
    """A recorded prompt as 24 kHz PCM16 mono: a 16-bit PCM WAV file, mono (or the first
    channel of several), at a common rate, at most MAX_PROMPT_S long. PromptError says
    what is wrong with any other file."""
    try:
        with wave.open(str(path), "rb") as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            frames = w.getnframes()
            data = w.readframes(frames)
    except FileNotFoundError:
        raise PromptError("no such file") from None
    except IsADirectoryError:
        raise PromptError("it is a directory, not a WAV file") from None
    except (wave.Error, EOFError) as exc:
        raise PromptError(f"not a PCM WAV file ({exc})") from None
    except OSError as exc:
        raise PromptError(exc.strerror or str(exc)) from None
    if width != 2:
        raise PromptError(f"need 16-bit PCM samples, the file has {8 * width}-bit")
    if rate not in PROMPT_RATES:
        raise PromptError(f"sample rate {rate} Hz: use one of {', '.join(map(str, PROMPT_RATES))}")
    seconds = frames / rate
    if seconds > MAX_PROMPT_S:
        raise PromptError(f"{seconds:.1f} s long: a prompt may last {MAX_PROMPT_S:g} s at most")
    if frames == 0:
        raise PromptError("the file holds no audio")
    if channels > 1:
        data = np.frombuffer(data, "<i2").reshape(-1, channels)[:, 0].astype("<i2").tobytes()
    return data if rate == RATE else resample_once(data, rate, RATE)
