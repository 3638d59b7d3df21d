"""`serve` with two workers and the admin API: one API over both workers (health, metrics,
calls, a transfer from one worker's call to the other worker's line, originate, hangup),
and the admin page in headless Chromium showing a live call with its transcript, then
dropping it when the call ends. Screenshots go to artifacts/ (git-ignored).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from tests.integration.test_admin_api_live import NUMBER, admin_env, dial_number, plan_file
from tests.integration.test_realtime_session import RATE, _tone, server_factory
from tests.support import audio, engine
from tests.support.admin import TOKEN, http, sample, until
from tests.support.realtime_server import ScriptedReply

__all__ = ["server_factory"]

ARTIFACTS = engine.REPO / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def _serve(tmp: Path, plan: Path, admin_port: int) -> engine.EngineProc:
    eng = engine.start(
        tmp, "serve", "--workers", "2", "--dialplan", str(plan), "--admin-port", str(admin_port),
        "--grace", "3",
        ready_event="worker admin API listening", ready_count=2, name="serve",
    )  # fmt: skip
    until(lambda: http("GET", f"http://127.0.0.1:{admin_port}/health", None)[0] == 200,
          20, "every worker ready")  # fmt: skip
    return eng


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
        eng = _serve(tmp_path, plan_file(tmp_path, server), port)
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
        caller = dial_number(tmp_path, eng.sip_port + 1, "--duration", "30")  # on worker 1
        try:
            calls = until(lambda: http("GET", f"{base}/calls")[1]["calls"], what="a live call")
            assert calls[0]["worker"] == 1 and calls[0]["route"] == "front-desk"
            cid = calls[0]["call_id"]
            m = http("GET", f"{base}/metrics")[1]
            assert sample(m, "telephony_bot_calls_active", worker="1") == 1
            assert sample(m, "telephony_bot_calls_active", worker="0") == 0
            # transfer the caller to the number again, on worker 0's port: REFER, the caller
            # calls worker 0 (a call that lasts until the caller's first call is released)
            target = f"sip:{NUMBER}@127.0.0.1:{eng.sip_port}"
            st, res = http("POST", f"{base}/calls/{cid}/transfer", body={"target": target})
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


def test_admin_page_shows_a_live_call_with_its_transcript_until_it_ends(
    tmp_path: Path, server_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing: run scripts/install-system-deps.sh")
    hello = ScriptedReply(pcm=_tone(600, 1.2), transcript="Hello, this is the front desk.")
    server = server_factory(
        greeting=hello,  # the first call's; the second call greets with the next reply
        replies=[
            hello,
            ScriptedReply(pcm=_tone(900, 1.5), transcript="Your appointment is at nine."),
        ],
    )
    admin_env(monkeypatch, tmp_path)
    talk = audio.write_wav(tmp_path / "talk.wav", audio.speech_like(1.0, RATE), RATE)
    port = engine.free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    eng = _serve(tmp_path, plan_file(tmp_path, server), port)
    try:
        # a call that ended before the page opened: it is in "Recent calls"
        first = dial_number(tmp_path, eng.sip_port, "--duration", "2", name="first")
        assert first.wait(30) == 0
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 760})
                page.goto(f"http://127.0.0.1:{port}/")  # no token: the page asks for one
                page.locator("#login").wait_for()
                page.fill("#token", "not-the-token")
                page.click("#login button")
                page.get_by_text("That token was refused.").wait_for()
                assert page.locator("#board").is_hidden()
                page.goto(f"http://127.0.0.1:{port}/?token={TOKEN}")  # a link with the token
                assert "token=" not in page.url  # taken out of the address bar
                page.locator("#board").wait_for()
                assert page.locator("#login").is_hidden()
                page.wait_for_selector("#records tbody tr", timeout=15000)
                caller = dial_number(tmp_path, eng.sip_port + 1, "--play", str(talk),
                                     "--play-at", "2", "--duration", "8")  # fmt: skip
                try:
                    card = page.locator("article.call").first
                    card.wait_for(timeout=15000)
                    card.locator("li.agent", has_text="Your appointment is at nine.").wait_for(
                        timeout=20000
                    )
                    assert card.locator(".route").inner_text() == "front-desk"
                    assert card.locator(".caller").inner_text() == "+4917012345"
                    assert card.locator(".called").inner_text() == NUMBER
                    assert card.locator(".worker").inner_text() == "worker 1"
                    lines = card.locator(".transcript li").all_inner_texts()
                    assert "Hello, this is the front desk." in lines[0]
                    assert lines[1].startswith("CALLER") or lines[1].startswith("Caller")
                    assert page.locator("#count").inner_text() == "1"
                    assert page.locator("#stream").inner_text() == "live"
                    assert page.locator("#health").inner_text() == "ready"
                    page.screenshot(path=str(ARTIFACTS / "admin-page-live.png"))
                    assert caller.wait(30) == 0
                finally:
                    if caller.poll() is None:
                        caller.kill()
                page.locator("article.call").wait_for(state="detached", timeout=20000)
                assert page.locator("#count").inner_text() == "0"
                page.wait_for_function(
                    "document.querySelectorAll('#records tbody tr').length >= 2", timeout=15000
                )
                page.screenshot(path=str(ARTIFACTS / "admin-page-after.png"))
            finally:
                browser.close()
    finally:
        eng.stop()
    shutil.copy(eng.log_path, ARTIFACTS / "admin-page-serve.log")
    assert TOKEN not in eng.log_path.read_text()
    cdr = [json.loads(x) for x in (tmp_path / "cdr.jsonl").read_text().splitlines()]
    assert [r["worker"] for r in cdr] == [0, 1]


def test_admin_page_says_why_the_engine_is_not_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing: run scripts/install-system-deps.sh")
    admin_env(monkeypatch, tmp_path)
    plan = plan_file(tmp_path, None)
    good = plan.read_text()
    port = engine.free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    with engine.running(
        tmp_path, "worker", "--dialplan", str(plan), "--admin-port", str(port),
        ready_event="worker admin API listening",
    ):  # fmt: skip
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 500})
                page.goto(f"http://127.0.0.1:{port}/?token={TOKEN}")
                page.locator("#health", has_text="ready").wait_for(timeout=15000)
                assert page.locator("#alerts").is_hidden()
                plan.write_text(good.replace('"routes"', '"routez"'))
                alert = page.locator("#alerts", has_text="dialplan: the file on disk does not load")
                alert.wait_for(timeout=20000)
                assert "routez" in alert.inner_text()
                assert page.locator("#health").inner_text() == "not ready"
                page.screenshot(path=str(ARTIFACTS / "admin-page-unready.png"))
                plan.write_text(good)
                page.locator("#alerts").wait_for(state="hidden", timeout=20000)
            finally:
                browser.close()


def test_a_crashed_worker_is_unready_until_restarted_and_its_calls_stop_counting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin_env(monkeypatch, tmp_path)
    port = engine.free_port()
    base = f"http://127.0.0.1:{port}"
    eng = _serve(tmp_path, plan_file(tmp_path, None), port)  # echo
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
