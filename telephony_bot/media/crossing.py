"""One call's frame buffers between the media clock thread and asyncio.

The clock thread `push()`es caller frames and `pull()`s bot frames; asyncio `pop()`s caller
frames and `write()`s bot audio. Both sides only copy bytes and never block for long.
`PyCrossing` is the pure-Python one; `telephony_bot.native._mediaport.Crossing` is its C
twin with the same methods and semantics, which lets a pjmedia port in C feed it without
taking the GIL (`sip/native_port.py`). `tests/unit/test_bridge.py` runs the bridge over both
through the same cases.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Protocol


class Crossing(Protocol):
    frame_bytes: int

    # clock thread
    def push(self, pcm: bytes) -> None: ...
    def pull(self) -> bytes | None: ...
    # asyncio
    def pop(self) -> bytes | None: ...
    def write(self, pcm: bytes) -> int: ...
    def clear(self) -> int: ...
    def end_of_stream(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def close(self) -> None: ...

    @property
    def frames_in(self) -> int: ...
    @property
    def frames_dropped(self) -> int: ...
    @property
    def frames_out(self) -> int: ...
    @property
    def underruns(self) -> int: ...
    @property
    def played_bytes(self) -> int: ...
    @property
    def queued_bytes(self) -> int: ...
    @property
    def pending_frames(self) -> int: ...


class PyCrossing:
    """Caller frames (a ring of whole frames, the oldest dropped when full) and queued bot
    audio (up to `playout_max_bytes`), with the counters of `media.bridge.BridgeStats`."""

    def __init__(self, frame_bytes: int, inbound_frames: int, playout_max_bytes: int) -> None:
        if frame_bytes <= 0 or frame_bytes % 2 or inbound_frames <= 0:
            raise ValueError("frame_bytes must be even and > 0, inbound_frames > 0")
        self.frame_bytes = frame_bytes
        self._silence = b"\x00" * frame_bytes
        self._inbound: deque[bytes] = deque(maxlen=inbound_frames)
        self._lock = threading.Lock()
        self._playout = bytearray()
        self._max = playout_max_bytes
        self._streaming = False  # bot audio was flowing on the previous frame
        self._eos = False  # the writer said the current reply is complete
        self._paused = False
        self._closed = False
        self.frames_in = 0
        self.frames_dropped = 0
        self.frames_out = 0
        self.underruns = 0
        self.played_bytes = 0

    # ---- clock thread ----

    def push(self, pcm: bytes) -> None:
        if self._closed:
            return
        n = self.frame_bytes
        if len(pcm) != n:
            pcm = (bytes(pcm[:n]) + self._silence)[:n] if pcm else self._silence
        if len(self._inbound) == self._inbound.maxlen:
            self.frames_dropped += 1
        self._inbound.append(pcm)
        self.frames_in += 1

    def pull(self) -> bytes | None:
        if self._paused:
            return None
        n = self.frame_bytes
        with self._lock:
            have = len(self._playout)
            if have == 0:
                if self._streaming and not self._eos:
                    self.underruns += 1
                self._streaming = False
                return None
            if have >= n:
                out = bytes(self._playout[:n])
                del self._playout[:n]
                self._streaming = True
            else:
                out = bytes(self._playout) + b"\x00" * (n - have)
                self._playout.clear()
                if not self._eos:
                    self.underruns += 1
                self._streaming = False
            self.played_bytes += min(have, n)
        self.frames_out += 1
        return out

    # ---- asyncio ----

    def pop(self) -> bytes | None:
        try:
            return self._inbound.popleft()
        except IndexError:
            return None

    def write(self, pcm: bytes) -> int:
        """Queue bot audio; returns the bytes refused because the buffer is full."""
        if self._closed or not pcm:
            return 0
        with self._lock:
            room = max(0, self._max - len(self._playout))
            refused = 0
            if len(pcm) > room:
                refused = len(pcm) - room
                pcm = pcm[: room & ~1]
            self._playout += pcm
            self._eos = False
        return refused

    def clear(self) -> int:
        with self._lock:
            dropped = len(self._playout)
            self._playout.clear()
            self._streaming = False
            self._paused = False
        return dropped

    def end_of_stream(self) -> None:
        with self._lock:
            self._eos = True

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def close(self) -> None:
        self._closed = True
        with self._lock:
            self._playout.clear()

    @property
    def queued_bytes(self) -> int:
        return len(self._playout)

    @property
    def pending_frames(self) -> int:
        return len(self._inbound)
