"""SIPp, a real SIP peer, against the engine: capacity, several workers, many calls, DTMF."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.support import engine
from tests.support.sipp import SIPP_DTMF_DIGITS, finish, free_udp_port, run_sipp, start_sipp


def _ports() -> dict[str, int]:
    sip = free_udp_port()
    media = free_udp_port(pair=True, exclude={sip, sip + 1, sip + 2})
    return {"local_port": sip, "media_port": media}


def _target(port: int) -> str:
    return f"127.0.0.1:{port}"


def test_four_concurrent_calls_are_answered_and_a_fifth_gets_486(tmp_path: Path) -> None:
    with engine.running(tmp_path, "worker", "--provider", "echo") as eng:
        calls = start_sipp(
            "uac_rtp", _target(eng.sip_port), calls=4, concurrency=4, rate=100,
            duration_ms=4000, workdir=tmp_path, **_ports(),
        )  # fmt: skip
        eng.wait_for("media ready", 4)
        fifth = engine.dial(tmp_path, eng.sip_port, "--duration", "1", name="fifth")
        assert not fifth["answered"] and fifth["sip_status"] == 486
        res = finish(calls)
        assert res.successful == 4 and res.failed == 0, res.describe()
        assert res.rtp_received, "SIPp's media socket never received the engine's RTP"
        assert eng.events("call rejected with 486: worker is full")
        ended = eng.wait_for("call ended", 4)
        for e in ended:  # RTP both ways on every call, and clean media on the Python side
            assert e["rtp_rx_packets"] > 100 and e["rtp_tx_packets"] > 100, e
            assert e["frames_dropped"] == 0 and e["bridge_callback_errors"] == 0, e


def test_two_workers_under_serve_take_calls_and_a_crashed_worker_comes_back(
    tmp_path: Path,
) -> None:
    eng = engine.start(
        tmp_path, "serve", "--workers", "2", "--provider", "echo", "--grace", "2",
        "--front-door", "none", ready_count=2,  # each worker on its own port, dialed directly
    )  # fmt: skip
    try:
        for port in (eng.sip_port, eng.sip_port + 1):
            res = run_sipp(
                "uac_short", _target(port), calls=2, concurrency=2, rate=50,
                duration_ms=500, workdir=tmp_path, **_ports(),
            )  # fmt: skip
            assert res.ok and res.successful == 2, res.describe()
        workers = {e["worker"] for e in eng.wait_for("incoming call", 4)}
        assert workers == {0, 1}

        listening = eng.events("worker listening")
        victim = next(e for e in listening if e["worker"] == 1)["pid"]
        os.kill(victim, signal.SIGKILL)
        eng.wait_for("worker exited; restarting")
        eng.wait_for("worker listening", 3)
        res = run_sipp(
            "uac_short", _target(eng.sip_port + 1), calls=1, duration_ms=300,
            workdir=tmp_path, **_ports(),
        )  # fmt: skip
        assert res.ok, res.describe()

        pids = [e["pid"] for e in eng.events("worker listening")]
        assert eng.stop() == 0
        time.sleep(0.2)
        assert not [p for p in pids if Path(f"/proc/{p}").exists()], "worker left running"
    finally:
        eng.stop()


def test_fifty_sequential_calls_leave_no_threads_sockets_or_calls_behind(tmp_path: Path) -> None:
    with engine.running(tmp_path, "worker", "--provider", "echo") as eng:
        first = run_sipp(
            "uac_short", _target(eng.sip_port), calls=1, duration_ms=200, workdir=tmp_path,
            **_ports(),
        )  # fmt: skip
        assert first.ok, first.describe()
        eng.wait_for("call ended", 1)
        time.sleep(0.5)
        before = engine.proc_resources(eng.proc.pid)
        res = run_sipp(
            "uac_short", _target(eng.sip_port), calls=50, concurrency=1, rate=20,
            duration_ms=100, workdir=tmp_path, timeout_s=120, **_ports(),
        )  # fmt: skip
        assert res.successful == 50 and res.failed == 0, res.describe()
        ended = eng.wait_for("call ended", 51)
        assert all(e["ended_by"] == "remote" for e in ended)
        time.sleep(0.5)
        after = engine.proc_resources(eng.proc.pid)
        assert after["threads"] <= before["threads"], (before, after)
        assert after["sockets"] <= before["sockets"], (before, after)
        assert after["fds"] <= before["fds"], (before, after)
        # and the worker still has all 4 call slots: 4 concurrent calls go through
        again = run_sipp(
            "uac_short", _target(eng.sip_port), calls=4, concurrency=4, rate=100,
            duration_ms=1000, workdir=tmp_path, **_ports(),
        )  # fmt: skip
        assert again.successful == 4, again.describe()


def test_dtmf_from_a_sipp_caller_arrives_as_an_event(tmp_path: Path) -> None:
    with engine.running(tmp_path, "worker", "--provider", "echo") as eng:
        res = run_sipp(
            "uac_dtmf", _target(eng.sip_port), duration_ms=300, workdir=tmp_path, **_ports()
        )
        assert res.ok, res.describe()
        digits = [e["digit"] for e in eng.wait_for("dtmf")]
        assert "".join(digits) == SIPP_DTMF_DIGITS


def test_engine_side_hangup_sends_bye_to_the_caller(tmp_path: Path) -> None:
    with engine.running(tmp_path, "worker", "--provider", "echo", "--max-call-seconds", "1") as eng:
        res = run_sipp(
            "uac_wait_bye", _target(eng.sip_port), workdir=tmp_path, recv_timeout_ms=6000,
            **_ports(),
        )  # fmt: skip
        assert res.ok and res.successful == 1, res.describe()
        assert eng.wait_for("call ended")[-1]["ended_by"] == "local"
