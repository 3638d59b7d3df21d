"""`serve` with two workers and the admin API: one API over both workers (health, metrics,
calls, a transfer from one worker's call to the other worker's line, originate, hangup), and
a killed worker: unready until restarted, its calls no longer counted."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.integration.test_admin_api_live import NUMBER, admin_env, dial_number, plan_file
from tests.integration.test_realtime_session import _tone, server_factory
from tests.support import engine
from tests.support.admin import TOKEN, http, sample, serve_with_admin, until
from tests.support.realtime_server import ScriptedReply

__all__ = ["server_factory"]


def test_one_api_over_two_workers(
    tmp_path: Path, server_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = server_factory(
        greeting=ScriptedReply(pcm=_tone(600, 1.0), transcript="Hello, this is the front desk."),
    )
    admin_env(monkeypatch, tmp_path)
    # the trunk outbound calls go through: an echo worker of its own
    agent = engine.start(tmp_path, "worker", "--provider", "echo", "--grace", "2", name="agent")
    monkeypatch.setenv("TELEPHONY_BOT_OUTBOUND_TRUNK", f"sip:127.0.0.1:{agent.sip_port}")
    monkeypatch.setenv("TELEPHONY_BOT_OUTBOUND_ALLOW", "+4930*")
    port = engine.free_port()
    base = f"http://127.0.0.1:{port}"
    try:
        eng = serve_with_admin(tmp_path, plan_file(tmp_path, server), port)
    except BaseException:
        agent.kill()
        raise
    try:
        st, health = http("GET", f"{base}/health", None)
        assert st == 200 and health["workers"] == 2 and health["max_calls"] == 8
        assert [c["name"] for c in health["checks"]] == ["worker 0", "worker 1"]
        m = http("GET", f"{base}/metrics")[1]
        assert sample(m, "telephony_bot_worker_capacity", worker="0") == 4
        assert sample(m, "telephony_bot_worker_capacity", worker="1") == 4
        # the route names worker 0's line as a transfer target (the port is known now)
        target = f"sip:{NUMBER}@127.0.0.1:{eng.sip_port}"
        plan_file(tmp_path, server, transfer_targets={"front": target})
        until(lambda: len(eng.events("dialplan reloaded")) == 2, what="both workers reloaded")
        caller = dial_number(tmp_path, eng.sip_port + 1, "--duration", "30")  # on worker 1
        try:
            # answered: with pre-warm the call rings until the greeting is ready
            calls = until(
                lambda: [c for c in http("GET", f"{base}/calls")[1]["calls"]
                         if c["state"] == "answered"],
                what="an answered call",
            )  # fmt: skip
            assert calls[0]["worker"] == 1 and calls[0]["route"] == "front-desk"
            cid = calls[0]["call_id"]
            m = http("GET", f"{base}/metrics")[1]
            assert sample(m, "telephony_bot_calls_active", worker="1") == 1
            assert sample(m, "telephony_bot_calls_active", worker="0") == 0
            # toll fraud: a number on a stranger's server is refused, no REFER is sent
            evil = "sip:+900123@evil.example"
            st, res = http("POST", f"{base}/calls/{cid}/transfer", body={"target": evil})
            assert st == 403 and res["reason"] == (
                f"transfer refused: {evil!r} is not a transfer target of route 'front-desk' "
                "(targets: front), and outbound.allow does not match +900123"
            )
            # transfer the caller to the route's target, worker 0's line: REFER, the caller
            # calls worker 0 (a call that lasts until the caller's first call is released)
            st, res = http("POST", f"{base}/calls/{cid}/transfer", body={"target": "front"})
            assert st == 200 and res["ok"] and res["worker"] == 1, res
            assert res["status"].startswith("200"), res
            caller.wait(15)
        finally:
            if caller.poll() is None:
                caller.kill()
        report = json.loads((tmp_path / "dial.json").read_text())
        assert report["transfer"]["target"] == target and report["transfer"]["answered"]
        assert http("POST", f"{base}/calls/{cid}/hangup")[0] == 404  # gone
        records = until(lambda: len(r := http("GET", f"{base}/records")[1]["records"]) == 2 and r,
                        what="two call records")  # fmt: skip
        by_worker = {r["worker"]: r for r in records}
        assert by_worker[1]["end_reason"] == f"transferred to {target}"
        assert by_worker[0]["called"] == NUMBER  # the caller's second call, on worker 0
        m = until(lambda: (t := http("GET", f"{base}/metrics")[1])
                  and sample(t, "telephony_bot_calls_total", result="completed") == 1 and t,
                  what="the ended calls counted")  # fmt: skip
        assert sample(m, "telephony_bot_calls_total", result="transferred") == 1
        assert sample(m, "telephony_bot_calls_active", worker="0") == 0
        assert sample(m, "telephony_bot_calls_active", worker="1") == 0

        # originate: refused outside the allow list, then a real call out through the trunk
        st, res = http("POST", f"{base}/originate", body={"to": "+1555"})
        assert st == 409 and "allow list" in res["reason"]
        st, res = http("POST", f"{base}/originate", body={"to": "+4930777", "from": "+4930999"})
        assert st == 200 and res["ok"] and res["worker"] == 0, res  # both idle: the first
        out_id = res["call_id"]
        out = until(lambda: [c for c in http("GET", f"{base}/calls")[1]["calls"]
                             if c["call_id"] == out_id], what="the outbound call")  # fmt: skip
        assert out[0]["direction"] == "outbound" and out[0]["called"] == "+4930777"
        incoming = agent.wait_for("incoming call")[0]
        assert incoming["called"] == "+4930777" and incoming["caller"] == "+4930999"
        st, res = http("POST", f"{base}/calls/{out_id}/hangup", body={})
        assert st == 200 and res["ok"]
        until(lambda: http("GET", f"{base}/calls")[1]["calls"] == [], what="no calls left")
    finally:
        eng.stop()
        agent.stop()
    assert TOKEN not in eng.log_path.read_text()


def test_a_crashed_worker_is_unready_until_restarted_and_its_calls_stop_counting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin_env(monkeypatch, tmp_path)
    port = engine.free_port()
    base = f"http://127.0.0.1:{port}"
    eng = serve_with_admin(tmp_path, plan_file(tmp_path, None), port)  # echo
    try:
        caller = dial_number(tmp_path, eng.sip_port + 1, "--duration", "30")  # on worker 1
        try:
            until(lambda: http("GET", f"{base}/calls")[1]["calls"], what="a live call")
            m = http("GET", f"{base}/metrics")[1]
            assert sample(m, "telephony_bot_calls_active", worker="1") == 1
            pid = next(e["pid"] for e in eng.events("worker started") if e["worker"] == 1)
            os.kill(pid, signal.SIGKILL)
            st, body = until(lambda: (r := http("GET", f"{base}/health", None))[0] == 503 and r,
                             what="unready")  # fmt: skip
            assert body["reasons"] == [
                "worker 1: admin API unreachable (starting, restarting or stuck)"
            ]
            m = until(lambda: (t := http("GET", f"{base}/metrics")[1])
                      and sample(t, "telephony_bot_calls_active", worker="1") == 0 and t,
                      what="the dead worker's call no longer counted")  # fmt: skip
            until(lambda: http("GET", f"{base}/health", None)[0] == 200, 30, "ready again")
            assert http("GET", f"{base}/calls")[1]["calls"] == []
        finally:
            caller.kill()
            caller.wait(10)
    finally:
        eng.stop()
    assert len([e for e in eng.events("worker started") if e["worker"] == 1]) == 2
