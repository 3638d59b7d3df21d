"""The one crossing between the media clock thread and asyncio, for one call.

The media thread (pjmedia's clock, every 20 ms) calls `push_caller_frame()` and
`pull_playout_frame()`; both only copy bytes and never block. asyncio reads the caller's
audio with `await read_frame()` (PCM16 mono at `sample_rate`, 20 ms frames) and queues bot
audio of any chunk size with `write()`. `clear()` drops queued bot audio at once (barge-in: the
caller hears silence from the next frame on). `played_ms` counts bot audio actually handed
to the call's encoder, never what is merely queued.

A SIP call's bridge runs at its port's own rate on both sides (8 kHz for G.711): the
session converts to a provider's rate only where they differ (`session/context.py`). The
media thread's side may still run at another rate (`port_rate`): then the bridge resamples
on the asyncio side — caller frames as they are read, bot audio as it is queued — with the
streaming polyphase resampler, keeping the media thread's work a plain copy.

The buffers themselves are a `Crossing` (`media/crossing.py`): the Python one by default,
or the C one a native pjmedia port fills without the GIL (`crossing=` factory).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from telephony_bot.media.crossing import Crossing, PyCrossing
from telephony_bot.media.resample import Resampler

CrossingFactory = Callable[[int, int, int], Crossing]


@dataclass
class BridgeStats:
    """Counters an operator can read after a call (media quality of the Python side)."""

    frames_in: int = 0  # caller frames received from the media thread
    frames_dropped: int = 0  # caller frames dropped because asyncio fell behind (overflow)
    frames_out: int = 0  # frames of bot audio sent (each full or padded)
    underruns: int = 0  # bot audio ran dry mid-stream: a gap or padded frame the caller heard
    playout_overflow_ms: int = 0  # bot audio refused because the playout buffer was full
    cleared_ms: int = 0  # bot audio dropped by clear() (barge-in)


class MediaBridge:
    """Caller audio in, bot audio out, for one call (PCM16 mono): `sample_rate` on the
    asyncio side, `port_rate` (default: the same) on the media thread's side."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sample_rate: int = 24000,
        frame_ms: int = 20,
        inbound_max_ms: int = 1000,
        playout_max_ms: int = 120_000,
        port_rate: int | None = None,
        crossing: CrossingFactory = PyCrossing,
    ) -> None:
        self.loop = loop
        self.sample_rate = sample_rate
        self.port_rate = port_rate or sample_rate
        self.frame_ms = frame_ms
        # media-thread frames and the playout buffer are at the port rate
        self.frame_bytes = self.port_rate * frame_ms // 1000 * 2
        self._bytes_per_ms = self.port_rate * 2 // 1000
        resample = self.port_rate != sample_rate
        self._up = Resampler(self.port_rate, sample_rate) if resample else None
        self._down = Resampler(sample_rate, self.port_rate) if resample else None
        self.crossing = crossing(
            self.frame_bytes,
            max(1, inbound_max_ms // frame_ms),
            playout_max_ms * self._bytes_per_ms,
        )
        self._overflow_ms = 0
        self._cleared_ms = 0
        self._waiting = False
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    @property
    def stats(self) -> BridgeStats:
        c = self.crossing
        return BridgeStats(
            frames_in=c.frames_in,
            frames_dropped=c.frames_dropped,
            frames_out=c.frames_out,
            underruns=c.underruns,
            playout_overflow_ms=self._overflow_ms,
            cleared_ms=self._cleared_ms,
        )

    # ---- media thread side: copy only, never block ----

    def push_caller_frame(self, pcm: bytes, wake: bool = True) -> bool:
        """Queue one caller frame (at `port_rate`). When asyncio is waiting for it, wake it
        now — or, with `wake=False`, return True and leave the wake-up to the caller (the
        media port wakes asyncio once per media tick for all calls; see `wake()`)."""
        if self._closed:
            return False
        self.crossing.push(pcm)
        if self._waiting:
            self._waiting = False
            if not wake:
                return True
            self.loop.call_soon_threadsafe(self.wake)
        return False

    def pull_playout_frame(self) -> bytes | None:
        """The next 20 ms of bot audio, or None when there is nothing to play."""
        return self.crossing.pull()

    # ---- asyncio side ----

    def wake(self) -> None:
        """asyncio side: let `read_frame()` see the frames queued so far."""
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def read_frame(self) -> bytes:
        """The caller's next 20 ms frame; b"" once the bridge is closed."""
        pop = self.crossing.pop
        while True:
            pcm = pop()
            if pcm is not None:
                return pcm if self._up is None else self._up.process(pcm)
            if self._closed:
                return b""
            self._waiter = self.loop.create_future()
            self._waiting = True
            if self.crossing.pending_frames or self._closed:  # a frame raced in
                self._waiting = False
                continue
            await self._waiter

    def write(self, pcm: bytes) -> None:
        """Queue bot audio (any length, whole samples, at `sample_rate`) for playout."""
        if self._closed or not pcm:
            return
        if self._down is not None:
            pcm = self._down.process(pcm)
        refused = self.crossing.write(pcm)
        if refused:
            self._overflow_ms += refused // self._bytes_per_ms

    def end_of_stream(self) -> None:
        """The bot finished a reply: the silence that follows is not an underrun."""
        self.crossing.end_of_stream()

    def pause(self) -> None:
        """Hold the queued bot audio: silence from the next frame, nothing dropped."""
        self.crossing.pause()

    def resume(self) -> None:
        self.crossing.resume()

    def clear(self) -> int:
        """Drop all queued bot audio now (and end a pause); returns the ms dropped."""
        dropped = self.crossing.clear() // self._bytes_per_ms
        if self._down is not None:
            self._down.reset()  # the next reply starts clean, no tail of the dropped one
        self._cleared_ms += dropped
        return dropped

    @property
    def played_ms(self) -> int:
        """Bot audio actually sent towards the caller, in ms, since the call began."""
        return self.crossing.played_bytes // self._bytes_per_ms

    @property
    def queued_ms(self) -> int:
        return self.crossing.queued_bytes // self._bytes_per_ms

    @property
    def waiting(self) -> bool:
        """asyncio side: `read_frame()` is waiting for a frame."""
        w = self._waiter
        return w is not None and not w.done()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self.crossing.close()
        if self._waiting or self._waiter is not None:
            self._waiting = False
            try:
                self.loop.call_soon_threadsafe(self.wake)
            except RuntimeError:  # loop already closed at shutdown
                pass
