"""Multiprocess mode as `serve` runs it: two worker processes write into one directory, the
supervisor's render() sums them, and a dead worker's calls in progress stop counting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from telephony_bot.events import metrics
from tests.support.admin import sample

WORKER = """
import os, sys
from telephony_bot.events.bus import Bus
from telephony_bot.events.metrics import Metrics
m = Metrics(worker=int(sys.argv[1]))
bus = Bus()
m.attach(bus, capacity=4)
bus.emit("call.started", "a" + sys.argv[1])
bus.emit("call.started", "b" + sys.argv[1])
bus.emit("call.ended", "b" + sys.argv[1], ended_by="remote", reason="")
bus.emit("turn.agent", "a" + sys.argv[1], text="hi", item_id="i", latency_ms=500)
print(os.getpid(), flush=True)
"""


def test_workers_are_summed_and_a_dead_workers_live_calls_drop(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    pids = []
    for i in (0, 1):
        p = subprocess.run([sys.executable, "-c", WORKER, str(i)], env=env, capture_output=True,
                           timeout=60, check=True)  # fmt: skip
        pids.append(int(p.stdout))
    text = metrics.render()[0].decode()
    assert sample(text, "telephony_bot_calls_total", result="completed") == 2
    assert sample(text, "telephony_bot_turn_latency_seconds_count") == 2
    assert sample(text, "telephony_bot_calls_active", worker="0") == 1
    assert sample(text, "telephony_bot_worker_capacity", worker="1") == 4
    # the processes have exited; the supervisor learns it and marks them dead
    for pid in pids:
        metrics.mark_process_dead(pid)
    text = metrics.render()[0].decode()
    assert sample(text, "telephony_bot_calls_active", worker="0") == 0
    assert sample(text, "telephony_bot_calls_total", result="completed") == 2  # history stays
