"""The admin page in headless Chromium (Debian's chromium driven by playwright, nothing
downloaded): a live call with its transcript under `serve`, dropped when the call ends, the
token login, and the banner that says why the engine is not ready. Screenshots go to
artifacts/ (git-ignored).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.integration.test_admin_api_live import NUMBER, admin_env, dial_number, plan_file
from tests.integration.test_realtime_session import RATE, _tone, server_factory
from tests.support import audio, engine
from tests.support.admin import TOKEN, serve_with_admin
from tests.support.realtime_server import ScriptedReply

__all__ = ["server_factory"]

ARTIFACTS = engine.REPO / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


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
    eng = serve_with_admin(tmp_path, plan_file(tmp_path, server), port)
    try:
        # a call that ended before the page opened: it is in "Recent calls"
        first = dial_number(tmp_path, eng.sip_port, "--duration", "2", name="first")
        assert first.wait(30) == 0
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 760})
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.on("console", lambda m: m.type == "error" and errors.append(m.text))
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
                # a Realtime-compatible server is not in the shipped price table
                costs = page.locator("#records tbody td.cost").all_inner_texts()
                assert costs[0] == "unknown", costs  # the newest: the model's call
                # the wrong token's 401s are the only errors the browser saw
                assert all("401" in e for e in errors), errors
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


def test_admin_page_shows_each_trunks_registration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing: run scripts/install-system-deps.sh")
    from tests.support.registrar import kamailio_available, running_registrar

    if not kamailio_available():
        pytest.skip("kamailio missing: run scripts/install-system-deps.sh")
    monkeypatch.setenv("PBX_PASSWORD", "pw-2001")
    port = engine.free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    with running_registrar(tmp_path, {"2001": "pw-2001"}) as reg:
        # pbx registers; "desk" (a user the registrar does not know) is refused with 401
        trunk = {"registrar": reg.uri, "password_env": "PBX_PASSWORD", "expires": 60}
        cfg = tmp_path / "engine.yaml"
        cfg.write_text(json.dumps({"trunks": {
            "pbx": {"register": {**trunk, "user": "2001"}},
            "desk": {"register": {**trunk, "user": "2002"}},
        }}))  # fmt: skip
        with engine.running(
            tmp_path, "worker", "--provider", "echo", "--config", str(cfg),
            "--admin-port", str(port), ready_event="worker admin API listening",
        ):  # fmt: skip
            with sync_api.sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
                try:
                    page = browser.new_page(viewport={"width": 1200, "height": 500})
                    page.goto(f"http://127.0.0.1:{port}/")
                    ok = page.locator('#trunks [data-trunk="pbx"]', has_text="pbx: registered")
                    ok.wait_for(timeout=15000)
                    assert "ok" in (ok.get_attribute("class") or "")
                    assert "registered as 2001 at" in (ok.get_attribute("title") or "")
                    bad = page.locator('#trunks [data-trunk="desk"]')
                    assert bad.inner_text() == "desk: failed 401"
                    assert "bad" in (bad.get_attribute("class") or "")
                    alert = page.locator("#alerts", has_text="trunk desk: registration as 2002")
                    assert "401 Unauthorized" in alert.inner_text()
                    page.screenshot(path=str(ARTIFACTS / "admin-page-trunks.png"))
                finally:
                    browser.close()
