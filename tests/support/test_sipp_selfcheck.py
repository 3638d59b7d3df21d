"""Self-check of tests/sipp scenarios and tests/support/sipp.py against SIPp's own UAS.

No engine is involved: the peer is ``sipp -sn uas`` (answers 180/200, never sends BYE or RTP),
tests/sipp/uas_sends_bye.xml (hangs up itself and plays RTP) or an inline 486 UAS.
"""

from __future__ import annotations

import struct
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.sipp import (
    DTMF_PCAP,
    SIPP_BIN,
    SIPP_DTMF_DIGITS,
    SippResult,
    alaw_pcap_to_ulaw,
    finish,
    free_udp_port,
    prepare_pcaps,
    run_sipp,
    scenario_path,
    sipp_available,
    start_sipp,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sipp_available(), reason="sipp (Debian package sip-tester) missing"),
]

UAS_BUSY_XML = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uas_busy">
  <recv request="INVITE"/>
  <send>
    <![CDATA[

      SIP/2.0 486 Busy Here
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK"/>
</scenario>
"""


class Ports:
    """Distinct free UDP ports in 15000-19999 for one test."""

    def __init__(self) -> None:
        self.used: set[int] = set()

    def sip(self) -> int:
        port = free_udp_port(exclude=self.used)
        self.used.add(port)
        return port

    def media(self) -> int:
        port = free_udp_port(pair=True, exclude=self.used)
        self.used.update(range(port - 1, port + 4))
        return port


def _udp_bound(port: int, ip: str = "127.0.0.1") -> bool:
    native = struct.unpack("=I", bytes(int(x) for x in ip.split(".")))[0]
    local = f"{native:08X}:{port:04X}"
    lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    return any(line.split()[1] == local for line in lines)


@contextmanager
def sipp_uas(args: list[str], workdir: Path, ports: Ports) -> Iterator[str]:
    """Run a SIPp UAS (bounded by -timeout, killed at the end); yields "127.0.0.1:port"."""
    port, media = ports.sip(), ports.media()
    fixed = "-i 127.0.0.1 -bind_local -ci 127.0.0.1 -nostdin -timeout 60s".split()
    cmd = [SIPP_BIN, *fixed, "-p", str(port), "-mp", str(media), *args]
    for key, path in prepare_pcaps(workdir).items():
        cmd += ["-key", key, str(path)]
    with open(workdir / f"uas-{port}.out", "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 5
        while not _udp_bound(port) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert proc.poll() is None, (workdir / f"uas-{port}.out").read_text(errors="replace")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ok(result: SippResult, calls: int) -> None:
    assert result.ok and result.successful == calls and result.failed == 0, result.describe()


def test_uac_short_sequential_calls(tmp_path: Path) -> None:
    ports = Ports()
    with sipp_uas(["-sn", "uas"], tmp_path, ports) as target:
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
    with sipp_uas(["-sn", "uas"], tmp_path, ports) as target:
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
    with sipp_uas(["-sn", "uas"], tmp_path, ports) as target:
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
    (tmp_path / "uas_busy.xml").write_text(UAS_BUSY_XML)
    with sipp_uas(["-sf", str(tmp_path / "uas_busy.xml")], tmp_path, ports) as target:
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
    with sipp_uas(uas, tmp_path, ports) as target:
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
    with sipp_uas(["-sn", "uas"], tmp_path, ports) as target:
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
