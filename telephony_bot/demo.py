"""`telephony-bot demo`: a scripted phone call to a running engine, printed as a transcript.

It speaks a few questions in the offline voice, calls the engine with `telephony-bot dial`
(a real SIP/RTP caller, G.711 on the wire), says each question once the bot has answered
and paused, records everything the bot says, and transcribes the bot's turns with the same
offline ASR. The printout is the conversation with its timings: when the greeting started
after the answer, and how long the bot took to start each reply after the caller stopped.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from telephony_bot.errors import ConfigError, TelephonyBotError

QUESTIONS = ("When are you open?", "What is your address?", "That's all, goodbye.")
RATE = 16000
VOICED_DBFS = -45.0
ASR_PAD_MS = 300


@dataclass(frozen=True)
class Line:
    at_ms: int  # from the answer
    who: str  # "bot" | "caller"
    text: str
    waited_ms: int | None = None  # bot: from the caller's last word (or the answer) to its voice


def _speak(texts: tuple[str, ...], folder: Path) -> list[Path]:
    from telephony_bot.local_engine.speech import SpeechUnavailableError, Tts
    from telephony_bot.media.resample import resample_once
    from telephony_bot.sip.dial import write_wav

    try:
        tts = Tts()
    except SpeechUnavailableError as exc:
        raise ConfigError(str(exc)) from None
    paths = []
    for i, text in enumerate(texts):
        pcm = resample_once(b"".join(tts.synthesize(text)), 24000, RATE)
        path = folder / f"q{i}.wav"
        write_wav(str(path), pcm, RATE)
        paths.append(path)
    return paths


def _bot_segments(report: dict[str, Any]) -> list[tuple[int, int]]:
    """(start_ms, end_ms) of each bot turn: its voiced frames between the caller's turns."""
    energy = report["energy_dbfs"]
    frame = report["frame_ms"]
    bounds = [0] + [t["end_ms"] for t in report["turns"]]
    starts = [t["start_ms"] for t in report["turns"]] + [len(energy) * frame]
    out = []
    for lo, hi in zip(bounds, starts, strict=True):
        voiced = [i for i in range(lo // frame, min(hi // frame, len(energy)))
                  if energy[i] > VOICED_DBFS]  # fmt: skip
        if voiced:
            out.append((voiced[0] * frame, (voiced[-1] + 1) * frame))
    return out


def transcript(
    report: dict[str, Any], recording: np.ndarray, questions: tuple[str, ...]
) -> list[Line]:
    from telephony_bot.local_engine.speech import Asr
    from telephony_bot.media.resample import resample_once

    asr = Asr()
    lines: list[Line] = []
    caller_turns = report["turns"]
    # Silence around each turn: the voiced stretch ends where its last word fades under
    # -45 dBFS, and the ASR loses a final short word ("Goodbye.") more often without it.
    pad = bytes(2 * RATE * ASR_PAD_MS // 1000)
    for start, end in _bot_segments(report):
        voiced = recording[start * RATE // 1000 : end * RATE // 1000].astype("<i2").tobytes()
        pcm = pad + voiced + pad
        text = asr.transcribe(resample_once(pcm, RATE, 24000)).text.strip()
        before = [t["end_ms"] for t in caller_turns if t["end_ms"] <= start]
        lines.append(Line(start, "bot", text, start - (before[-1] if before else 0)))
    for turn, q in zip(caller_turns, questions, strict=False):
        lines.append(Line(turn["start_ms"], "caller", q))
    return sorted(lines, key=lambda line: line.at_ms)


def run_demo(
    uri: str,
    questions: tuple[str, ...] = QUESTIONS,
    timeout_s: float = 90.0,
    turn_gap_s: float = 1.2,
    keep: Path | None = None,
) -> int:
    from telephony_bot.sip.dial import read_wav

    with tempfile.TemporaryDirectory(prefix="telephony-bot-demo-") as tmp:
        folder = Path(tmp)
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            folder = keep
        wavs = _speak(questions, folder)
        rec, rep = folder / "heard.wav", folder / "report.json"
        argv = [sys.executable, "-m", "telephony_bot.cli", "dial", uri, "--from-user", "demo",
                "--record", str(rec), "--report", str(rep), "--duration", str(timeout_s),
                "--rate", str(RATE), "--turn-gap", str(turn_gap_s)]  # fmt: skip
        for w in wavs:
            argv += ["--say", str(w)]
        print(f"calling {uri} …", flush=True)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s + 30)
        if not rep.exists():
            raise TelephonyBotError(f"the call could not be placed: {done.stderr.strip()[-500:]}")
        report = json.loads(rep.read_text())
        if not report["answered"]:
            raise TelephonyBotError(
                f"no answer from {uri}: SIP {report['sip_status']} {report['reason']}. "
                "Is the engine running (`make run`)?"
            )
        heard = np.frombuffer(read_wav(str(rec), RATE), "<i2")
        lines = transcript(report, heard, questions)
    print(f"answered in {report['setup_ms']} ms, codec {report['codec']}, "
          f"call ended by {report['ended_by']}\n")  # fmt: skip
    for line in lines:
        who = "bot   " if line.who == "bot" else "caller"
        wait = ""
        if line.who == "bot" and line.waited_ms is not None:
            after = "after the answer" if line.at_ms == line.waited_ms else "after you stopped"
            wait = f"   ({line.waited_ms} ms {after})"
        print(f"{line.at_ms / 1000:6.2f} s  {who}  {line.text}{wait}")
    return 0 if any(line.who == "bot" and line.text for line in lines) else 1
