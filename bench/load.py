"""Load benchmark: echo calls through the front door at rising concurrency until it breaks.

For each level (16, 96, 160, 200 concurrent calls) it starts `telephony-bot
serve --workers ceil(level/4) --provider echo` with Kamailio in front, places `level` SIPp
calls (tests/sipp/uac_rtp.xml, G.711 RTP from a pcap long enough to talk for the whole
call) through the one public port, holds them all up together, and measures:

- failed calls (SIPp) and 486s;
- underruns: bot audio that ran dry mid-stream, as % of bot frames (the workers' "call ended"
  log lines carry the bridge counters); caller frames dropped because asyncio fell behind;
- media clock: RTP packets a worker sent per 20 ms of the call's length as the worker logged
  it (from "media ready" to "call ended"; below 0.97 means its media thread fell behind, or
  its event loop logged the end late: both mean a saturated worker);
- CPU of the workers per call (% of one core), of Kamailio and of SIPp, and how busy the
  whole machine was (% of all cores, other tenants included) during the window;
- RSS per worker idle and with 4 calls, and per extra call.

A level fails on any failed call, underruns above 0.5 %, dropped caller frames, or a media
clock below 0.97. Levels are held `SHORT_HOLD_S`; the highest passing level is then held
`FINAL_HOLD_S` (60 s) — that is "max concurrency held for 60 s". The whole run keeps to
`TIME_BUDGET_S`. Writes bench/results/load.json and prints a table. Run: `make bench`,
or `python -m bench.load --levels 4,16 --hold 10` for a quick look.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.rtp_pcap import write_g711_pcap
from tests.support import audio, engine
from tests.support.sipp import finish, free_udp_port, start_sipp

RESULTS = Path(__file__).parent / "results" / "load.json"
LEVELS = (16, 96, 160, 200)
SHORT_HOLD_S = 15.0
FINAL_HOLD_S = 60.0
RATE_CPS = 16  # new calls per second while ramping up
TIME_BUDGET_S = 450.0
MAX_UNDERRUN_PCT = 0.5
MIN_CLOCK_RATIO = 0.97
HZ = os.sysconf("SC_CLK_TCK")
RTP_BASE = 40000  # workers' RTP ranges: 100 ports each from here


# --------------------------------------------------------------------------- /proc


def _ticks(pid: int) -> int:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return int(f[11]) + int(f[12])  # utime + stime (fields 14, 15)


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def _group(pgid: int) -> list[int]:
    """Every process in process group `pgid` (Kamailio and its children)."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            f = (p / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(f[2]) == pgid:
            out.append(int(p.name))
    return out


def _machine() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs from /proc/stat."""
    v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


@dataclass
class CpuWindow:
    """CPU used by groups of processes between start() and stop(), in % of one core."""

    groups: dict[str, list[int]]
    start_ticks: dict[str, int] = field(default_factory=dict)
    t0: float = 0.0
    m0: tuple[int, int] = (0, 0)

    def start(self) -> None:
        self.start_ticks = {k: sum(_ticks(p) for p in v) for k, v in self.groups.items()}
        self.t0 = time.monotonic()
        self.m0 = _machine()

    def stop(self) -> dict[str, float]:
        secs = time.monotonic() - self.t0
        busy, total = _machine()
        out = {
            k: (sum(_ticks(p) for p in v) - self.start_ticks[k]) / HZ / secs * 100
            for k, v in self.groups.items()
        }
        out["machine_busy_pct"] = (busy - self.m0[0]) / max(1, total - self.m0[1]) * 100
        out["window_s"] = secs
        return out


# --------------------------------------------------------------------------- one level


def _pcaps(workdir: Path, seconds: float) -> None:
    """Long PCMU and PCMA pcaps where tests/support/sipp.py looks for them."""
    pdir = workdir / "pcap"
    pdir.mkdir(parents=True, exist_ok=True)
    speech = audio.speech_like(seconds, 8000)
    write_g711_pcap(pdir / "g711u.pcap", speech, "ulaw")
    write_g711_pcap(pdir / "g711a.pcap", speech, "alaw")


def _ts(e: dict[str, Any]) -> float:
    return datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()


def _media_quality(eng: engine.EngineProc) -> dict[str, Any]:
    ready = {e["call_id"]: _ts(e) for e in eng.events("media ready") if "call_id" in e}
    ended = [e for e in eng.events("call ended") if "frames_out" in e]
    ratios = []
    for e in ended:
        t0 = ready.get(e.get("call_id", ""))
        if t0 is not None and _ts(e) - t0 > 2:
            ratios.append(e.get("rtp_tx_packets", 0) / ((_ts(e) - t0) / 0.02))
    frames_out = sum(e["frames_out"] for e in ended)
    rx = sum(e.get("rtp_rx_packets", 0) for e in ended)
    lost = sum(e.get("rtp_rx_lost", 0) for e in ended)
    return {
        "calls_ended": len(ended),
        "underruns": sum(e["underruns"] for e in ended),
        "underrun_pct": round(sum(e["underruns"] for e in ended) / max(1, frames_out) * 100, 3),
        "frames_dropped": sum(e["frames_dropped"] for e in ended),
        "callback_errors": sum(e.get("bridge_callback_errors", 0) for e in ended),
        "rtp_rx_lost_pct": round(lost / max(1, rx + lost) * 100, 3),
        "jb_discarded": sum(e.get("jb_discarded", 0) for e in ended),
        "rtp_jitter_ms_mean": round(
            statistics.fmean([e.get("rtp_rx_jitter_us", 0) for e in ended]) / 1000, 2
        )
        if ended
        else 0.0,
        "clock_ratio_min": round(min(ratios), 3) if ratios else 0.0,
        "clock_ratio_mean": round(statistics.fmean(ratios), 3) if ratios else 0.0,
    }


def run_level(tmp: Path, level: int, hold_s: float) -> dict[str, Any]:
    workers = math.ceil(level / 4)
    ramp_s = level / RATE_CPS
    started = time.monotonic()
    eng = engine.start(
        tmp, "serve", "--workers", str(workers), "--provider", "echo",
        "--front-door", "kamailio", "--grace", "2", "--rtp-port", str(RTP_BASE),
        ready_event="front door ready", name=f"load{level}",
    )  # fmt: skip
    out: dict[str, Any] = {"level": level, "workers": workers, "hold_s": hold_s}
    try:
        eng.wait_for("worker listening", workers, timeout=60 + workers * 3)
        out["startup_s"] = round(time.monotonic() - started, 1)
        wpids = [e["pid"] for e in eng.events("worker listening")]
        kpgid = int((engine_run_dir(eng) / "kamailio.pid").read_text())
        time.sleep(2)
        idle = CpuWindow({"workers": wpids})
        idle.start()
        time.sleep(3)
        idle_cpu = idle.stop()["workers"] / workers
        idle_rss = [_rss_mb(p) for p in wpids]

        sip = free_udp_port()
        media = free_udp_port(pair=True, exclude={sip, sip + 1, sip + 2})
        calls = start_sipp(
            "uac_rtp", f"127.0.0.1:{eng.sip_port}", calls=level, concurrency=level,
            rate=RATE_CPS, duration_ms=int((hold_s + ramp_s) * 1000), local_port=sip,
            media_port=media, workdir=tmp / "sipp", timeout_s=hold_s + ramp_s + 60,
        )  # fmt: skip
        all_up = True
        try:
            eng.wait_for("media ready", level, timeout=ramp_s + 30)
        except AssertionError:
            all_up = False  # some calls failed; SIPp's result says which
        window = CpuWindow({"workers": wpids, "kamailio": _group(kpgid), "sipp": [calls.pid]})
        time.sleep(1)
        window.start()
        time.sleep(max(2.0, hold_s - 4) if all_up else 2.0)
        loaded_rss = [_rss_mb(p) for p in wpids]
        cpu = window.stop()
        res = finish(calls)
        eng.wait_for("call ended", res.successful, timeout=60)
        quality = _media_quality(eng)
        answered = len(eng.events("media ready"))
        warnings = [  # what the engine had to say, kept when the level fails
            {k: e.get(k) for k in ("timestamp", "component", "event", "msg", "call_id", "worker")}
            for e in eng.logs()
            if e.get("level") in ("warning", "error") and "bind()" not in str(e.get("msg", ""))
        ]
    finally:
        eng.stop(timeout=60)
    out.update(
        calls_ok=res.successful,
        calls_failed=res.failed,
        busy=res.busy,
        sipp_failures={
            k: v for k, v in res.stats.items() if k.startswith("Failed") and v not in ("", "0")
        },
        answered=answered,
        **quality,
        cpu_window_s=round(cpu["window_s"], 1),
        worker_cpu_pct=round(cpu["workers"], 1),
        cpu_pct_per_call=round(cpu["workers"] / level, 2),
        idle_worker_cpu_pct=round(idle_cpu, 2),
        kamailio_cpu_pct=round(cpu["kamailio"], 1),
        sipp_cpu_pct=round(cpu["sipp"], 1),
        machine_busy_pct=round(cpu["machine_busy_pct"], 1),
        rss_worker_idle_mb=round(statistics.fmean(idle_rss), 1),
        rss_worker_4_calls_mb=round(statistics.fmean(loaded_rss), 1),  # levels: 4 per worker
        rss_worker_max_mb=round(max(loaded_rss), 1),
    )
    out["rss_per_extra_call_mb"] = round(
        (out["rss_worker_4_calls_mb"] - out["rss_worker_idle_mb"]) / 4, 2
    )
    out["duration_s"] = round(time.monotonic() - started, 1)
    reasons = []
    if res.failed or res.successful < level or res.timed_out:
        reasons.append(f"{level - res.successful} calls failed")
    if quality["underrun_pct"] > MAX_UNDERRUN_PCT:
        reasons.append(f"underruns {quality['underrun_pct']} %")
    if quality["frames_dropped"]:
        reasons.append(f"{quality['frames_dropped']} caller frames dropped")
    if quality["clock_ratio_min"] < MIN_CLOCK_RATIO:
        reasons.append(f"media clock {quality['clock_ratio_min']}")
    out["passed"] = not reasons
    out["failure"] = "; ".join(reasons)
    if reasons:  # for whoever looks into it: SIPp's own account and the engine's warnings
        out["sipp_error_log_tail"] = res.error_log[-3000:]
        out["engine_warnings"] = warnings[:30]
    return out


def engine_run_dir(eng: engine.EngineProc) -> Path:
    return Path(tempfile.gettempdir()) / f"telephony-bot-front-{eng.sip_port}"


# --------------------------------------------------------------------------- the run


def _estimate_s(level: int, hold_s: float) -> float:
    workers = math.ceil(level / 4)
    return 15 + workers * 1.0 + level / RATE_CPS + hold_s + 10


def measure(tmp: Path, levels: tuple[int, ...], hold_s: float, final_hold_s: float,
            budget_s: float) -> dict[str, Any]:  # fmt: skip
    t0 = time.monotonic()
    _pcaps(tmp / "sipp", max(hold_s, final_hold_s) + max(levels) / RATE_CPS + 10)
    runs: list[dict[str, Any]] = []
    best: int | None = None
    stopped = "every level passed"
    for level in levels:
        left = budget_s - (time.monotonic() - t0)
        if _estimate_s(level, hold_s) + _estimate_s(level, final_hold_s) > left:
            stopped = f"time budget: {level} not tried"
            break
        r = run_level(tmp, level, hold_s)
        runs.append(r)
        _print_row(r)
        if not r["passed"]:
            stopped = f"{level} failed: {r['failure']}"
            break
        best = level
    # the best level held for the final (60 s) hold; if it does not last, the one below
    holds: list[dict[str, Any]] = []
    candidates = [lv for lv in levels if best is not None and lv <= best][::-1]
    for level in candidates[:2] if final_hold_s > hold_s else []:
        if holds and _estimate_s(level, final_hold_s) > budget_s - (time.monotonic() - t0):
            break
        holds.append(run_level(tmp, level, final_hold_s))
        _print_row(holds[-1])
        if holds[-1]["passed"]:
            break
    held = next((h for h in holds if h["passed"]), None)
    return {
        "levels": runs,
        "holds": holds,
        "max_concurrency_held_60s": held["level"] if held else None,
        "max_level_passed_short_hold": best,
        "stopped": stopped,
        "criteria": {
            "max_underrun_pct": MAX_UNDERRUN_PCT,
            "min_media_clock_ratio": MIN_CLOCK_RATIO,
            "failed_calls": 0,
            "frames_dropped": 0,
        },
        "short_hold_s": hold_s,
        "final_hold_s": final_hold_s,
        "rate_cps": RATE_CPS,
        "total_s": round(time.monotonic() - t0, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d"),
    }


COLUMNS = (
    ("level", "calls"),
    ("workers", "workers"),
    ("hold_s", "hold s"),
    ("calls_failed", "failed"),
    ("underrun_pct", "underruns %"),
    ("frames_dropped", "dropped"),
    ("clock_ratio_min", "media clock min"),
    ("cpu_pct_per_call", "worker CPU/call %"),
    ("worker_cpu_pct", "workers CPU %"),
    ("kamailio_cpu_pct", "Kamailio %"),
    ("sipp_cpu_pct", "SIPp %"),
    ("machine_busy_pct", "machine busy % (all cores)"),
    ("rss_worker_4_calls_mb", "RSS/worker MB"),
    ("passed", "ok"),
)


def _row(r: dict[str, Any]) -> str:
    cells = []
    for key, _ in COLUMNS:
        v = r.get(key, "-")
        cells.append(("yes" if v else "NO") if key == "passed" else str(v))
    return "| " + " | ".join(cells) + " |"


def _print_row(r: dict[str, Any]) -> None:
    print(_row(r) + (f"  {r['failure']}" if r.get("failure") else ""), flush=True)


def table(data: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += [_row(r) for r in data["levels"] + data.get("holds", [])]
    first = (data["levels"] or [{}])[0]
    lines.append(
        f"\nMax concurrency held {data['final_hold_s']:.0f} s: "
        f"{data['max_concurrency_held_60s']}; stopped: {data['stopped']}. "
        f"Idle worker: {first.get('idle_worker_cpu_pct', '-')} % CPU, "
        f"{first.get('rss_worker_idle_mb', '-')} MB; RSS per extra call "
        f"{first.get('rss_per_extra_call_mb', '-')} MB."
    )
    lines.append(f"{data['machine']}, {data['date']}, {data['total_s']} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--levels", default=",".join(str(x) for x in LEVELS))
    p.add_argument("--hold", type=float, default=SHORT_HOLD_S, help="hold per level, s")
    p.add_argument("--final-hold", type=float, default=FINAL_HOLD_S, help="hold of the best")
    p.add_argument("--budget", type=float, default=TIME_BUDGET_S, help="time budget, s")
    p.add_argument("--out", default=str(RESULTS), help="JSON file to write")
    p.add_argument("--table", action="store_true", help="only print the table of the JSON in --out")
    args = p.parse_args(argv)
    if args.table:
        print(table(json.loads(Path(args.out).read_text())))
        return
    levels = tuple(int(x) for x in args.levels.split(","))
    print("| " + " | ".join(h for _, h in COLUMNS) + " |", flush=True)
    with tempfile.TemporaryDirectory(prefix="load-") as d:
        data = measure(Path(d), levels, args.hold, args.final_hold, args.budget)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n")
    print()
    print(table(data))


if __name__ == "__main__":
    main()
