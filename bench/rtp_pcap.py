"""Write a G.711 RTP stream as a pcap that SIPp's `play_pcap_audio` can play.

The pcaps shipped with SIPp last about 7 s; a load test holds calls for a minute, with the
caller talking all the time. This writes any length of continuous RTP (20 ms packets, one
SSRC, sequence numbers and timestamps without a gap) from 8 kHz PCM16, as Ethernet + IPv4 +
UDP frames (SIPp rewrites the addresses and ports and sends the UDP payload).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from telephony_bot.media.codecs import g711

FRAME = 160  # samples per 20 ms at 8 kHz
_PT = {"ulaw": 0, "alaw": 8}


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack("!10H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def write_g711_pcap(path: Path, pcm8k: np.ndarray, law: str = "ulaw", ssrc: int = 0x5EED) -> int:
    """Encode `pcm8k` (int16, 8 kHz) as RTP in `path`; returns the number of packets."""
    encode = g711.ulaw_encode if law == "ulaw" else g711.alaw_encode
    payload = encode(np.asarray(pcm8k, dtype="<i2").tobytes())
    n = len(payload) // FRAME
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    eth = b"\x00\x00\x00\x00\x00\x02" + b"\x00\x00\x00\x00\x00\x01" + b"\x08\x00"
    src, dst = bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])
    for i in range(n):
        rtp = struct.pack(
            "!BBHII", 0x80, _PT[law] | (0x80 if i == 0 else 0), (i + 1) & 0xFFFF, i * FRAME, ssrc
        )
        udp_len = 8 + len(rtp) + FRAME
        udp = struct.pack("!HHHH", 6000, 6000, udp_len, 0)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, i & 0xFFFF, 0, 64, 17, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", _ip_checksum(ip)) + ip[12:]
        frame = eth + ip + udp + rtp + payload[i * FRAME : (i + 1) * FRAME]
        usec = i * 20_000
        out += struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(frame), len(frame))
        out += frame
    path.write_bytes(bytes(out))
    return n
