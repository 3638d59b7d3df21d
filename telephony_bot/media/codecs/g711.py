"""G.711 mu-law and A-law for int16 little-endian PCM, via lookup tables built once at import.

Bit-exact with CPython's `audioop.lin2ulaw/ulaw2lin/lin2alaw/alaw2lin` (width 2).
"""

from __future__ import annotations

import numpy as np

_SEG_ULAW_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_SEG_ALAW_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _all_samples() -> np.ndarray:
    """Every int16 value, ordered by its uint16 bit pattern (the encode-table index)."""
    return np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)


def _build_ulaw_encode() -> np.ndarray:
    pcm = _all_samples() >> 2  # 14-bit
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), 8159) + (0x84 >> 2)
    seg = np.searchsorted(_SEG_ULAW_END, mag, side="left")
    uval = (seg << 4) | ((mag >> (seg + 1)) & 0xF)
    uval = np.where(seg >= 8, 0x7F, uval)
    return ((uval ^ mask) & 0xFF).astype(np.uint8)


def _build_ulaw_decode() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0xF) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


def _build_alaw_encode() -> np.ndarray:
    pcm = _all_samples() >> 3  # 13-bit
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    mag = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = np.searchsorted(_SEG_ALAW_END, mag, side="left")
    quant = (mag >> np.maximum(seg, 1)) & 0xF  # segments 0 and 1 share step 2
    aval = (seg << 4) | quant
    aval = np.where(seg >= 8, 0x7F, aval)
    return ((aval ^ mask) & 0xFF).astype(np.uint8)


def _build_alaw_decode() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0xF) << 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, t, -t).astype(np.int16)


ULAW_ENCODE = _build_ulaw_encode()
ULAW_DECODE = _build_ulaw_decode()
ALAW_ENCODE = _build_alaw_encode()
ALAW_DECODE = _build_alaw_decode()


def _pcm_index(pcm: bytes) -> np.ndarray:
    if len(pcm) % 2:
        raise ValueError(f"int16 PCM must have an even byte length, got {len(pcm)}")
    return np.frombuffer(pcm, dtype="<u2")


def ulaw_encode(pcm: bytes) -> bytes:
    """int16 LE PCM -> mu-law bytes (one byte per sample)."""
    return ULAW_ENCODE[_pcm_index(pcm)].tobytes()


def ulaw_decode(data: bytes) -> bytes:
    """mu-law bytes -> int16 LE PCM."""
    return ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)].astype("<i2", copy=False).tobytes()


def alaw_encode(pcm: bytes) -> bytes:
    """int16 LE PCM -> A-law bytes (one byte per sample)."""
    return ALAW_ENCODE[_pcm_index(pcm)].tobytes()


def alaw_decode(data: bytes) -> bytes:
    """A-law bytes -> int16 LE PCM."""
    return ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)].astype("<i2", copy=False).tobytes()
