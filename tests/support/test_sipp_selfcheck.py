"""Self-check of tests/sipp scenarios and tests/support/sipp.py against SIPp's own UAS.

No engine is involved: the peer is ``sipp -sn uas`` (answers 180/200, never sends BYE or RTP),
tests/sipp/uas_sends_bye.xml (hangs up itself and plays RTP) or tests/sipp/uas_busy.xml (486).
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest

from tests.support.sipp import (
    DTMF_PCAP,
    SIPP_DTMF_DIGITS,
    Ports,
    SippResult,
    alaw_pcap_to_ulaw,
    finish,
    prepare_pcaps,
    run_sipp,
    running_uas,
    scenario_path,
    sipp_available,
    start_sipp,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sipp_available(), reason="sipp (Debian package sip-tester) missing"),
]


def _ok(result: SippResult, calls: int) -> None:
    assert result.ok and result.successful == calls and result.failed == 0, result.describe()


def test_uac_short_sequential_calls(tmp_path: Path) -> None:
    ports = Ports()
    with running_uas(["-sn", "uas"], tmp_path, ports) as target:
        t0 = time.monotonic()
        result = run_sipp(
            "uac_short",
            target,
            calls=5,
            concurrency=1,
            rate=50,
            duration_ms=100,
            local_port=ports.sip(),
            media_port=ports.media(),
            timeout_s=30,
        )
    _ok(result, 5)
    assert result.stats["OutgoingCall(C)"] == "5"
    assert result.rtp_received is False  # the built-in uas sends no RTP
    assert time.monotonic() - t0 < 10


def test_uac_rtp_concurrent_while_another_call_runs(tmp_path: Path) -> None:
    ports = Ports()
    with running_uas(["-sn", "uas"], tmp_path, ports) as target:
        running = start_sipp(
            "uac_rtp",
            target,
            calls=4,
            concurrency=4,
            rate=100,
            duration_ms=3000,
            local_port=ports.sip(),
            media_port=ports.media(),
            workdir=tmp_path,
            timeout_s=30,
        )
        other = run_sipp(
            "uac_dtmf",
            target,
            duration_ms=200,
            local_port=ports.sip(),
            media_port=ports.media(),
            workdir=tmp_path,
            timeout_s=30,
        )
        assert running.poll() is None, "4 calls of 3 s should still be up"
        result = finish(running)
    _ok(other, 1)
    _ok(result, 4)
    assert (tmp_path / "pcap" / "g711u.pcap").is_file()


def test_uac_rtp_two_concurrent_calls(tmp_path: Path) -> None:
    ports = Ports()
    with running_uas(["-sn", "uas"], tmp_path, ports) as target:
        result = run_sipp(
            "uac_rtp",
            target,
            calls=2,
            concurrency=2,
            duration_ms=500,
            local_port=ports.sip(),
            media_port=ports.media(),
            timeout_s=30,
        )
    _ok(result, 2)


def test_nobody_listening_fails_without_hanging() -> None:
    ports = Ports()
    dead = f"127.0.0.1:{ports.sip()}"
    t0 = time.monotonic()
    result = run_sipp(
        "uac_short",
        dead,
        local_port=ports.sip(),
        media_port=ports.media(),
        timeout_s=20,
        extra=["-max_invite_retrans", "1"],
    )
    assert result.failed == 1 and result.successful == 0 and not result.ok, result.describe()
    assert result.counter("FailedMaxUDPRetrans") == 1
    assert result.returncode == 1
    assert time.monotonic() - t0 < 10

    # Default retransmissions would take ~31 s; the global timeout stops it first.
    t0 = time.monotonic()
    result = run_sipp(
        "uac_short", dead, local_port=ports.sip(), media_port=ports.media(), timeout_s=1
    )
    assert result.timed_out and result.successful == 0 and not result.ok, result.describe()
    assert time.monotonic() - t0 < 5


def test_busy_486_counts_as_one_failed_call(tmp_path: Path) -> None:
    ports = Ports()
    with running_uas(["-sf", str(scenario_path("uas_busy"))], tmp_path, ports) as target:
        result = run_sipp(
            "uac_short", target, local_port=ports.sip(), media_port=ports.media(), timeout_s=20
        )
    assert (result.successful, result.failed, result.busy) == (0, 1, 1), result.describe()
    assert result.counter("FailedTestDoesntMatch") == 1
    assert result.counter("FailedUnexpectedMessage") == 0
    assert result.returncode == 1


def test_uac_wait_bye_remote_hangup(tmp_path: Path) -> None:
    ports = Ports()
    uas = ["-sf", str(scenario_path("uas_sends_bye")), "-d", "1000"]
    with running_uas(uas, tmp_path, ports) as target:
        t0 = time.monotonic()
        result = run_sipp(
            "uac_wait_bye",
            target,
            local_port=ports.sip(),
            media_port=ports.media(),
            recv_timeout_ms=10_000,
            timeout_s=30,
        )
    _ok(result, 1)
    assert time.monotonic() - t0 < 8
    assert result.rtp_received is True  # uas_sends_bye plays a pcap to our media port


def test_uac_wait_bye_fails_when_nobody_hangs_up(tmp_path: Path) -> None:
    ports = Ports()
    with running_uas(["-sn", "uas"], tmp_path, ports) as target:
        result = run_sipp(
            "uac_wait_bye",
            target,
            local_port=ports.sip(),
            media_port=ports.media(),
            recv_timeout_ms=1000,
            timeout_s=30,
        )
    assert (result.successful, result.failed) == (0, 1), result.describe()
    assert result.counter("FailedTimeoutOnRecv") == 1


def _rtp_packets(pcap: Path) -> list[bytes]:
    """RTP headers+payloads of an Ethernet/IPv4/UDP pcap (little-endian, as shipped)."""
    data, off, out = pcap.read_bytes(), 24, []
    while off + 16 <= len(data):
        incl = struct.unpack("<I", data[off + 8 : off + 12])[0]
        pkt = data[off + 16 : off + 16 + incl]
        off += 16 + incl
        ip = pkt[14:]
        out.append(ip[(ip[0] & 0x0F) * 4 + 8 :])
    return out


def test_dtmf_pcap_digits_and_pcmu_transcode(tmp_path: Path) -> None:
    pcaps = prepare_pcaps(tmp_path)
    events = {p[12] for p in _rtp_packets(pcaps["dtmf_pcap"]) if p[1] & 0x7F == 101}
    assert "".join("0123456789*#"[e] for e in sorted(events)) == SIPP_DTMF_DIGITS
    assert pcaps["dtmf_pcap"].name == DTMF_PCAP

    alaw, ulaw = _rtp_packets(pcaps["pcma_pcap"]), _rtp_packets(pcaps["pcmu_pcap"])
    assert len(alaw) == len(ulaw) == 236
    assert {p[1] & 0x7F for p in alaw} == {8} and {p[1] & 0x7F for p in ulaw} == {0}
    assert all(a[2:12] == u[2:12] for a, u in zip(alaw, ulaw, strict=True))  # seq, ts, ssrc
    # A-law 0xD5/0x55 (+8/-8) -> mu-law 0xFE/0x7E; A-law 0xAA (+32256) -> mu-law 0x80 (max).
    src = tmp_path / "one.pcap"
    head = pcaps["pcma_pcap"].read_bytes()
    first_len = struct.unpack("<I", head[24 + 8 : 24 + 12])[0]
    src.write_bytes(head[: 24 + 16 + first_len - 3] + bytes([0xD5, 0x55, 0xAA]))
    alaw_pcap_to_ulaw(src, tmp_path / "one-u.pcap")
    assert (tmp_path / "one-u.pcap").read_bytes()[-3:] == bytes([0xFE, 0x7E, 0x80])
