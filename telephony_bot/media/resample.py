"""Streaming polyphase FIR resampler for int16 mono PCM (8/16/24/48 kHz and other rational ratios).

Upsample by L, Kaiser-windowed sinc low-pass, decimate by M, computed polyphase so only kept
samples are produced. Causal and holds nothing back: a chunk of n input samples yields
n*out/in samples (rounded so the running total is ceil(total_in*out/in)); the filter's linear
phase delay (`group_delay`, 3.5 ms for 8 kHz <-> 24 kHz) is the only latency.

The filter is designed here (numpy); the per-chunk arithmetic runs in C
(`telephony_bot.native._dsp`, about half numpy's cost per 20 ms frame and the same
output to the bit) when the extension is built, else in numpy (`native=False` forces it).
"""

from __future__ import annotations

from math import gcd

import numpy as np

try:
    from telephony_bot.native._dsp import Polyphase
except ImportError:  # pragma: no cover - an install without the compiled part
    Polyphase = None

# Filter half-length in periods of the lower of the two rates, cutoff (-6 dB point) as a
# fraction of the lower Nyquist, and Kaiser beta. For 8 kHz <-> 24 kHz that is 169 taps at
# 24 kHz: flat within 0.01 dB to 3.4 kHz, -30 dB at 4 kHz, <= -90 dB from 4.4 kHz up.
_HALF_PERIODS = 28
_CUTOFF = 0.94
_BETA = 8.5

_F8 = np.dtype(np.float64).itemsize


def _design(in_rate: int, out_rate: int, up: int, down: int) -> np.ndarray:
    """Polyphase taps, shape (up, K): row p is phase p, reversed so a window dot row = output."""
    half = _HALF_PERIODS * max(up, down)
    ntaps = 2 * half + 1
    fs_up = in_rate * up
    fc = _CUTOFF * min(in_rate, out_rate) / 2 / fs_up  # cycles per upsampled sample
    n = np.arange(ntaps) - half
    h = 2 * fc * np.sinc(2 * fc * n) * np.kaiser(ntaps, _BETA)
    k = -(-ntaps // up)
    h = np.concatenate((h, np.zeros(k * up - ntaps)))
    phases = h.reshape(k, up).T  # phases[p, j] = h[p + j*up]
    phases = phases / phases.sum(axis=1, keepdims=True)  # unity DC gain on every phase
    return np.ascontiguousarray(phases[:, ::-1])


class Resampler:
    """Stateful int16 mono resampler; feed chunks of any size in order, one instance per stream."""

    def __init__(self, in_rate: int, out_rate: int, native: bool = True) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        g = gcd(self.in_rate, self.out_rate)
        self._up = self.out_rate // g
        self._down = self.in_rate // g
        self._passthrough = self._up == self._down
        if self._passthrough:
            self._taps = np.ones((1, 1))
            self.group_delay = 0.0
        else:
            self._taps = _design(self.in_rate, self.out_rate, self._up, self._down)
            half = _HALF_PERIODS * max(self._up, self._down)
            self.group_delay = half / (self.in_rate * self._up)  # seconds
        self._taps_t = np.ascontiguousarray(self._taps.T)
        self._ntaps = self._taps.shape[1]
        self._c = None
        if native and Polyphase is not None and not self._passthrough:
            self._c = Polyphase(self._taps.tobytes(), self._up, self._down)
        self.reset()

    def reset(self) -> None:
        """Forget the stream history (start of a new stream)."""
        self._hist = np.zeros(self._ntaps - 1)
        self._frac = 0  # next output's position minus input consumed, in upsampled samples
        if self._c is not None:
            self._c.reset()

    def process(self, pcm: bytes) -> bytes:
        """Resample a chunk of int16 little-endian PCM; returns the output available now."""
        if len(pcm) % 2:
            raise ValueError(f"int16 PCM must have an even byte length, got {len(pcm)}")
        if self._passthrough:
            return bytes(pcm)
        if self._c is not None:
            return self._c.process(pcm)  # type: ignore[no-any-return]
        return self._run(np.frombuffer(pcm, dtype="<i2")).tobytes()

    def process_array(self, x: np.ndarray) -> np.ndarray:
        """Resample a 1-D int16 array chunk; returns an int16 array (clipped)."""
        x = np.asarray(x)
        if x.ndim != 1:
            raise ValueError(f"expected a 1-D mono array, got shape {x.shape}")
        if self._passthrough:
            return x.astype(np.int16, copy=True)
        if self._c is not None:
            pcm = x.astype("<i2", copy=False).tobytes()
            return np.frombuffer(self._c.process(pcm), dtype="<i2")
        return self._run(x)

    def _run(self, x: np.ndarray) -> np.ndarray:
        # Runs on every 20 ms frame of a call: each numpy call costs microseconds, so there
        # are as few as the arithmetic needs (bench/media_path.py).
        up, down, taps = self._up, self._down, self._taps
        n = x.shape[0]
        nh = self._hist.shape[0]
        buf = np.empty(nh + n)
        buf[:nh] = self._hist
        buf[nh:] = x
        frac = self._frac
        count = max(0, -(-(n * up - frac) // down))
        self._hist = buf[n:]
        self._frac = frac + count * down - n * up
        if count == 0:
            return np.zeros(0, dtype=np.int16)
        k = self._ntaps
        if down == 1:  # pure upsampling: every input position yields all `up` phases, in order
            win = np.ndarray((n, k), np.float64, buf, 0, (_F8, _F8))
            y = np.dot(win, self._taps_t).ravel()
        else:
            y = np.empty(count)
            for r in range(min(up, count)):
                n0, p = divmod(frac + r * down, up)
                rows = -(-(count - r) // up)
                win = np.ndarray((rows, k), np.float64, buf, n0 * _F8, (down * _F8, _F8))
                y[r::up] = np.dot(win, taps[p])
        np.rint(y, out=y)
        np.minimum(y, 32767.0, out=y)  # the ufuncs np.clip ends in, without its Python layers
        np.maximum(y, -32768.0, out=y)
        return y.astype("<i2")


def resample_once(pcm: bytes, in_rate: int, out_rate: int) -> bytes:
    """Resample a whole int16 LE buffer with a fresh Resampler (output delayed by group_delay)."""
    return Resampler(in_rate, out_rate).process(pcm)
