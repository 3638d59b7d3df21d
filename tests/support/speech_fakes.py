"""Fakes of the local engine's speech parts that behave like the real ones, for protocol tests:
an energy VAD on 20 ms frames with a 300 ms pre-roll, a recognizer that hears a fixed phrase
in loud audio, a synthesizer that takes real time per clause and makes 60 ms of tone a word.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from telephony_bot.local_engine.pipeline import FRAME_BYTES, SpeechEnd, SpeechStart

RATE = 24000


def _rms(pcm: bytes) -> float:
    x = np.frombuffer(pcm[: len(pcm) // 2 * 2], "<i2").astype(np.float64)
    return float(np.sqrt(np.mean(x**2))) if x.size else 0.0


class EnergyDetector:
    """Energy VAD, 20 ms frames: onset after 60 ms loud, end after 300 ms quiet, 300 ms pre-roll."""

    def __init__(self, threshold: float = 1000.0, preroll_ms: int = 300, silence_ms: int = 300):
        self.threshold = threshold
        self.preroll_frames = preroll_ms // 20
        self.silence_ms = silence_ms
        self.ring: list[bytes] = []
        self.utt: list[bytes] = []
        self.in_speech = False
        self.loud_run = 0
        self.quiet_ms = 0
        self.last_speech_end = 0

    def process(self, frame24k: bytes, now_ms: int) -> list[SpeechStart | SpeechEnd]:
        assert len(frame24k) == FRAME_BYTES
        loud = _rms(frame24k) > self.threshold
        if not self.in_speech:
            self.ring.append(frame24k)
            self.ring = self.ring[-(self.preroll_frames + 3) :]
            self.loud_run = self.loud_run + 1 if loud else 0
            if self.loud_run >= 3:
                self.in_speech = True
                self.quiet_ms = 0
                self.utt = list(self.ring)
                return [SpeechStart(at_ms=now_ms + 20 - self.loud_run * 20)]
            return []
        self.utt.append(frame24k)
        if loud:
            self.quiet_ms = 0
            self.last_speech_end = now_ms + 20
            return []
        self.quiet_ms += 20
        if self.quiet_ms >= self.silence_ms:
            self.in_speech = False
            self.loud_run = 0
            self.ring = []
            return [SpeechEnd(at_ms=self.last_speech_end, pcm=b"".join(self.utt))]
        return []


class FixedRecognizer:
    def __init__(self, transcript: str = "hello there", delay: float = 0.05) -> None:
        self.transcript = transcript
        self.delay = delay
        self.calls = 0

    def transcribe(self, pcm24k: bytes) -> str:
        self.calls += 1
        time.sleep(self.delay)
        return self.transcript if _rms(pcm24k) > 500 else ""


class ToneSynthesizer:
    """60 ms of tone per word, after a real delay per clause; stops when `cancel` is set."""

    def __init__(self, delay: float = 0.03) -> None:
        self.delay = delay
        self.calls: list[str] = []
        self.cancelled = 0

    def synthesize(self, text: str, cancel: threading.Event) -> Iterator[bytes]:
        self.calls.append(text)
        if cancel.wait(self.delay):
            self.cancelled += 1
            return
        n = len(text.split()) * 60 * RATE // 1000
        t = np.arange(n) / RATE
        yield (np.sin(2 * np.pi * 440 * t) * 6000).astype("<i2").tobytes()


async def until(conn: Any, type_: str, log: list[Any], timeout: float = 5.0) -> Any:
    """Receive events (appending them to `log`) until one of `type_` arrives; return it."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {type_} within {timeout}s; got {[e.type for e in log]}")
        ev = await asyncio.wait_for(conn.recv(), left)
        log.append(ev)
        if ev.type == type_:
            return ev
