"""The load bench's long RTP pcap: continuous G.711 RTP that SIPp can play."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from bench.rtp_pcap import write_g711_pcap


def _packets(data: bytes) -> list[bytes]:
    assert struct.unpack("<I", data[:4])[0] == 0xA1B2C3D4
    assert struct.unpack("<I", data[20:24])[0] == 1  # Ethernet, as SIPp's own pcaps
    out, off = [], 24
    while off < len(data):
        incl = struct.unpack("<I", data[off + 8 : off + 12])[0]
        out.append(data[off + 16 : off + 16 + incl])
        off += 16 + incl
    return out


def test_rtp_is_continuous_20ms_g711_with_one_ssrc(tmp_path: Path) -> None:
    pcm = (np.sin(np.arange(8000 * 3) / 8000 * 2 * np.pi * 440) * 8000).astype(np.int16)
    n = write_g711_pcap(tmp_path / "u.pcap", pcm, "ulaw")
    pkts = _packets((tmp_path / "u.pcap").read_bytes())
    assert n == len(pkts) == 150
    rtp = [p[14 + 20 + 8 :] for p in pkts]
    heads = [struct.unpack("!BBHII", r[:12]) for r in rtp]
    assert all(len(r) == 12 + 160 for r in rtp)
    assert [h[2] for h in heads] == list(range(1, 151))  # sequence numbers, no gap
    assert [h[3] for h in heads] == [160 * i for i in range(150)]  # timestamps
    assert {h[4] for h in heads} == {0x5EED} and {h[1] & 0x7F for h in heads} == {0}
    assert write_g711_pcap(tmp_path / "a.pcap", pcm, "alaw") == 150
    alaw = _packets((tmp_path / "a.pcap").read_bytes())
    assert {p[14 + 20 + 8 + 1] & 0x7F for p in alaw} == {8}
