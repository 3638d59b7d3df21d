"""A lone worker's front door of its own: allow lists, digest auth of INVITEs, malformed and
unACKed INVITEs, and a flood while a call is live. Real peers: pjsua2 workers and callers
(`telephony-bot dial`), SIPp, hand-made UDP requests from other loopback addresses."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support import audio, engine
from tests.support.sipp import finish, free_udp_port, sipp_available, start_sipp
from tests.support.sipraw import RawSip, invite

RATE = 16000


def _config(tmp: Path, text: str) -> str:
    path = tmp / "engine.yaml"
    path.write_text(text)
    return str(path)


def _log_text(eng: engine.EngineProc) -> str:
    return eng.log_path.read_text(errors="replace")


def test_an_invite_from_outside_the_allow_list_gets_403_and_never_reaches_a_session(
    tmp_path: Path,
) -> None:
    cfg = _config(tmp_path, "trunks:\n  pbx:\n    allow: ['127.0.0.1/32']\n")
    with engine.running(tmp_path, "worker", "--provider", "echo", "--config", cfg) as eng:
        with RawSip("127.0.0.2") as s:
            msg, cid = invite(s, "127.0.0.1", eng.sip_port)
            s.send(msg, ("127.0.0.1", eng.sip_port))
            status, text = s.final(call_id=cid)
        assert status == 403, text
        stranger = engine.dial(
            tmp_path, eng.sip_port, "--duration", "1", "--local-host", "127.0.0.2", name="x"
        )
        assert not stranger["answered"] and stranger["sip_status"] == 403
        friend = engine.dial(tmp_path, eng.sip_port, "--duration", "1", name="friend")
        assert friend["answered"]
        calls = eng.wait_for("incoming call")
        assert [(c["trunk"], c["source"].split(":")[0]) for c in calls] == [("pbx", "127.0.0.1")]
        refused = eng.events("INVITE refused")
        assert refused and {e["why"] for e in refused} == {"not_allowed"}
        assert len(refused) == 1  # logged once per source, not per INVITE
        assert len(eng.events("call routed")) == 1  # no session for the strangers


def test_digest_auth_challenges_an_invite_and_takes_only_the_right_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRUNK_PW", "c0rrect-horse")
    cfg = _config(
        tmp_path, "trunks:\n  carrier:\n    auth: {user: carrier, password_env: TRUNK_PW}\n"
    )
    with engine.running(tmp_path, "worker", "--provider", "echo", "--config", cfg) as eng:
        with RawSip() as s:
            msg, cid = invite(s, "127.0.0.1", eng.sip_port)
            s.send(msg, ("127.0.0.1", eng.sip_port))
            status, text = s.final(call_id=cid)
        assert status == 401 and 'WWW-Authenticate: Digest realm="telephony-bot"' in text, text
        monkeypatch.setenv("TELEPHONY_BOT_DIAL_PASSWORD", "wrong")
        bad = engine.dial(tmp_path, eng.sip_port, "--duration", "1", "--auth-user", "carrier",
                          name="bad")  # fmt: skip
        assert not bad["answered"] and bad["sip_status"] == 403
        monkeypatch.setenv("TELEPHONY_BOT_DIAL_PASSWORD", "c0rrect-horse")
        good = engine.dial(tmp_path, eng.sip_port, "--duration", "1", "--auth-user", "carrier",
                           name="good")  # fmt: skip
        assert good["answered"]
        assert [c["trunk"] for c in eng.wait_for("incoming call")] == ["carrier"]
        assert {e["why"] for e in eng.events("INVITE refused")} == {"auth_required", "auth_failed"}
        assert "c0rrect-horse" not in _log_text(eng)


def test_a_malformed_invite_gets_400_and_is_logged_once_without_its_secrets(
    tmp_path: Path,
) -> None:
    secrets = 'Authorization: Digest username="a", response="d3adb33f"\r\nX-Api-Key: sk-777'
    with engine.running(tmp_path, "worker", "--provider", "echo") as eng:
        with RawSip() as s:
            for i in range(3):  # no To header: PJSIP's transport layer drops it
                msg, cid = invite(s, "127.0.0.1", eng.sip_port, extra=secrets, drop=("To",))
                s.send(msg, ("127.0.0.1", eng.sip_port))
                status, text = s.final(call_id=cid)
                assert status == 400, (i, text)
            # a CSeq PJSIP cannot parse
            msg, cid = invite(s, "127.0.0.1", eng.sip_port, extra=secrets)
            s.send(msg.replace(b"CSeq: 1 INVITE", b"CSeq: 99999999999999999999 INVITE"),
                   ("127.0.0.1", eng.sip_port))  # fmt: skip
            status, _ = s.final(call_id=cid)
            assert status == 400
        time.sleep(0.3)
        dropped = eng.events("malformed SIP message dropped")
        assert len(dropped) == 1 and "To" in dropped[0]["error"], dropped
        text = _log_text(eng)
        assert "d3adb33f" not in text and "sk-777" not in text and "end of packet" not in text
        assert engine.dial(tmp_path, eng.sip_port, "--duration", "1")["answered"]


def test_invites_never_acked_hold_no_line_for_long_and_cannot_fill_the_worker(
    tmp_path: Path,
) -> None:
    cfg = _config(tmp_path, "sip:\n  admission: {ack_timeout_s: 1.5}\n")
    with engine.running(tmp_path, "worker", "--provider", "echo", "--config", cfg) as eng:
        with RawSip("127.0.0.3") as s:
            answered = []
            for _ in range(2):
                msg, cid = invite(s, "127.0.0.1", eng.sip_port)
                s.send(msg, ("127.0.0.1", eng.sip_port))
                answered.append(s.final(call_id=cid)[0])
            assert answered == [200, 200]  # and never ACKed
            msg, cid = invite(s, "127.0.0.1", eng.sip_port)
            s.send(msg, ("127.0.0.1", eng.sip_port))
            status, text = s.final(call_id=cid)
            assert status == 503 and "Retry-After: 5" in text, text
            # meanwhile another caller gets a line
            assert engine.dial(tmp_path, eng.sip_port, "--duration", "1")["answered"]
            ended = eng.wait_for("call ended: no ACK for the 200 OK", 2, timeout=5)
            assert all(e["source"] == "127.0.0.3" for e in ended)
        assert [e["why"] for e in eng.events("INVITE refused")] == ["unacked_source"]


@pytest.mark.skipif(not sipp_available(), reason="SIPp is not installed")
def test_a_200_cps_flood_neither_crashes_the_worker_nor_breaks_the_live_call(
    tmp_path: Path,
) -> None:
    wav = audio.write_wav(tmp_path / "speech.wav", audio.speech_like(4.0, RATE), RATE)
    with engine.running(
        tmp_path, "worker", "--provider", "echo", "--grace", "3", name="flooded"
    ) as eng:
        live = engine.dial_async(
            tmp_path, eng.sip_port,
            "--play", str(wav), "--play-at", "1.0", "--duration", "7",
            "--record", str(tmp_path / "rec.wav"), "--rate", str(RATE),
            name="live",
        )  # fmt: skip
        eng.wait_for("media ready")
        sip = free_udp_port()
        flood = start_sipp(
            "uac_short", f"127.0.0.1:{eng.sip_port}", calls=600, concurrency=200, rate=200,
            duration_ms=100, local_port=sip, media_port=free_udp_port(pair=True, exclude={sip}),
            workdir=tmp_path, timeout_s=20, extra=["-max_invite_retrans", "1"],
        )  # fmt: skip
        res = finish(flood)
        assert live.wait(30) == 0
        assert eng.proc.poll() is None, "the worker died"
        sent, _ = audio.read_wav(wav)
        got, _ = audio.read_wav(tmp_path / "rec.wav")
        echo = audio.echo_pieces(sent, got, RATE)
        assert echo.intact, f"the live call's audio broke: {echo.describe()}"
        assert res.successful >= 10, res.describe()  # some of the flood got through
        refused = {e["why"] for e in eng.events("INVITE refused")}
        assert refused & {"rate_source", "setup_budget", "busy"}, refused
        t0 = time.monotonic()
        after = engine.dial(tmp_path, eng.sip_port, "--duration", "1", name="after")
        assert after["answered"] and time.monotonic() - t0 < 5
