"""Test signals and measurements: a speech-like signal, WAV I/O, delay and correlation."""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def speech_like(seconds: float, rate: int, seed: int = 7) -> np.ndarray:
    """Voiced 'syllables': a gliding 110–220 Hz pitch with harmonics under 3.4 kHz, shaped
    by two moving formants and a 4 Hz syllable envelope, at about −16 dBFS. Deterministic,
    and unambiguous to cross-correlate (no repeating period)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    f0 = 165 + 55 * np.sin(2 * np.pi * 0.7 * t) + 20 * np.sin(2 * np.pi * 2.3 * t + 1)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    f1 = 500 + 300 * np.sin(2 * np.pi * 1.1 * t)
    f2 = 1500 + 700 * np.sin(2 * np.pi * 0.9 * t + 2)
    x = np.zeros(n)
    for k in range(1, 20):
        fk = k * f0
        gain = np.exp(-(((fk - f1) / 250) ** 2)) + 0.6 * np.exp(-(((fk - f2) / 350) ** 2)) + 0.05
        x += gain * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) * (fk < 3400)
    env = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)) ** 2
    x *= env
    x *= 10 ** (-16 / 20) * 32767 / np.sqrt(np.mean(x**2))
    return np.clip(x, -32767, 32767).astype(np.int16)


def tone(freq: float, seconds: float, rate: int, dbfs: float = -10.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    amp = 32767 * 10 ** (dbfs / 20) * np.sqrt(2)
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def write_wav(path: Path, x: np.ndarray, rate: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(x.astype("<i2").tobytes())
    return path


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").copy(), w.getframerate()


def find_delay(sent: np.ndarray, received: np.ndarray, rate: int) -> tuple[float, float]:
    """Where `sent` occurs in `received`: (offset in ms, normalised correlation 0..1)."""
    a = sent.astype(np.float64)
    b = received.astype(np.float64)
    n = len(a) + len(b)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)[: len(b)]
    lag = int(np.argmax(corr))
    seg = b[lag : lag + len(a)]
    m = min(len(seg), len(a))
    num = float(np.dot(a[:m], seg[:m]))
    den = float(np.sqrt(np.dot(a[:m], a[:m]) * np.dot(seg[:m], seg[:m]))) or 1.0
    return lag * 1000.0 / rate, num / den


@dataclass(frozen=True)
class Echo:
    """How a sent signal came back, piece by piece (see `echo_pieces`)."""

    whole_ms: float  # where the whole signal matches best (ms)
    delays_ms: list[float]  # where each piece that came back whole was found (ms)
    broken: int  # pieces found nowhere near their place with correlation > MIN_CORR
    pieces: int

    MIN_CORR = 0.85  # G.711/G.722 plus resampling keep a clean echo above this
    MAX_STEP_MS = 40.0  # a jitter buffer adapting by up to two 20 ms frames

    @property
    def spread_ms(self) -> float:
        return max(self.delays_ms) - min(self.delays_ms) if self.delays_ms else 0.0

    @property
    def intact(self) -> bool:
        """Every piece came back, at one delay or two a jitter-buffer step apart: one piece
        may straddle that step. Lost, garbled or repeated audio breaks more than one piece
        or moves the delay further."""
        return bool(self.delays_ms) and self.broken <= 1 and self.spread_ms <= self.MAX_STEP_MS

    def describe(self) -> str:
        found = sorted({round(d) for d in self.delays_ms})
        return f"{self.broken}/{self.pieces} pieces broken; delays found (ms): {found}"


def echo_pieces(
    sent: np.ndarray, received: np.ndarray, rate: int, piece_ms: int = 100, search_ms: int = 60
) -> Echo:
    """Find each `piece_ms` piece of `sent` in `received`, within `search_ms` of where the
    whole signal matches best. A jitter buffer that grows or shrinks by a frame mid-call
    (normal on a real line) moves the delay by 20 ms for the rest of the call; one delay for
    the whole signal would count that as a garbled echo."""
    whole_ms, _ = find_delay(sent, received, rate)
    lag = int(round(whole_ms * rate / 1000))
    size, reach = piece_ms * rate // 1000, search_ms * rate // 1000
    delays: list[float] = []
    broken = pieces = 0
    for start in range(0, len(sent) - size + 1, size):
        piece = sent[start : start + size].astype(np.float64)
        energy = float(np.dot(piece, piece))
        if energy < size * 30.0**2:  # silence (under about -60 dBFS): nothing to find
            continue
        pieces += 1
        lo = max(0, lag + start - reach)
        window = received[lo : lag + start + size + reach].astype(np.float64)
        if len(window) < size:
            broken += 1
            continue
        dots = np.correlate(window, piece, "valid")
        local = np.convolve(window**2, np.ones(size), "valid")
        corr = dots / np.sqrt(np.maximum(local, 1e-9) * energy)
        k = int(np.argmax(corr))
        if corr[k] > Echo.MIN_CORR:
            delays.append((lo + k - start) * 1000.0 / rate)
        else:
            broken += 1
    return Echo(whole_ms, delays, broken, pieces)


def dominant_hz(x: np.ndarray, rate: int) -> float:
    """The strongest frequency in a stretch of audio."""
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.argmax(spec) * rate / len(x))


def pcm24(x: np.ndarray) -> bytes:
    return x.astype("<i2").tobytes()


def voiced_frames(energy_dbfs: list[float], threshold: float = -45.0) -> list[int]:
    """Indexes of the 20 ms frames louder than `threshold` in a dial report's timeline."""
    return [i for i, e in enumerate(energy_dbfs) if e > threshold]


def frame_rms_dbfs(x: np.ndarray) -> float:
    if len(x) == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    return 20 * np.log10(rms / 32768) if rms > 0 else -120.0
