"""Garbage on the SIP port and on a call's RTP port neither crashes the worker nor
disturbs the call in progress."""

from __future__ import annotations

import os
import random
import socket
import time
from pathlib import Path

from tests.support import audio, engine

RATE = 16000

BAD_SIP = [
    b"INVITE sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;bran",  # truncated
    b"INVITE sip:100@127.0.0.1 SIP/2.0\r\n\r\n",  # no headers at all
    b"INVITE sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\n"
    b"From: <sip:a@b>;tag=1\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: x\r\nCSeq: notanumber\r\n"
    b"Content-Length: 99999\r\n\r\nv=0",  # bad CSeq, lying Content-Length
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKnomatch\r\n\r\n",  # stray reply
    b"\x00" * 1400,
    b"BYE sip:nobody SIP/2.0\r\nCall-ID: no-such-call\r\n\r\n",
    b"INVITE sip:100@127.0.0.1 SIP/2.0\r\n" + b"X-Long: " + b"a" * 60000 + b"\r\n\r\n",
]


def _not_rtp(data: bytes) -> bytes:
    if len(data) >= 12 and data[0] >> 6 == 2:
        return bytes([data[0] & 0x3F]) + data[1:]
    return data


def _flood(port: int, payloads: list[bytes], rounds: int = 3) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(rounds):
            for p in payloads:
                try:
                    s.sendto(p, ("127.0.0.1", port))
                except OSError:  # e.g. a datagram too large for loopback
                    pass
                time.sleep(0.002)


def test_garbage_on_sip_and_rtp_ports_does_not_disturb_a_call(tmp_path: Path) -> None:
    rng = random.Random(1234)
    wav = audio.write_wav(tmp_path / "speech.wav", audio.speech_like(2.0, RATE), RATE)
    rtp_base = engine.next_rtp_base()
    with engine.running(
        tmp_path, "worker", "--provider", "echo", "--rtp-port", str(rtp_base), name="garbage"
    ) as eng:
        call = engine.dial_async(
            tmp_path, eng.sip_port,
            "--play", str(wav), "--play-at", "1.5", "--duration", "5",
            "--record", str(tmp_path / "rec.wav"), "--rate", str(RATE),
            name="victim",
        )  # fmt: skip
        eng.wait_for("media ready")
        random_dgrams = [os.urandom(rng.randint(1, 1500)) for _ in range(200)]
        _flood(eng.sip_port, BAD_SIP + random_dgrams)
        # TCP: a connection that sends garbage and one that stops mid-request
        for junk in (os.urandom(3000), BAD_SIP[0]):
            with socket.create_connection(("127.0.0.1", eng.sip_port), timeout=2) as t:
                t.sendall(junk)
        # RTP and RTCP ports of the worker's range (the live call uses the first pair).
        # Garbage, not forged RTP: a datagram that happens to carry a valid RTP v2 header
        # with the call's payload type is an injection from a third party (pjmedia accepts
        # RTP from any source address; SRTP or source latching is the defence) and is
        # turned into garbage here by clearing its version bits.
        for port in range(rtp_base, rtp_base + 8):
            _flood(port, [_not_rtp(os.urandom(rng.randint(1, 400))) for _ in range(50)], 1)
        assert call.wait(30) == 0
        rep = engine.read_report(tmp_path, "victim")
        sent, _ = audio.read_wav(wav)
        got, _ = audio.read_wav(tmp_path / "rec.wav")
        echo = audio.echo_pieces(sent, got, RATE)
        assert echo.intact, f"the call was disturbed: {echo.describe()}"
        assert all(0 < d - rep["play_start_ms"] < 120 for d in echo.delays_ms), echo.describe()
        assert eng.proc.poll() is None, "worker died"
        # and the worker still takes new calls
        again = engine.dial(tmp_path, eng.sip_port, "--duration", "1", name="after")
        assert again["answered"]
        ended = eng.wait_for("call ended", 2)
        assert ended[0]["ended_by"] == "remote"
