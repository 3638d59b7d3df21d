"""Fast bytes <-> `pjsua2.ByteVector` copies for the 20 ms media callbacks.

SWIG's `bytes(frame.buf)` walks the vector element by element (~1 ms per 960-byte frame)
and `pj.ByteVector(data)` costs ~50 µs. A `std::vector<unsigned char>` in libstdc++ keeps
its begin and end pointers at the object's address and +8, so ctypes can copy the storage
in one go (~1 µs read, ~8 µs write). That relies on the C++ ABI of the wheel, so
`select()` checks the trick on a real vector at start-up and falls back to the slow,
always-correct SWIG path when the check fails.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pjsua2 as pj

Reader = Callable[[Any], bytes]
Writer = Callable[[Any, bytes], None]

_PTR = ctypes.c_void_p


def _fast_read(vec: Any) -> bytes:
    addr = int(vec.this)
    begin = _PTR.from_address(addr).value
    end = _PTR.from_address(addr + 8).value
    if not begin or not end or end <= begin:
        return b""
    return ctypes.string_at(begin, end - begin)


def _fast_write(vec: Any, data: bytes) -> None:
    n = len(data)
    vec.resize(n)
    if n:
        begin = _PTR.from_address(int(vec.this)).value
        ctypes.memmove(begin, data, n)


def _slow_read(vec: Any) -> bytes:
    return bytes(vec)


def _slow_write(vec: Any, data: bytes) -> None:
    vec.resize(0)
    vec.extend(data) if hasattr(vec, "extend") else [vec.append(b) for b in data]


@dataclass(frozen=True)
class FrameBuffer:
    """The copy functions in use and whether the fast path passed its self-check."""

    read: Reader
    write: Writer
    fast: bool


def _self_check() -> bool:
    pattern = bytes(range(256)) * 4  # 1024 bytes, every value
    try:
        vec = pj.ByteVector(pattern)
        if _fast_read(vec) != pattern:
            return False
        other = bytes(reversed(pattern[:960]))
        _fast_write(vec, other)
        if vec.size() != 960 or bytes(vec) != other:
            return False
        _fast_write(vec, b"")
        return vec.size() == 0 and _fast_read(vec) == b""
    except Exception:  # noqa: BLE001 - any failure means: use the safe path
        return False


_selected: FrameBuffer | None = None


def select(force_slow: bool = False) -> FrameBuffer:
    """Return the copy functions for this process, checking the fast path once."""
    global _selected
    if force_slow:
        return FrameBuffer(_slow_read, _slow_write, fast=False)
    if _selected is None:
        ok = _self_check()
        _selected = FrameBuffer(
            _fast_read if ok else _slow_read, _fast_write if ok else _slow_write, fast=ok
        )
    return _selected
