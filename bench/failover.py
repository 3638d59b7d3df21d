"""Failover bench: a route with `provider: [main, backup]`; the main model's server is killed
in the middle of a reply, call after call, and the caller's side of the wire shows what the
caller heard.

Each call: the main server (a scripted Realtime server, 600 Hz audio) greets; the caller
asks for an appointment "on Tuesday"; 1 s into the answer the server is killed (listening
socket and connection gone, like a dead process). The backup server (900 Hz) must take the
call over with the conversation (it is given the caller's Tuesday) and give the cut answer
again. From the caller's recording, frame by frame (20 ms): the last frame of the main's
audio, the first of the backup's, the longest stretch of silence between them (the bridge
phrase "Sorry, just a moment." plays in between), and whether the call survived.

Writes bench/results/failover.json and prints a table. Run: `python -m bench.failover`
(`--kills N`, default 20).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import report
from tests.support import audio, engine
from tests.support.plans import KEY_ENV, fallback_plan
from tests.support.realtime_server import ScriptedRealtimeServer, ScriptedReply

RESULTS = Path(__file__).parent / "results" / "failover.json"
RATE = 16000  # the caller's recording
FRAME = RATE // 50  # 20 ms
MAIN_HZ, BACKUP_HZ = 600, 900
SILENT_DBFS = -45.0
SAID = "I'd like an appointment on Tuesday."


def _tone(hz: float, seconds: float) -> bytes:
    return audio.pcm24(audio.tone(hz, seconds, 24000, dbfs=-14))


def classify(rec: np.ndarray) -> list[str]:
    """Each 20 ms frame: "main" (600 Hz), "backup" (900 Hz), "silent", or "other" (the
    engine's own prompts: speech)."""
    out = []
    x = rec.astype(np.float64)
    freqs = np.fft.rfftfreq(2 * FRAME, 1 / RATE)
    for i in range(len(x) // FRAME):
        frame = x[i * FRAME : (i + 1) * FRAME]
        rms = np.sqrt(np.mean(frame**2)) if len(frame) else 0.0
        if 20 * np.log10(max(rms, 1.0) / 32768) < SILENT_DBFS:
            out.append("silent")
            continue
        win = x[max(0, i * FRAME - FRAME // 2) : i * FRAME + FRAME * 3 // 2]
        spec = np.abs(np.fft.rfft(win * np.hanning(len(win)), 2 * FRAME)) ** 2
        total = spec.sum() or 1.0

        def share(hz: int, spec: np.ndarray = spec, total: float = total) -> float:
            return float(spec[np.abs(freqs - hz) <= 50].sum() / total)

        kind = "other"
        if share(MAIN_HZ) > 0.8:
            kind = "main"
        elif share(BACKUP_HZ) > 0.8:
            kind = "backup"
        out.append(kind)
    return out


def measure_call(frames: list[str]) -> dict[str, Any]:
    """Gap and dead air around the switch, from the caller's frames."""
    first_backup = next((i for i, k in enumerate(frames) if k == "backup"), None)
    if first_backup is None:
        return {"switched": False}
    last_main = max((i for i, k in enumerate(frames[:first_backup]) if k == "main"), default=None)
    if last_main is None:
        return {"switched": False}
    longest = run = 0
    for k in frames[last_main + 1 : first_backup]:
        run = run + 1 if k == "silent" else 0
        longest = max(longest, run)
    return {
        "switched": True,
        "gap_ms": (first_backup - last_main - 1) * 20,
        "dead_air_ms": longest * 20,
        "last_main_ms": last_main * 20,
        "first_backup_ms": first_backup * 20,
    }


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def run(kills: int, tmp: Path) -> dict[str, Any]:
    os.environ.setdefault(KEY_ENV, "sk-bench-not-a-real-key")
    backup = ScriptedRealtimeServer()
    backup.start()
    main = ScriptedRealtimeServer()  # each call's main listens on this one's port
    main.start()
    port = main.port
    plan_path = fallback_plan(tmp, main, backup)
    main.stop()
    speech = audio.write_wav(tmp / "q.wav", audio.speech_like(0.8, RATE), RATE)
    calls: list[dict[str, Any]] = []
    with engine.running(tmp, "worker", "--dialplan", str(plan_path), name="bench") as eng:
        for n in range(kills):
            main = ScriptedRealtimeServer(
                port=port,
                greeting=ScriptedReply(pcm=_tone(MAIN_HZ, 0.8), transcript="Hello, the clinic."),
                replies=[ScriptedReply(pcm=_tone(MAIN_HZ, 4.0), transcript="We are open ...")],
                transcripts=[SAID],
            )
            main.start()
            backup.replies.append(ScriptedReply(pcm=_tone(BACKUP_HZ, 1.5), transcript="Open."))
            before = backup.connections
            name = f"call{n}"
            call = engine.dial_async(
                tmp, eng.sip_port, "--play", str(speech), "--play-at", "2", "--duration", "8",
                "--record", str(tmp / f"{name}.wav"), "--rate", str(RATE), name=name,
            )  # fmt: skip
            record: dict[str, Any] = {"call": n}
            try:
                main.wait_for_sent("response.created", count=2, timeout=20)  # the answer began
                time.sleep(1.0)
            except TimeoutError as exc:
                record["error"] = str(exc)
            main.stop()  # killed mid-reply
            call.wait(40)
            rep = engine.read_report(tmp, name)
            rec, _ = audio.read_wav(tmp / f"{name}.wav")
            record |= measure_call(classify(rec))
            record["answered"] = bool(rep.get("answered"))
            record["ended_by"] = rep.get("ended_by")  # "local": the caller hung up, as planned
            given = [
                e.data["item"] for e in backup.received[:]
                if e.type == "conversation.item.create" and e.conn >= before
            ]  # fmt: skip
            record["backup_had_history"] = any(SAID in json.dumps(item) for item in given)
            calls.append(record)
            print(json.dumps(record))
    backup.stop()
    ok = [c for c in calls if c.get("switched")]
    dropped = [c for c in calls if not (c.get("answered") and c.get("ended_by") == "local")]
    gaps = [c["gap_ms"] for c in ok]
    dead = [c["dead_air_ms"] for c in ok]
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },  # fmt: skip
        "kills": kills,
        "dropped_calls": len(dropped),
        "switched": len(ok),
        "backup_had_history": sum(1 for c in calls if c.get("backup_had_history")),
        "gap_ms": {"p50": _pct(gaps, 0.5), "p95": _pct(gaps, 0.95), "max": max(gaps)}
        if gaps
        else {},
        "dead_air_ms": {"p50": _pct(dead, 0.5), "p95": _pct(dead, 0.95), "max": max(dead)}
        if dead
        else {},
        "mean_gap_ms": round(statistics.mean(gaps), 1) if gaps else None,
        "calls": calls,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = run(args.kills, Path(tmp))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    print(report.failover(data))


if __name__ == "__main__":
    main()
