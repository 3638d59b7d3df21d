"""Echo-path benchmark: CPU and memory of one SIP worker carrying 4 echo calls from SIPp,
idle cost of a worker, and the delay the engine adds on a real pjsua2 call.

Writes bench/results/echo_calls.json and prints a table. Run: `make bench`.
"""

from __future__ import annotations

import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from tests.support import audio, engine
from tests.support.sipp import finish, free_udp_port, start_sipp

RESULTS = Path(__file__).parent / "results" / "echo_calls.json"
HZ = 100  # /proc clock ticks per second


def _ticks(pid: int) -> int:
    f = Path(f"/proc/{pid}/stat").read_text().split()
    return int(f[13]) + int(f[14])


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_pct(pid: int, seconds: float) -> float:
    a, t = _ticks(pid), time.monotonic()
    time.sleep(seconds)
    return (_ticks(pid) - a) / HZ / (time.monotonic() - t) * 100


def measure(tmp: Path, trials: int = 5) -> dict[str, float | int | str]:
    out: dict[str, float | int | str] = {}
    with engine.running(tmp, "worker", "--provider", "echo", name="bench") as eng:
        pid = eng.proc.pid
        time.sleep(1)
        out["idle_worker_cpu_pct"] = round(_cpu_pct(pid, 8), 2)
        out["idle_worker_rss_mb"] = round(_rss_mb(pid), 1)
        sip = free_udp_port()
        media = free_udp_port(pair=True, exclude={sip, sip + 1, sip + 2})
        calls = start_sipp(
            "uac_rtp", f"127.0.0.1:{eng.sip_port}", calls=4, concurrency=4, rate=100,
            duration_ms=14000, local_port=sip, media_port=media, workdir=tmp,
        )  # fmt: skip
        eng.wait_for("media ready", 4)
        time.sleep(1)
        busy = _cpu_pct(pid, 10)
        out["worker_rss_mb_4_calls"] = round(_rss_mb(pid), 1)
        res = finish(calls)
        out["echo_calls_ok"] = res.successful
        out["cpu_pct_per_echo_call"] = round((busy - float(out["idle_worker_cpu_pct"])) / 4, 2)

    # Engine-added delay: echo (0 ms) minus pjmedia's own loopback, same caller, same codec.
    wav = audio.write_wav(tmp / "speech.wav", audio.speech_like(1.5, 16000), 16000)
    added = []
    with (
        engine.running(tmp, "worker", "--provider", "echo", name="echo") as echo,
        engine.running(
            tmp, "worker", "--media-loopback", "--provider", "echo", name="loop"
        ) as loop,
    ):
        for i in range(trials):
            rt = {}
            for label, eng in (("echo", echo), ("loop", loop)):
                rec = tmp / f"{label}{i}.wav"
                rep = engine.dial(
                    tmp, eng.sip_port, "--play", str(wav), "--play-at", "0.4",
                    "--duration", "2.2", "--record", str(rec), name=f"{label}{i}",
                )  # fmt: skip
                got, _ = audio.read_wav(rec)
                sent, _ = audio.read_wav(wav)
                rt[label] = audio.find_delay(sent, got, 16000)[0] - rep["play_start_ms"]
            added.append(rt["echo"] - rt["loop"])
    out["engine_added_round_trip_ms_p50"] = round(statistics.median(added), 1)
    out["engine_added_round_trip_ms_max"] = round(max(added), 1)
    out["trials"] = trials
    out["machine"] = f"{platform.machine()}, {_cores()} cores, Python {platform.python_version()}"
    out["date"] = time.strftime("%Y-%m-%d")
    return out


def _cores() -> int:
    import os

    return os.cpu_count() or 0


ROWS = [
    ("cpu_pct_per_echo_call", "CPU per echo call (24 kHz port, PCMU), % of a core"),
    ("idle_worker_cpu_pct", "Idle worker CPU, % of a core"),
    ("idle_worker_rss_mb", "Idle worker RSS, MB"),
    ("worker_rss_mb_4_calls", "Worker RSS with 4 calls, MB"),
    ("engine_added_round_trip_ms_p50", "Engine-added round trip (both directions), p50 ms"),
    ("engine_added_round_trip_ms_max", "Engine-added round trip, max ms"),
]


def table(data: dict[str, float | int | str]) -> str:
    lines = ["| measure | value |", "|---|---|"]
    lines += [f"| {label} | {data.get(key, '-')} |" for key, label in ROWS]
    lines.append(f"\n{data.get('machine', '')}, {data.get('date', '')}")
    return "\n".join(lines)


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        data = measure(Path(d))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=1) + "\n")
    print(table(data))


if __name__ == "__main__":
    main()
