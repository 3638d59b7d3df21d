"""Blind transfer (REFER): the caller is sent to another number, and the engine learns
the outcome from the NOTIFY sipfrag."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.support import engine


def test_engine_sends_dtmf_then_refer_moves_the_caller_and_reports_the_outcome(
    tmp_path: Path,
) -> None:
    with engine.running(tmp_path, "worker", "--provider", "echo", name="agent") as agent:
        target = f"sip:nurse@127.0.0.1:{agent.sip_port}"
        prefix = [sys.executable, "-m", "tests.support.transfer_worker", target, "42#"]
        with engine.running(tmp_path, "worker", prefix=prefix, name="bot") as bot:
            rep = engine.dial(tmp_path, bot.sip_port, "--duration", "4")
            assert rep["answered"]
            assert rep["dtmf_received"] == "42#"  # DTMF the engine sent (RFC 4733)
            assert rep["transfer"]["target"] == target
            assert rep["transfer"]["answered"], rep["transfer"]  # the caller reached the agent
            outcomes = bot.wait_for("transfer status")
            final = [o for o in outcomes if o["final"]]
            assert final and final[-1]["status"] == 200, outcomes
            assert [e["called"] for e in agent.wait_for("incoming call")] == ["nurse"]
