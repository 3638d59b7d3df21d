"""The engine's own voice-activity detector for the caller's audio (first stage of barge-in).

`FrameVad.process()` takes one caller frame (PCM16 mono at the call's media rate, 20 ms),
brings it to 8 kHz with the stateful zero-latency `Resampler` unless it is 8 kHz already (a
G.711 call's own audio is taken as it is), asks WebRTC's VAD (package
`webrtcvad-wheels`, GMM on 8 kHz telephone-band audio) whether it is speech, and measures the
frame's level in dBFS. It costs a few µs of VAD plus the resampler's numpy work per frame, so it
can run on every caller frame of every call. The decision lags speech onset by roughly one frame
in quiet, more in noise: `session.turns.TurnPolicy` adds the run-length and echo rules on top.

dBFS here is the RMS of the 24 kHz frame relative to full scale (32767), so a sine whose RMS is
-20 dB below full scale reads -20 dBFS; digital silence reads `SILENCE_DBFS` (-120).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from telephony_bot.media.resample import Resampler

SILENCE_DBFS = -120.0
INPUT_RATE = 24000
VAD_RATE = 8000
_VAD_BLOCK = VAD_RATE * 20 // 1000  # 160 samples: one 20 ms block for webrtcvad
_FULL_SCALE = 32767.0


class VadFrame(NamedTuple):  # a tuple: made for every caller frame of every call
    speech: bool
    dbfs: float


def _dbfs(x: np.ndarray) -> float:
    n = x.shape[0]
    if n == 0:
        return SILENCE_DBFS
    xf = x.astype(np.float64)
    mean_square = float(np.dot(xf, xf)) / n
    if mean_square <= 0.0:
        return SILENCE_DBFS
    return max(SILENCE_DBFS, 10.0 * math.log10(mean_square) - 20.0 * math.log10(_FULL_SCALE))


def _frame_dbfs_numpy(pcm: bytes) -> float:
    if len(pcm) % 2:
        raise ValueError(f"int16 PCM must have an even byte length, got {len(pcm)}")
    return _dbfs(np.frombuffer(pcm, dtype="<i2"))


try:  # the same sum in C: numpy's per-call overheads were a quarter of a live call's Python
    from telephony_bot.native._dsp import dbfs as _frame_dbfs
except ImportError:  # pragma: no cover - an install without the compiled part
    _frame_dbfs = _frame_dbfs_numpy


def frame_dbfs(pcm: bytes) -> float:
    """RMS level of int16 LE PCM in dBFS (full-scale RMS = 0 dBFS); -120 for digital silence."""
    return float(_frame_dbfs(pcm))


class FrameVad:
    """Speech / not-speech and level for each 20 ms caller frame at `input_rate`; one per
    call."""

    def __init__(self, mode: int = 3, input_rate: int = INPUT_RATE) -> None:
        if mode not in (0, 1, 2, 3):
            raise ValueError(f"webrtcvad mode must be 0..3, got {mode}")
        try:
            import webrtcvad  # type: ignore[import-not-found]
        except ImportError as exc:
            raise RuntimeError(
                "FrameVad needs the 'webrtcvad-wheels' package (import name webrtcvad): "
                "pip install webrtcvad-wheels"
            ) from exc
        self.mode = mode
        self._vad: Any = webrtcvad.Vad(mode)
        self.input_rate = input_rate
        self._resampler = Resampler(input_rate, VAD_RATE) if input_rate != VAD_RATE else None
        self._pending = np.zeros(0, dtype=np.int16)  # 8 kHz samples short of a full block
        self._last_speech = False

    def reset(self) -> None:
        """Start a new stream (forget resampler history and any partial block)."""
        if self._resampler is not None:
            self._resampler.reset()
        self._pending = np.zeros(0, dtype=np.int16)
        self._last_speech = False

    def process(self, frame: bytes) -> VadFrame:
        """Classify one caller frame (normally 20 ms at `input_rate`).

        Frames of other lengths are accepted: their 8 kHz samples are gathered into 20 ms
        blocks; the frame is speech if any block completed by it is, and a frame that
        completes no block repeats the previous decision. The level is the frame's own.
        """
        if len(frame) % 2:
            raise ValueError(f"int16 PCM must have an even byte length, got {len(frame)}")
        if self._resampler is None and len(frame) == _VAD_BLOCK * 2 and not self._pending.size:
            speech = bool(self._vad.is_speech(frame, VAD_RATE))  # 8 kHz already: as it is
            self._last_speech = speech
            return VadFrame(speech, _frame_dbfs(frame))
        x = np.frombuffer(frame, dtype="<i2")
        low = self._resampler.process_array(x) if self._resampler is not None else x
        if self._pending.shape[0] == 0 and low.shape[0] == _VAD_BLOCK:  # the usual case
            speech = bool(self._vad.is_speech(low.astype("<i2", copy=False).tobytes(), VAD_RATE))
        else:
            buf = np.concatenate((self._pending, low)) if self._pending.shape[0] else low
            nblocks = buf.shape[0] // _VAD_BLOCK
            if nblocks == 0:
                speech = self._last_speech
            else:
                raw = buf[: nblocks * _VAD_BLOCK].astype("<i2", copy=False).tobytes()
                step = _VAD_BLOCK * 2
                speech = any(
                    self._vad.is_speech(raw[i : i + step], VAD_RATE)
                    for i in range(0, len(raw), step)
                )
            self._pending = buf[nblocks * _VAD_BLOCK :].copy()
        self._last_speech = speech
        return VadFrame(speech, _frame_dbfs(frame))
