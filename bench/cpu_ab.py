"""Before/after CPU per echo call: this checkout against an earlier git ref, interleaved.

CPU numbers on a shared 2-core machine drift by ±20 % from run to run, so one "before" run
and one "after" run prove little. This exports `--base-ref` with `git archive` into a temp
directory and runs the same measurement on both trees, alternating A, B, A, B…: a worker
(each tree's own engine) carrying 4 SIPp echo calls, CPU of all its threads from /proc
schedstat over 12 s, minus its idle CPU, per call — plus the split between pjmedia's clock
thread (media callbacks included) and the asyncio thread.

Run: `python -m bench.cpu_ab --base-ref 5664f3f` (not part of `make bench`).
Writes bench/results/cpu_ab.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "cpu_ab.json"

# Runs inside the tree under test (its own tests.support and telephony_bot).
_MEASURE = r"""
import json, sys, tempfile, time
from pathlib import Path
from tests.support import engine
from tests.support.sipp import finish, free_udp_port, start_sipp

def snap(pid):
    out = {}
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (t / "comm").read_text().strip()
            out[(t.name, name)] = int((t / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return out

def window(pid, s):
    a, t0 = snap(pid), time.monotonic()
    time.sleep(s)
    b, dt = snap(pid), time.monotonic() - t0
    per = {}
    for k, v in b.items():
        per[k[1]] = per.get(k[1], 0.0) + (v - a.get(k, 0)) / 1e9 / dt * 100
    return sum(per.values()), per

with tempfile.TemporaryDirectory() as d:
    tmp = Path(d)
    with engine.running(tmp, "worker", "--provider", "echo", name="ab") as eng:
        pid = eng.proc.pid
        time.sleep(2)
        idle = min(window(pid, 3)[0] for _ in range(2))
        sip = free_udp_port()
        media = free_udp_port(pair=True, exclude={sip, sip + 1, sip + 2})
        run = start_sipp("uac_rtp", f"127.0.0.1:{eng.sip_port}", calls=4, concurrency=4,
                         rate=100, duration_ms=17000, local_port=sip, media_port=media,
                         workdir=tmp)
        eng.wait_for("media ready", 4)
        time.sleep(1.5)
        busy, per = window(pid, 12)
        ok = finish(run).successful
print(json.dumps({"idle": idle, "busy": busy, "calls_ok": ok,
                  "per_call": (busy - idle) / 4,
                  "clock_thread": per.get("clock", 0.0), "asyncio_thread": per.get("python", 0.0)}))
"""


def _export(ref: str, dest: Path) -> None:
    data = subprocess.run(["git", "archive", ref], cwd=REPO, check=True, capture_output=True).stdout
    tar = dest / "src.tar"
    tar.write_bytes(data)
    with tarfile.open(tar) as t:
        t.extractall(dest, filter="data")
    tar.unlink()


def _measure(tree: Path) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    res = subprocess.run(
        [sys.executable, "-c", _MEASURE], cwd=tree, env=env, capture_output=True, timeout=180
    )
    lines = [ln for ln in res.stdout.decode().splitlines() if ln.startswith("{")]
    if res.returncode or not lines:
        raise RuntimeError(f"measurement in {tree} failed:\n{res.stderr.decode()[-3000:]}")
    out: dict[str, Any] = json.loads(lines[-1])
    return out


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(r[key] for r in rows), 3)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-ref", required=True, help="git ref to compare with, e.g. 5664f3f")
    ap.add_argument("--runs", type=int, default=3, help="runs per tree (default 3)")
    args = ap.parse_args(argv)
    base_sha = subprocess.run(
        ["git", "rev-parse", "--short", args.base_ref], cwd=REPO, check=True,
        capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    head_sha = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, check=True, capture_output=True,
        text=True,
    ).stdout.strip()  # fmt: skip
    rows: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as d:
        base = Path(d)
        _export(args.base_ref, base)
        for _ in range(args.runs):
            rows["before"].append(_measure(base))
            rows["after"].append(_measure(REPO))
    data: dict[str, Any] = {"before_ref": base_sha, "after_ref": f"{head_sha} (+ work tree)"}
    for k, v in rows.items():
        data[k] = {
            "cpu_pct_per_call_median": _median(v, "per_call"),
            "clock_thread_pct_median": _median(v, "clock_thread"),
            "asyncio_thread_pct_median": _median(v, "asyncio_thread"),
            "idle_worker_pct_median": _median(v, "idle"),
            "runs": v,
        }
    data["date"] = time.strftime("%Y-%m-%d")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=1) + "\n")
    print("| 4 SIPp echo calls, one worker | before | after |\n|---|---|---|")
    for key, label in (
        ("cpu_pct_per_call_median", "CPU per call, % of a core (median)"),
        ("clock_thread_pct_median", "pjmedia clock thread (4 calls), %"),
        ("asyncio_thread_pct_median", "asyncio thread (4 calls), %"),
        ("idle_worker_pct_median", "idle worker, %"),
    ):
        print(f"| {label} | {data['before'][key]} | {data['after'][key]} |")
    print(f"\nbefore {base_sha}, after {head_sha}; {args.runs} runs each, interleaved")


if __name__ == "__main__":
    main()
