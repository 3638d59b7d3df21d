"""A pjsua2 AudioMediaPort that copies 20 ms frames into and out of a MediaBridge, and the
port pool both kinds of port share.

This is the fallback path (`--media-port python`, or when the native ports' self-check
fails): the default is `native_port.py`, whose callbacks run in C without the GIL.

These two callbacks run on pjmedia's clock thread every 20 ms per call: they copy bytes
and nothing else (no logging, no allocation beyond the frame, never block). An exception
here would cross into C++, so each callback catches everything and counts it.

asyncio is woken once per media tick for all the calls of the worker (`TickWaker`), not once
per call: a wake-up per call let the asyncio thread take the GIL between two ports'
callbacks, so the clock thread waited for the GIL inside its tick and both threads paid
for the hand-offs (py-spy: most clock-thread samples in the GIL wait, 4 calls).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

import pjsua2 as pj

from telephony_bot.media.bridge import MediaBridge
from telephony_bot.media.crossing import Crossing, PyCrossing
from telephony_bot.sip.framebuf import FrameBuffer
from telephony_bot.sip.pythread import pin

_AUDIO = pj.PJMEDIA_FRAME_TYPE_AUDIO
_NONE = pj.PJMEDIA_FRAME_TYPE_NONE


def audio_format(clock_rate: int, frame_ms: int = 20) -> Any:
    fmt = pj.MediaFormatAudio()
    fmt.type = pj.PJMEDIA_TYPE_AUDIO
    fmt.clockRate = clock_rate
    fmt.channelCount = 1
    fmt.bitsPerSample = 16
    fmt.frameTimeUsec = frame_ms * 1000
    return fmt


class _Idle:
    """Where a pooled port's frames go between calls: nowhere."""

    frame_bytes = 0

    def push_caller_frame(self, pcm: bytes, wake: bool = True) -> bool:
        return False

    def pull_playout_frame(self) -> bytes | None:
        return None


IDLE = _Idle()


def _wake_all(bridges: list[MediaBridge]) -> None:
    for b in bridges:
        b.wake()


class TickWaker:
    """Wakes asyncio once per media tick for every call whose caller frame arrived in it.

    In each tick pjmedia's conference bridge first asks every port for bot audio
    (`tick()`), then hands every port its caller audio (`received()`), all on its clock
    thread. The waker expects as many caller frames as the previous tick brought; after the
    last one it schedules one asyncio callback that wakes all the readers. When fewer come
    (a call ended, was put on hold), the next tick's `tick()` flushes what is pending — at
    most one tick late, once — and the expectation follows. When more come, each extra
    frame is flushed at once. Only the clock thread calls these methods.
    """

    def __init__(self) -> None:
        self._expected = 1
        self._seen = 0
        self._pending: list[MediaBridge] = []

    def tick(self) -> None:
        """A port is asked for bot audio: the caller frames of the last tick are all in."""
        if self._seen:
            self._expected, self._seen = self._seen, 0
            if self._pending:
                self._flush()

    def received(self, bridge: MediaBridge, needs_wake: bool) -> None:
        if needs_wake:
            self._pending.append(bridge)
        self._seen += 1
        if self._seen >= self._expected and self._pending:
            self._flush()

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        try:
            pending[0].loop.call_soon_threadsafe(_wake_all, pending)
        except RuntimeError:  # loop closed at shutdown
            pass


class BridgePort(pj.AudioMediaPort):  # type: ignore[misc]
    """A conference-bridge port whose frames go to whichever call's bridge is attached.

    Ports are pooled and reused, never destroyed while pjmedia's clock runs: freeing a
    director object while the clock thread is inside its callback corrupts the Python
    heap (seen here as segfaults a few calls later).
    """

    def __init__(self, frames: FrameBuffer, port_rate: int, waker: TickWaker | None = None) -> None:
        super().__init__()
        self.bridge: MediaBridge | _Idle = IDLE
        self.waker = waker or TickWaker()
        self._read = frames.read
        self._write = frames.write
        self._silence = b"\x00" * (port_rate * 20 // 1000 * 2)
        self.callback_errors = 0

    def attach(self, bridge: MediaBridge) -> None:
        self.callback_errors = 0
        self.bridge = bridge

    def connect(self, am: Any) -> None:
        """Caller audio into this port and this port's audio to the caller (owner thread)."""
        am.startTransmit(self)
        self.startTransmit(am)

    def detach(self) -> None:
        self.bridge = IDLE

    def onFrameReceived(self, frame: Any) -> None:  # noqa: N802 - pjsua2 name
        pin()
        bridge = self.bridge
        if bridge is IDLE:
            return
        try:
            data = self._read(frame.buf) if frame.type == _AUDIO else None
            self.waker.received(bridge, bridge.push_caller_frame(data or self._silence, False))
        except Exception:  # noqa: BLE001 - never raise into pjmedia
            self.callback_errors += 1

    def onFrameRequested(self, frame: Any) -> None:  # noqa: N802 - pjsua2 name
        pin()
        self.waker.tick()
        try:
            pcm = self.bridge.pull_playout_frame()
            if pcm is None:
                frame.type = _NONE
                frame.size = 0
                return
            self._write(frame.buf, pcm)
            frame.size = len(pcm)
            frame.type = _AUDIO
        except Exception:  # noqa: BLE001 - never raise into pjmedia
            self.callback_errors += 1
            frame.type = _NONE
            frame.size = 0


P = TypeVar("P", bound="PooledPort")


class PooledPort(Protocol):
    def attach(self, bridge: MediaBridge) -> None: ...
    def detach(self) -> None: ...


class PortPool(Generic[P]):
    """Ports created once per worker and handed from call to call (thread-safe). Ports are
    never destroyed while pjmedia's clock runs (see `BridgePort`)."""

    kind = "pjsua2"  # what the log and the tests see
    crossing: Callable[[int, int, int], Crossing] = PyCrossing  # a call's bridge buffers

    def __init__(self) -> None:
        self._free: list[P] = []
        self._all: list[P] = []
        self._lock = threading.Lock()

    def _new(self) -> P:
        raise NotImplementedError

    def fill(self, n: int) -> None:
        """Create ports up to `n` (on the endpoint's owner thread)."""
        with self._lock:
            while len(self._all) < n:
                port = self._new()
                self._all.append(port)
                self._free.append(port)

    def acquire(self, bridge: MediaBridge) -> P:
        with self._lock:
            if self._free:
                port = self._free.pop()
            else:
                port = self._new()
                self._all.append(port)
        port.attach(bridge)
        return port

    def release(self, port: P) -> None:
        port.detach()
        with self._lock:
            if port not in self._free:
                self._free.append(port)

    def register(self, bridge: MediaBridge) -> None:
        """A new call's bridge (any thread)."""

    @property
    def size(self) -> int:
        return len(self._all)

    def destroy(self) -> None:
        """Only once pjmedia's clock has stopped (see SipEndpoint._destroy)."""
        with self._lock:
            self._free.clear()
            self._all.clear()


class BridgePortPool(PortPool[BridgePort]):
    """pjsua2 AudioMediaPorts; they wake their bridges themselves (`TickWaker`)."""

    def __init__(self, frames: FrameBuffer, port_rate: int) -> None:
        super().__init__()
        self._frames = frames
        self._rate = port_rate
        self.waker = TickWaker()

    def _new(self) -> BridgePort:
        port = BridgePort(self._frames, self._rate, self.waker)
        port.createPort(f"bridge-{len(self._all)}", audio_format(self._rate))
        return port
