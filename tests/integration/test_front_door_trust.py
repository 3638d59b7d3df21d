"""The front door stops strangers, floods and malformed requests before any worker sees
them, and says 503 while the workers drain. Real peers only: Kamailio 5.6 (Debian), pjsua2
workers and callers, SIPp flooding from another loopback address, hand-made UDP requests."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support import audio, engine
from tests.support.sipp import finish, free_udp_port, sipp_available, start_sipp
from tests.support.sipraw import RawSip, invite

pytestmark = pytest.mark.skipif(
    not any(Path(d, "kamailio").exists() for d in ("/usr/sbin", "/usr/local/sbin")),
    reason="kamailio is not installed (scripts/install-system-deps.sh installs it)",
)
RATE = 16000


def _status(port: int) -> tuple[list[dict[str, Any]], str]:
    def run(*flags: str) -> str:
        out = subprocess.run(
            engine.cli("frontdoor", "status", "--sip-port", str(port), *flags),
            capture_output=True, text=True, timeout=30, cwd=engine.REPO,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return out.stdout

    return json.loads(run("--json")), run()


def _send(port: int, source: str = "127.0.0.1", **kw: Any) -> tuple[int, str]:
    with RawSip(source) as s:
        msg, cid = invite(s, "127.0.0.1", port, **kw)
        s.send(msg, ("127.0.0.1", port))
        return s.final(call_id=cid)


def _kamailio_says(eng: engine.EngineProc, text: str) -> list[str]:
    return [e["message"] for e in eng.events("kamailio") if text in e.get("message", "")]


def test_strangers_get_403_and_malformed_invites_400_from_the_front_door_itself(
    tmp_path: Path,
) -> None:
    cfg = tmp_path / "engine.yaml"
    cfg.write_text("trunks:\n  pbx:\n    allow: ['127.0.0.1/32']\n")
    admin = engine.free_port()
    eng = engine.serve_front_door(
        tmp_path, "--config", str(cfg), "--admin-port", str(admin), grace=4
    )
    try:
        assert _send(eng.sip_port, "127.0.0.2")[0] == 403
        stranger = engine.dial(
            tmp_path, eng.sip_port, "--duration", "1", "--local-host", "127.0.0.2", name="x"
        )
        assert stranger["sip_status"] == 403
        with RawSip() as s:  # an absurd CSeq: refused here, no worker counts it as a call
            for _ in range(8):
                msg, cid = invite(s, "127.0.0.1", eng.sip_port, extra="X-Api-Key: sk-31337")
                msg = msg.replace(b"CSeq: 1 INVITE", b"CSeq: 99999999999999999999 INVITE")
                s.send(msg, ("127.0.0.1", eng.sip_port))
                status, text = s.final(call_id=cid)
                assert status == 400, text
        friend = engine.dial(tmp_path, eng.sip_port, "--duration", "1", name="friend")
        assert friend["answered"]
        calls = eng.wait_for("incoming call")
        assert [c["trunk"] for c in calls] == ["pbx"]  # named by the front door
        rows, text = _status(eng.sip_port)
        assert [r["load"] for r in rows] == [0, 0], rows
        assert "not_allowed 2" in text and "malformed" in text, text
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10).read()
        assert b'telephony_bot_frontdoor_invites_refused_total{reason="not_allowed"} 2' in metrics
        assert len(_kamailio_says(eng, "refused INVITE from 127.0.0.2")) == 1  # once
        assert not eng.events("INVITE refused")  # no worker had to refuse anything
        assert "sk-31337" not in eng.log_path.read_text()
    finally:
        eng.stop()


def test_digest_auth_at_the_front_door_challenges_with_407(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "trunk.pw"
    secret.write_text("h0rse-battery\n")
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(f"trunks:\n  carrier:\n    auth: {{user: carrier, password_file: {secret}}}\n")
    eng = engine.serve_front_door(tmp_path, "--config", str(cfg), grace=4)
    try:
        status, text = _send(eng.sip_port, "127.0.0.2")
        assert status == 407 and "Proxy-Authenticate: Digest" in text, text
        monkeypatch.setenv("TELEPHONY_BOT_DIAL_PASSWORD", "wrong")
        bad = engine.dial(tmp_path, eng.sip_port, "--duration", "1", "--auth-user", "carrier",
                          name="bad")  # fmt: skip
        assert not bad["answered"] and bad["sip_status"] == 403
        monkeypatch.setenv("TELEPHONY_BOT_DIAL_PASSWORD", "h0rse-battery")
        good = engine.dial(tmp_path, eng.sip_port, "--duration", "1", "--auth-user", "carrier",
                           name="good")  # fmt: skip
        assert good["answered"]
        assert [c["trunk"] for c in eng.wait_for("incoming call")] == ["carrier"]
        run_dir = Path(eng.events("front door ready")[0]["run_dir"])
        assert "h0rse" not in "".join(p.read_text() for p in run_dir.glob("*.list"))
        assert "h0rse" not in (run_dir / "kamailio.cfg").read_text()
    finally:
        eng.stop()


@pytest.mark.skipif(not sipp_available(), reason="SIPp is not installed")
def test_a_200_cps_flood_is_cut_by_the_front_door_while_a_live_call_keeps_its_audio(
    tmp_path: Path,
) -> None:
    wav = audio.write_wav(tmp_path / "speech.wav", audio.speech_like(4.0, RATE), RATE)
    eng = engine.serve_front_door(tmp_path, grace=4)
    try:
        live = engine.dial_async(
            tmp_path, eng.sip_port,
            "--play", str(wav), "--play-at", "1.0", "--duration", "7",
            "--record", str(tmp_path / "rec.wav"), "--rate", str(RATE),
            name="live",
        )  # fmt: skip
        eng.wait_for("media ready")
        sip = free_udp_port(ip="127.0.0.2")
        flood = start_sipp(
            "uac_short", f"127.0.0.1:{eng.sip_port}", calls=600, concurrency=200, rate=200,
            duration_ms=100, local_port=sip, local_ip="127.0.0.2",
            media_port=free_udp_port(pair=True, exclude={sip}, ip="127.0.0.2"),
            workdir=tmp_path, timeout_s=20, extra=["-max_invite_retrans", "1"],
        )  # fmt: skip
        res = finish(flood)
        assert live.wait(30) == 0
        sent, _ = audio.read_wav(wav)
        got, _ = audio.read_wav(tmp_path / "rec.wav")
        echo = audio.echo_pieces(sent, got, RATE)
        assert echo.intact, f"the live call's audio broke: {echo.describe()}"
        assert res.successful <= 40, res.describe()  # cut: the rest never reached a worker
        assert _kamailio_says(eng, "flood from 127.0.0.2")
        after = engine.dial(tmp_path, eng.sip_port, "--duration", "1", name="after")
        assert after["answered"]
        rows, text = _status(eng.sip_port)
        assert "flood" in text and [r["load"] for r in rows] == [0, 0], (rows, text)
        assert not eng.events("worker exited; restarting")  # no worker crashed
    finally:
        eng.stop()


def test_while_the_workers_drain_the_front_door_answers_503_with_retry_after(
    tmp_path: Path,
) -> None:
    eng = engine.serve_front_door(tmp_path, grace=4)
    try:
        call = engine.dial_async(tmp_path, eng.sip_port, "--duration", "4", name="running")
        eng.wait_for("media ready")
        eng.proc.send_signal(signal.SIGTERM)
        eng.wait_for("draining: new calls get 503")
        status, text = _send(eng.sip_port)
        assert status == 503 and "Retry-After: 5" in text, text
        assert call.wait(30) == 0  # the running call finished in its grace period
        assert _kamailio_says(eng, "no worker takes calls now")
    finally:
        eng.stop()
        time.sleep(0.1)
