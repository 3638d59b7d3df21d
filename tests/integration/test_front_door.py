"""`serve --workers 2` with Kamailio's dispatcher in front: one SIP address, calls balanced
over the workers by call load, in-dialog requests kept on the owning worker, a frozen worker
skipped. Real peers only: Kamailio 5.6 (Debian), pjsua2 workers, SIPp callers with RTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.support import engine
from tests.support.sipp import finish, free_udp_port, run_sipp, start_sipp

pytestmark = pytest.mark.skipif(
    not any(Path(d, "kamailio").exists() for d in ("/usr/sbin", "/usr/local/sbin")),
    reason="kamailio is not installed (scripts/install-system-deps.sh installs it)",
)


def _ports() -> dict[str, int]:
    sip = free_udp_port()
    media = free_udp_port(pair=True, exclude={sip, sip + 1, sip + 2})
    return {"local_port": sip, "media_port": media}


def _status(port: int) -> list[dict[str, Any]]:
    out = subprocess.run(
        engine.cli("frontdoor", "status", "--sip-port", str(port), "--json"),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=engine.REPO,
    )
    assert out.returncode == 0, out.stderr
    rows: list[dict[str, Any]] = json.loads(out.stdout)
    return rows


def _wait_state(eng: engine.EngineProc, worker: int, states: tuple[str, ...]) -> None:
    """Until the supervisor logs that `worker` changed to one of `states`."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        seen = [e["state"] for e in eng.events("worker state changed") if e["worker"] == worker]
        if seen and seen[-1] in states:
            return
        time.sleep(0.1)
    raise AssertionError(
        f"worker {worker} never went {states}: {eng.events('worker state changed')}"
    )


def test_eight_calls_through_one_address_are_spread_over_both_workers_and_bye_reaches_the_owner(
    tmp_path: Path,
) -> None:
    eng = engine.serve_front_door(tmp_path)
    try:
        assert [r["state"] for r in _status(eng.sip_port)] == ["active", "active"]
        res = run_sipp(
            "uac_rtp", f"127.0.0.1:{eng.sip_port}", calls=8, concurrency=8, rate=100,
            duration_ms=3000, workdir=tmp_path, **_ports(),
        )  # fmt: skip
        assert res.successful == 8 and res.failed == 0 and res.busy == 0, res.describe()
        assert res.rtp_received, "the callers never received the workers' RTP"

        incoming = eng.wait_for("incoming call", 8)
        owner = {e["call_id"]: e["worker"] for e in incoming}
        assert Counter(owner.values()) == {0: 4, 1: 4}, owner
        # every INVITE came through the front door, not straight from a caller
        assert {e["source"] for e in incoming} == {f"127.0.0.1:{eng.sip_port}"}

        ended = eng.wait_for("call ended", 8)
        for e in ended:  # the caller's BYE reached the worker that answered the call
            assert e["ended_by"] == "remote", e
            assert e["worker"] == owner[e["call_id"]], e
            # audio flowed both ways all along the 3 s hold: SIPp's pcap sends 30 ms packets
            # (about 100), the worker 20 ms ones (about 150); a lost second would show
            assert e["rtp_rx_packets"] >= 90 and e["rtp_tx_packets"] >= 135, e
        assert not eng.events("call rejected with 486: worker is full")

        # the dispatcher counted each BYE: no call is left on any worker
        assert [r["load"] for r in _status(eng.sip_port)] == [0, 0]
        assert eng.stop() == 0
    finally:
        eng.stop()


def test_a_ninth_call_gets_busy_from_the_front_door_when_every_worker_is_full(
    tmp_path: Path,
) -> None:
    eng = engine.serve_front_door(tmp_path)
    try:
        calls = start_sipp(
            "uac_short", f"127.0.0.1:{eng.sip_port}", calls=8, concurrency=8, rate=100,
            duration_ms=4000, workdir=tmp_path, **_ports(),
        )  # fmt: skip
        eng.wait_for("media ready", 8)
        ninth = engine.dial(tmp_path, eng.sip_port, "--duration", "1", name="ninth")
        assert not ninth["answered"] and ninth["sip_status"] == 486
        res = finish(calls)
        assert res.successful == 8 and res.failed == 0, res.describe()
        # refused by the dispatcher itself: no worker was asked
        assert not eng.events("call rejected with 486: worker is full")
        assert any("every worker is full" in e.get("message", "") for e in eng.events("kamailio"))
    finally:
        eng.stop()


def test_calls_move_to_the_other_worker_while_one_is_frozen_and_its_health_is_visible(
    tmp_path: Path,
) -> None:
    eng = engine.serve_front_door(tmp_path)
    victim = next(e for e in eng.events("worker listening") if e["worker"] == 1)["pid"]
    try:
        os.kill(victim, signal.SIGSTOP)  # alive but silent: no restart, no answers
        res = run_sipp(
            "uac_short", f"127.0.0.1:{eng.sip_port}", calls=3, concurrency=3, rate=100,
            duration_ms=1000, workdir=tmp_path, timeout_s=30, **_ports(),
        )  # fmt: skip
        assert res.successful == 3 and res.failed == 0, res.describe()
        assert {e["worker"] for e in eng.wait_for("incoming call", 3)} == {0}
        # the dispatcher took it out of the pool, and says so
        _wait_state(eng, 1, ("inactive", "trying"))
        states = {r["duid"]: r["state"] for r in _status(eng.sip_port)}
        assert states["w0"] == "active" and states["w1"] in ("inactive", "trying"), states

        os.kill(victim, signal.SIGCONT)  # answers keepalives again: back in the pool
        _wait_state(eng, 1, ("active",))
    finally:
        os.kill(victim, signal.SIGCONT)
        eng.stop()
