"""Conference-bridge ports whose frame callbacks run in C (`telephony_bot.native._mediaport`).

With pjsua2's `AudioMediaPort` (`media_port.py`) every 20 ms frame of every call crosses
into Python twice on pjmedia's clock thread. A native port copies the frame into the call's
C `Crossing` instead, without the GIL; asyncio is woken through one eventfd per process
(`NativeWaker`), at most once per read, so one media tick wakes the event loop once for all
of a worker's calls. Everything above the bridge (`MediaBridge`, the session) is unchanged.

The C side declares PJSIP's structs itself (the wheel ships no headers), so `available()`
checks the layout on the loaded library once — port info as pjmedia fills it, frames in and
out through `pjmedia_port_put_frame`/`get_frame` — and the endpoint falls back to the
`AudioMediaPort` path when anything is off.
"""

from __future__ import annotations

import asyncio
from typing import Any

from telephony_bot import log
from telephony_bot.media.bridge import MediaBridge
from telephony_bot.media.crossing import Crossing
from telephony_bot.sip.media_port import IDLE, PortPool

_log = log.get("sip.native_port")

try:  # the compiled part; missing only in a broken install
    from telephony_bot.native import _mediaport as _m
except ImportError as exc:  # pragma: no cover - reported by available()
    _m = None
    _import_error = str(exc)
else:
    _import_error = ""

SWEEP_S = 0.2  # the inbound ring holds 1 s: a lost wake-up costs no audio
_checked: bool | None = None
_why = ""


def _self_check() -> str:
    """'' when the C port's view of PJSIP's structs is right on this library, else why not."""
    import pjsua2

    assert _m is not None
    _m.load(pjsua2._pjsua2.__file__)
    for rate in (8000, 16000):
        port = _m.Port("selfcheck", rate)
        info = port.info
        want = {
            "signature": _m.SIGNATURE,
            "clock_rate": rate,
            "channels": 1,
            "frame_time_usec": 20000,
            "bits": 16,
        }
        if info != want:
            return f"port info read back as {info}, expected {want}"
        n = port.frame_bytes
        crossing = _m.Crossing(n, 4, 4 * n, False)
        port.attach(crossing)
        pattern = bytes(i % 251 for i in range(n))
        if port.put(pattern) != 0 or crossing.pop() != pattern:
            return "a frame put through pjmedia_port_put_frame did not arrive"
        port.put(None)
        if crossing.pop() != bytes(n):
            return "a frame without audio did not arrive as silence"
        crossing.write(pattern[::-1])
        if port.get() != pattern[::-1] or port.get() is not None:
            return "pjmedia_port_get_frame did not return the queued audio"
        port.attach(None)
    return ""


def available() -> bool:
    """Whether native ports work in this process (checked once)."""
    global _checked, _why
    if _checked is None:
        if _m is None:
            _why = f"extension not built: {_import_error}"
        else:
            try:
                _why = _self_check()
            except Exception as exc:  # noqa: BLE001 - any failure: use the pjsua2 ports
                _why = f"{type(exc).__name__}: {exc}"
        _checked = not _why
    return bool(_checked)


def why_not() -> str:
    available()
    return _why


def new_crossing(frame_bytes: int, inbound_frames: int, playout_max_bytes: int) -> Crossing:
    """A C crossing that signals the process's wake-up (the `MediaBridge` factory)."""
    assert _m is not None
    c: Crossing = _m.Crossing(frame_bytes, inbound_frames, playout_max_bytes)
    return c


class NativeWaker:
    """Wakes the readers of every live bridge when the clock thread signals caller audio."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        assert _m is not None
        self.loop = loop
        # touched on the loop's thread only: `add()` hands bridges over from PJSIP's threads
        self.bridges: set[MediaBridge] = set()
        self.wakeups = 0
        self._fd = _m.wake_fd()
        self.sweep_wakeups = 0  # stuck wake-ups the sweep re-armed
        self._outstanding: tuple[int, int] | None = None  # (writes, wakeups) seen signalled
        self._sweep: asyncio.TimerHandle | None = None
        loop.add_reader(self._fd, self._on_signal)
        self._schedule_sweep()

    def add(self, bridge: MediaBridge) -> None:
        """Watch a new call's bridge (any thread: calls are created on PJSIP's)."""
        self.loop.call_soon_threadsafe(self.bridges.add, bridge)

    def _on_signal(self) -> None:
        _m.ack()  # drain and re-arm before looking: a frame from here on signals again
        self.wakeups += 1
        closed = []
        for b in self.bridges:
            if b.closed:
                closed.append(b)
            else:
                b.wake()
        for b in closed:
            self.bridges.discard(b)

    def _schedule_sweep(self) -> None:
        self._sweep = self.loop.call_later(SWEEP_S, self._sweep_once)

    def _sweep_once(self) -> None:
        """Safety net: a signal written but never delivered through a whole sweep period
        while the loop kept running means the wake-up is stuck: re-arm it and wake everyone.

        (A signal merely outstanding at one sweep is normal on a loaded machine: the loop can
        be descheduled between its select and this timer while the clock keeps writing.)"""
        self._schedule_sweep()
        st = _m.wake_state()
        outstanding = (st["writes"], self.wakeups) if st["signalled"] else None
        stuck = outstanding is not None and outstanding == self._outstanding
        self._outstanding = outstanding
        if not stuck:
            return
        waiting = sum(1 for b in self.bridges if b.waiting and b.crossing.pending_frames)
        self.sweep_wakeups += 1
        if self.sweep_wakeups in (1, 100, 10_000):
            _log.warning(
                "native port wake-up was stuck: re-armed",
                readers_waiting=waiting,
                sweeps=self.sweep_wakeups,
                signals=self.wakeups,
                **st,
            )
        self._outstanding = None
        self._on_signal()

    def close(self) -> None:
        """Stop watching the eventfd (any thread)."""
        try:
            self.loop.call_soon_threadsafe(self._close_on_loop)
        except RuntimeError:  # loop already closed
            pass

    def _close_on_loop(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
        self.loop.remove_reader(self._fd)


class NativePort:
    """One pooled native port; `bridge` is the call whose crossing it feeds."""

    callback_errors = 0  # C callbacks cannot raise; kept for the call's media stats

    def __init__(self, name: str, rate: int) -> None:
        assert _m is not None
        self.port = _m.Port(name, rate)
        self.bridge: MediaBridge | Any = IDLE

    @property
    def slot(self) -> int:
        return int(self.port.slot)

    def attach(self, bridge: MediaBridge) -> None:
        self.port.attach(bridge.crossing)
        self.bridge = bridge

    def detach(self) -> None:
        self.port.attach(None)
        self.bridge = IDLE

    def connect(self, am: Any) -> None:
        """Caller audio into this port and this port's audio to the caller (owner thread):
        `am` is the call's pjsua2 AudioMedia, joined by its conference slot."""
        assert _m is not None
        call_slot = int(am.getPortId())
        _m.connect(call_slot, self.slot)
        _m.connect(self.slot, call_slot)


class NativePortPool(PortPool[NativePort]):
    """Native ports added to the conference bridge once and handed from call to call."""

    kind = "native"
    crossing = staticmethod(new_crossing)

    def __init__(self, port_rate: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._rate = port_rate
        self.waker = NativeWaker(loop)

    def _new(self) -> NativePort:
        port = NativePort(f"native-{len(self._all)}", self._rate)
        port.port.add_to_bridge()
        return port

    def register(self, bridge: MediaBridge) -> None:
        self.waker.add(bridge)

    def destroy(self) -> None:
        """Only once pjmedia's clock has stopped; the C ports themselves stay allocated."""
        super().destroy()
        self.waker.close()
