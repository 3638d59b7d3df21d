"""Offline-engine benchmark: how fast the embedded engine answers a caller, and how many
callers one machine serves before they wait.

The engine runs as it does in production (`telephony-bot realtime-server`, its own process,
models loaded once, a pool of 2 ASR/TTS jobs). Each simulated caller is a Realtime client
that streams a spoken question (piper's voice, through a G.711 phone line) in real time,
20 ms per 20 ms, into the example dialplan's flow, and times:

- end of speech → first reply audio (what a caller feels; includes the silence that ends the
  turn: ~250 ms after a finished sentence, up to the session's 500 ms otherwise, see
  `local_engine/turn_end.py`),
- speech_stopped → first reply audio (what the engine adds after it knows the turn ended),
- the ASR the turn still waited for when it ended (it is transcribed at the caller's pause,
  so usually 0) and the wait for the shared pool (`response.done` metadata),
- response.created → first audio (the first clause's TTS).

Concurrency rises (1, 2, 4, 6, 8, 12, 16) until the p95 pool wait exceeds 500 ms; the last
level under it is the number of simultaneous conversations the machine sustains.

Writes bench/results/local_engine.json and prints a table. Run: `python -m bench.local_engine`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from bench.local_speech import phone_line
from telephony_bot.dialplan.loader import load
from telephony_bot.media.vad import frame_dbfs

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "local_engine.json"
QUESTION = "What is your address?"
LEVELS = (1, 2, 4, 6, 8, 12, 16)
TURNS = 3  # per caller per level
SINGLE_TURNS = 8  # the one-caller level: enough turns for its p95
WAIT_LIMIT_MS = 500.0
CHUNK_MS = 20


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def _question_audio() -> tuple[bytes, int]:
    """The question as a caller's phone delivers it (24 kHz PCM16), and where its voice ends."""
    from telephony_bot.local_engine.speech import Tts

    pcm = phone_line(b"".join(Tts().synthesize(QUESTION)))
    frames = [pcm[i : i + 960] for i in range(0, len(pcm) - 959, 960)]
    voiced = [i for i, f in enumerate(frames) if frame_dbfs(f) > -45]
    return pcm, (voiced[-1] + 1) * 20 if voiced else len(pcm) // 48


def _session_update() -> dict[str, Any]:
    loaded = load([REPO / "dialplans" / "example.yaml"])
    flow = loaded.plan.defaults.flow
    assert flow is not None
    return {
        "type": "session.update",
        "session": {
            "instructions": "front desk",
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
            "tools": [{"type": "function", "name": "opening_hours", "parameters": {}}],
            "flow": flow.model_dump(mode="json", exclude_none=True),
            "variables": {"caller": "+4930123", "called": "+4930999"},
        },
    }


class Caller:
    def __init__(self, url: str, question: bytes, voice_end_ms: int) -> None:
        self.url = url
        self.question = question
        self.voice_end_ms = voice_end_ms
        self.turns: list[dict[str, float]] = []
        self.errors: list[str] = []

    async def run(self, turns: int, start_delay: float) -> None:
        await asyncio.sleep(start_delay)
        try:
            async with connect(
                self.url + "/realtime?model=local",
                additional_headers={"OpenAI-Beta": "realtime=v1"},
                max_size=None,
            ) as ws:
                await ws.send(json.dumps(_session_update()))
                await ws.send(json.dumps({"type": "response.create"}))  # the greeting
                await self._until(ws, "response.done")
                for _ in range(turns):
                    await self._turn(ws)
        except Exception as exc:  # noqa: BLE001 - a failed caller is a result, not a crash
            self.errors.append(f"{type(exc).__name__}: {exc}")

    async def _until(self, ws: Any, type_: str) -> dict[str, Any]:
        while True:
            ev = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if ev["type"] == type_:
                return ev

    async def _turn(self, ws: Any) -> None:
        audio = bytes(300 * 48) + self.question + bytes(1500 * 48)
        marks: dict[str, float] = {}
        reply_ms = 0.0
        t0 = time.monotonic()

        async def send() -> None:
            step = CHUNK_MS * 48
            for k, i in enumerate(range(0, len(audio), step)):
                due = t0 + k * CHUNK_MS / 1000
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                chunk = base64.b64encode(audio[i : i + step]).decode()
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))

        sender = asyncio.create_task(send())
        voice_end = t0 + (300 + self.voice_end_ms) / 1000
        try:
            while True:
                ev = json.loads(await asyncio.wait_for(ws.recv(), 60))
                now = time.monotonic()
                kind = ev["type"]
                if kind == "input_audio_buffer.speech_stopped":
                    marks.setdefault("stopped", now)
                elif kind == "conversation.item.input_audio_transcription.completed":
                    marks.setdefault("transcribed", now)
                elif kind == "response.created":
                    marks.setdefault("created", now)
                elif kind == "response.audio.delta":
                    marks.setdefault("audio", now)
                    reply_ms += len(ev["delta"]) * 3 / 4 / 48
                elif kind == "response.done":
                    meta = ev["response"].get("metadata") or {}
                    if "audio" in marks and "stopped" in marks:
                        self.turns.append(
                            {
                                "end_of_speech_to_audio_ms": (marks["audio"] - voice_end) * 1000,
                                "stopped_to_audio_ms": (marks["audio"] - marks["stopped"]) * 1000,
                                "created_to_audio_ms": (marks["audio"] - marks["created"]) * 1000,
                                "queue_wait_ms": float(meta.get("queue_wait_ms", 0.0)),
                                "asr_ms": float(meta.get("asr_ms", 0.0)),
                            }
                        )
                    else:
                        self.errors.append(f"turn without reply audio: {sorted(marks)}")
                    break
        finally:
            await sender
        # The caller hears the whole reply, thinks a moment, then asks again.
        heard_at = marks.get("audio", time.monotonic()) + reply_ms / 1000
        await asyncio.sleep(max(0.0, heard_at - time.monotonic()) + random.uniform(0.3, 1.5))


async def _level(url: str, n: int, question: bytes, voice_end_ms: int) -> dict[str, Any]:
    callers = [Caller(url, question, voice_end_ms) for _ in range(n)]
    t = time.monotonic()
    turns_each = SINGLE_TURNS if n == 1 else TURNS
    await asyncio.gather(*(c.run(turns_each, random.uniform(0, 4.0)) for c in callers))
    turns = [x for c in callers for x in c.turns]

    def stat(key: str) -> dict[str, float]:
        xs = [x[key] for x in turns]
        return {"p50": round(_pct(xs, 50), 1), "p95": round(_pct(xs, 95), 1)}

    return {
        "sessions": n,
        "turns": len(turns),
        "errors": [e for c in callers for e in c.errors][:5],
        "seconds": round(time.monotonic() - t, 1),
        **({k: stat(k) for k in turns[0]} if turns else {}),
    }


async def _run(url: str) -> list[dict[str, Any]]:
    question, voice_end_ms = await asyncio.to_thread(_question_audio)
    levels = []
    for n in LEVELS:
        row = await _level(url, n, question, voice_end_ms)
        levels.append(row)
        wait = row.get("queue_wait_ms", {}).get("p95", float("inf"))
        print(
            f"  {n:>2} sessions: end of speech → audio p50 "
            f"{row.get('end_of_speech_to_audio_ms', {}).get('p50')} ms, "
            f"pool wait p95 {wait} ms, errors {len(row['errors'])}",
            flush=True,
        )
        if wait > WAIT_LIMIT_MS or row["errors"]:
            break
    return levels


def main() -> None:
    port = _free_port()
    log = RESULTS.parent / "local_engine.server.log"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "telephony_bot.cli", "realtime-server", "--port", str(port),
            "--log-format", "json"]  # fmt: skip
    with open(log, "wb") as f:
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        deadline = time.monotonic() + 90
        while b"realtime server listening" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the local engine did not start; see {log}")
            time.sleep(0.2)
        levels = asyncio.run(_run(f"ws://127.0.0.1:{port}/v1"))
    finally:
        proc.terminate()
        proc.wait(10)
        log.unlink(missing_ok=True)
    ok = [r for r in levels if r.get("queue_wait_ms", {}).get("p95", 1e9) <= WAIT_LIMIT_MS
          and not r["errors"]]  # fmt: skip
    single = levels[0]
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },  # fmt: skip
        "question": QUESTION,
        "turns_per_session": TURNS,
        "turns_single_session": SINGLE_TURNS,
        "single_session": single,
        "levels": levels,
        "max_sessions_under_500ms_wait": max((r["sessions"] for r in ok), default=0),
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    s = single
    print()
    print("| offline engine, 1 caller | p50 | p95 |")
    print("|---|---|---|")
    for key, label in (
        ("end_of_speech_to_audio_ms", "end of speech → first reply audio (ms)"),
        ("stopped_to_audio_ms", "turn detected → first reply audio (ms)"),
        ("asr_ms", "ASR left when the turn ended (ms)"),
        ("created_to_audio_ms", "TTS first clause (ms)"),
    ):
        print(f"| {label} | {s[key]['p50']} | {s[key]['p95']} |")
    print()
    print("| sessions | end of speech → audio p50 / p95 (ms) | pool wait p95 (ms) |")
    print("|---|---|---|")
    for r in levels:
        e = r.get("end_of_speech_to_audio_ms", {})
        print(f"| {r['sessions']} | {e.get('p50')} / {e.get('p95')} | "
              f"{r.get('queue_wait_ms', {}).get('p95')} |")  # fmt: skip
    print(f"\nsustained before pool wait > 500 ms: {result['max_sessions_under_500ms_wait']} "
          f"sessions  → {RESULTS.relative_to(REPO)}")  # fmt: skip


if __name__ == "__main__":
    main()
