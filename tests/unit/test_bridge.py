"""The media bridge: what the caller hears is exactly what was queued, and clear() is instant."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable

import numpy as np
import pytest

from telephony_bot.media.bridge import MediaBridge
from telephony_bot.media.crossing import PyCrossing
from telephony_bot.native._mediaport import Crossing as CCrossing

Make = Callable[..., MediaBridge]


@pytest.fixture(params=["python", "c"])
def make(request: pytest.FixtureRequest) -> Make:
    """A MediaBridge over either crossing: the C one must behave exactly like the Python one."""
    if request.param == "python":
        return functools.partial(MediaBridge, crossing=PyCrossing)
    return functools.partial(
        MediaBridge, crossing=lambda fb, n, pmax: CCrossing(fb, n, pmax, False)
    )


FRAME = 960  # 20 ms at 24 kHz, PCM16


def _pcm(ms: int, value: int = 1000) -> bytes:
    return np.full(24 * ms, value, dtype="<i2").tobytes()


async def test_bot_audio_of_any_chunk_size_plays_out_in_exact_20ms_frames(make: Make) -> None:
    b = make(asyncio.get_running_loop())
    for size in (7 * 2, 333 * 2, 1000 * 2, 2 * 2):  # odd chunk sizes, whole samples
        b.write(b"\x01\x00" * (size // 2))
    total = (7 + 333 + 1000 + 2) * 2
    out = bytearray()
    while (f := b.pull_playout_frame()) is not None:
        assert len(f) == FRAME
        out += f
    assert bytes(out[:total]) == b"\x01\x00" * (total // 2)
    assert set(out[total:]) <= {0}  # the last frame is padded with silence
    assert b.played_ms == total // 48


async def test_clear_silences_the_next_frame_and_reports_what_was_dropped(make: Make) -> None:
    b = make(asyncio.get_running_loop())
    b.write(_pcm(1000))
    assert b.pull_playout_frame() is not None
    dropped = b.clear()
    assert dropped == 980
    assert b.pull_playout_frame() is None  # barge-in: the very next frame is silence
    assert b.played_ms == 20  # only what was actually sent counts as played
    assert b.stats.cleared_ms == 980
    assert b.stats.underruns == 0  # a deliberate stop is not an underrun


async def test_gap_in_bot_audio_counts_as_underrun_but_end_of_reply_does_not(make: Make) -> None:
    b = make(asyncio.get_running_loop())
    b.write(_pcm(40))
    b.pull_playout_frame()
    b.pull_playout_frame()
    assert b.pull_playout_frame() is None  # ran dry mid-stream
    assert b.stats.underruns == 1
    b.write(_pcm(30))
    b.end_of_stream()
    b.pull_playout_frame()
    b.pull_playout_frame()  # partial frame padded, but the reply was complete
    assert b.pull_playout_frame() is None
    assert b.stats.underruns == 1


async def test_caller_frames_cross_from_the_media_thread_in_order(make: Make) -> None:
    b = make(asyncio.get_running_loop())
    frames = [bytes([i]) * FRAME for i in range(40)]

    def media_clock() -> None:
        for f in frames:
            b.push_caller_frame(f)
            threading.Event().wait(0.001)

    t = threading.Thread(target=media_clock)
    t.start()
    got = [await asyncio.wait_for(b.read_frame(), 2) for _ in frames]
    t.join()
    assert got == frames
    b.close()
    assert await b.read_frame() == b""


async def test_slow_reader_loses_oldest_caller_audio_and_it_is_counted(make: Make) -> None:
    b = make(asyncio.get_running_loop(), inbound_max_ms=100)  # 5 frames
    for i in range(8):
        b.push_caller_frame(bytes([i]) * FRAME)
    assert b.stats.frames_dropped == 3
    assert (await b.read_frame())[0] == 3  # oldest dropped, newest kept


async def test_playout_buffer_is_bounded(make: Make) -> None:
    b = make(asyncio.get_running_loop(), playout_max_ms=100)
    b.write(_pcm(150))
    assert b.queued_ms == 100
    assert b.stats.playout_overflow_ms == 50


async def test_pause_holds_bot_audio_without_dropping_it(make: Make) -> None:
    b = make(asyncio.get_running_loop())
    b.write(_pcm(100))
    b.pull_playout_frame()
    b.pause()
    assert b.pull_playout_frame() is None and b.queued_ms == 80  # silent, nothing lost
    b.resume()
    assert b.pull_playout_frame() is not None and b.played_ms == 40
    b.pause()
    b.clear()  # a confirmed barge-in drops the held audio and ends the pause
    b.write(_pcm(20))
    assert b.pull_playout_frame() is not None


def _tone(hz: float, ms: int, rate: int) -> bytes:
    t = np.arange(rate * ms // 1000) / rate
    return (8000 * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def _peak_hz(pcm: bytes, rate: int) -> float:
    x = np.frombuffer(pcm, "<i2").astype(np.float64)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * rate / len(x))


async def test_an_8k_port_side_resamples_both_ways_and_counts_played_ms(make: Make) -> None:
    b = make(asyncio.get_running_loop(), sample_rate=24000, port_rate=8000)
    assert b.frame_bytes == 320  # the media thread moves 8 kHz frames
    # caller: 8 kHz frames in, 24 kHz frames out, the same tone
    tone8 = _tone(1000, 400, 8000)
    for i in range(0, len(tone8), 320):
        b.push_caller_frame(tone8[i : i + 320])
    got = b"".join([await b.read_frame() for _ in range(20)])
    assert len(got) == 20 * FRAME
    assert abs(_peak_hz(got[FRAME:], 24000) - 1000) < 30
    # bot: 24 kHz audio of any chunk size in, 8 kHz frames out
    bot = _tone(700, 1000, 24000)
    for i in range(0, len(bot), 1234):
        b.write(bot[i : i + 1234])
    assert b.queued_ms == 1000
    out = bytearray()
    while (f := b.pull_playout_frame()) is not None:
        assert len(f) == 320
        out += f
    assert abs(_peak_hz(bytes(out[320:]), 8000) - 700) < 15
    assert b.played_ms == 1000


async def test_clear_on_an_8k_port_side_starts_the_next_reply_clean(make: Make) -> None:
    b = make(asyncio.get_running_loop(), sample_rate=24000, port_rate=8000)
    b.write(_pcm(500, 20000))
    assert b.clear() == 500
    b.write(b"\x00\x00" * 480)  # 20 ms of silence: no tail of the dropped reply in it
    assert set(b.pull_playout_frame() or b"x") == {0}


async def test_the_tick_waker_wakes_asyncio_once_per_tick_for_all_calls() -> None:
    from telephony_bot.sip.media_port import TickWaker

    loop = asyncio.get_running_loop()
    bridges = [MediaBridge(loop) for _ in range(3)]
    waker = TickWaker()
    scheduled: list[object] = []
    real = loop.call_soon_threadsafe

    def counting(cb, *args):  # noqa: ANN001, ANN202
        scheduled.append(cb)
        return real(cb, *args)

    def media_tick(i: int) -> None:
        waker.tick()  # the bridge asks every port for bot audio first
        for k, b in enumerate(bridges):
            waker.received(b, b.push_caller_frame(bytes([10 * i + k]) * FRAME, wake=False))

    loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
    try:
        for i in range(3):
            readers = [asyncio.ensure_future(b.read_frame()) for b in bridges]
            await asyncio.sleep(0)  # all three wait
            before = len(scheduled)
            await asyncio.to_thread(media_tick, i)
            got = await asyncio.wait_for(asyncio.gather(*readers), 2)
            assert [g[0] for g in got] == [10 * i, 10 * i + 1, 10 * i + 2]
            wakes = [
                cb
                for cb in scheduled[before:]
                if getattr(cb, "__name__", "") in ("_wake_all", "wake")
            ]
            # the first tick teaches the waker how many frames a tick brings
            assert len(wakes) == (3 if i == 0 else 1)
    finally:
        del loop.call_soon_threadsafe


async def test_a_port_that_missed_a_tick_delays_its_peers_by_one_tick_at_most() -> None:
    from telephony_bot.sip.media_port import TickWaker

    loop = asyncio.get_running_loop()
    a, b = MediaBridge(loop), MediaBridge(loop)
    waker = TickWaker()
    waker.tick()
    waker.received(a, a.push_caller_frame(b"\x00" * FRAME, wake=False))
    waker.received(b, b.push_caller_frame(b"\x00" * FRAME, wake=False))
    await a.read_frame(), await b.read_frame()
    waker.tick()  # calibrated: two frames a tick
    reader = asyncio.ensure_future(a.read_frame())
    await asyncio.sleep(0)
    waker.received(a, a.push_caller_frame(b"\x01" * FRAME, wake=False))  # b's call ended
    await asyncio.sleep(0.01)
    assert not reader.done()
    waker.tick()  # the next tick flushes it, and expects one frame from now on
    assert await asyncio.wait_for(reader, 1) == b"\x01" * FRAME
    reader = asyncio.ensure_future(a.read_frame())
    await asyncio.sleep(0)
    waker.received(a, a.push_caller_frame(b"\x02" * FRAME, wake=False))
    assert await asyncio.wait_for(reader, 1) == b"\x02" * FRAME
