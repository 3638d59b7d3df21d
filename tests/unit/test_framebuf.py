"""The ctypes copy path for pjsua2 byte vectors agrees with SWIG's slow path."""

from __future__ import annotations

import os

import pjsua2 as pj

from telephony_bot.sip import framebuf


def test_fast_path_passes_its_self_check_here_and_copies_exactly() -> None:
    fb = framebuf.select()
    assert fb.fast, "ctypes fast path failed its self-check: media would cost ~1 ms a frame"
    data = os.urandom(960)
    vec = pj.ByteVector(data)
    assert fb.read(vec) == data
    other = os.urandom(640)
    fb.write(vec, other)
    assert bytes(vec) == other  # checked through SWIG's own accessor


def test_slow_fallback_is_equivalent() -> None:
    slow = framebuf.select(force_slow=True)
    assert not slow.fast
    vec = pj.ByteVector(b"abc")
    assert slow.read(vec) == b"abc"
    slow.write(vec, b"\x00\x01\x02\x03")
    assert bytes(vec) == b"\x00\x01\x02\x03"
