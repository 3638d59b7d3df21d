"""Call control with a real pjsua2 caller: DTMF, hangup from either side, draining."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support import engine


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("control")
    with engine.running(tmp, "worker", "--provider", "echo", name="control") as eng:
        yield eng


def _call_events(eng: engine.EngineProc, event: str, call_id: str) -> list[dict]:
    return [e for e in eng.events(event) if e.get("call_id") == call_id]


def test_dtmf_digits_arrive_as_events_in_order(worker, tmp_path: Path) -> None:
    before = len(worker.events("incoming call"))
    rep = engine.dial(
        tmp_path, worker.sip_port, "--dtmf", "159#*0", "--dtmf-at", "0.3", "--duration", "3"
    )
    assert rep["answered"] and rep["dtmf_sent"] == "159#*0"
    call_id = worker.wait_for("incoming call", before + 1)[-1]["call_id"]
    ended = worker.wait_for("call ended", before + 1)
    digits = [e["digit"] for e in _call_events(worker, "dtmf", call_id)]
    assert "".join(digits) == "159#*0"
    assert all(e["method"] == "rfc2833" for e in _call_events(worker, "dtmf", call_id))
    assert [e for e in ended if e["call_id"] == call_id][0]["dtmf"] == "159#*0"


def test_caller_hangup_ends_the_session(worker, tmp_path: Path) -> None:
    before = len(worker.events("call ended"))
    rep = engine.dial(tmp_path, worker.sip_port, "--duration", "1")
    assert rep["answered"] and rep["ended_by"] == "local"
    end = worker.wait_for("call ended", before + 1)[-1]
    assert end["ended_by"] == "remote"
    assert end["rtp_rx_packets"] > 40 and end["rtp_tx_packets"] > 40  # RTP flowed both ways


def test_engine_hangup_ends_the_call_for_the_caller(tmp_path: Path) -> None:
    with engine.running(tmp_path, "worker", "--provider", "echo", "--max-call-seconds", "1") as eng:
        t0 = time.monotonic()
        rep = engine.dial(tmp_path, eng.sip_port, "--duration", "8")
        assert rep["answered"]
        assert rep["ended_by"] == "remote"  # the engine sent BYE
        # after 1 s the caller hears the engine's goodbye (~1.7 s), then the BYE
        assert 2.5 <= rep["duration_ms"] / 1000 <= 5
        assert rep["heard_ms"] >= 1000
        assert time.monotonic() - t0 < 8
        end = eng.wait_for("call ended")[-1]
        assert end["ended_by"] == "local"
        assert eng.events("maximum call duration reached")


def test_shutdown_refuses_new_calls_with_503_and_lets_the_running_call_finish(
    tmp_path: Path,
) -> None:
    eng = engine.start(tmp_path, "worker", "--provider", "echo", "--grace", "2")
    try:
        first = engine.dial_async(tmp_path, eng.sip_port, "--duration", "10", name="first")
        eng.wait_for("media ready")
        eng.proc.send_signal(15)  # SIGTERM
        eng.wait_for("draining: new calls get 503")
        second = engine.dial(tmp_path, eng.sip_port, "--duration", "1", name="second")
        assert not second["answered"] and second["sip_status"] == 503
        assert second["_exit_code"] == 1
        first.wait(20)
        rep = engine.read_report(tmp_path, "first")
        assert rep["answered"] and rep["ended_by"] == "remote"
        assert 1.5 <= rep["duration_ms"] / 1000 <= 5  # hung up after the 2 s grace period
        assert eng.proc.wait(15) == 0
        assert eng.events("worker stopped")
    finally:
        eng.stop()


def test_call_over_tcp_is_answered_and_carries_audio(worker, tmp_path: Path) -> None:
    rep = engine.dial(
        tmp_path, worker.sip_port, "--duration", "1.5", params=";transport=tcp", name="tcp"
    )
    assert rep["answered"], rep
    assert rep["rtp"]["rx_packets"] > 40


def test_caller_giving_up_while_ringing_cancels_cleanly(tmp_path: Path) -> None:
    with engine.running(tmp_path, "worker", "--provider", "echo", "--ring-ms", "3000") as eng:
        rep = engine.dial(tmp_path, eng.sip_port, "--timeout", "1", name="cancel")
        assert not rep["answered"] and rep["ended_by"] == "timeout"
        assert rep["sip_status"] == 487  # Request Terminated: our CANCEL was honoured
        end = eng.wait_for("call ended")[-1]
        assert end["ended_by"] == "remote"
        # the slot is free again: a normal call goes through
        assert engine.dial(tmp_path, eng.sip_port, "--duration", "0.5", name="next")["answered"]
        assert not eng.events("session failed")
