"""Keep one Python thread state per PJSIP thread for the life of that thread.

PJSIP's own threads (its SIP worker, pjmedia's clock) enter Python through SWIG directors,
which wrap every callback in `PyGILState_Ensure()` / `PyGILState_Release()`. On a thread
Python did not create, the release at the end of each callback destroys the thread state
it had just created, so every callback (100 a second per call on the media clock) builds
and frees a thread state and its frame stack. Under load that churn was seen here to
corrupt memory: a segfault in plain Python code inside `onIncomingCall` after ~25 calls,
and another in the garbage collector at interpreter exit. Taking one extra, never released
`PyGILState_Ensure()` the first time a thread calls in pins its state: later callbacks
reuse it. Every pjsua2 callback in the engine calls `pin()` first.
"""

from __future__ import annotations

import ctypes
import threading

_pinned: set[int] = set()
_ensure = ctypes.pythonapi.PyGILState_Ensure
_ensure.restype = ctypes.c_int
_ensure.argtypes = []


def pin() -> None:
    """Pin the calling thread's Python thread state (cheap after the first call)."""
    ident = threading.get_ident()
    if ident not in _pinned:
        _ensure()  # we hold the GIL already: this only raises the thread's gilstate count
        _pinned.add(ident)


def pinned_threads() -> int:
    return len(_pinned)
