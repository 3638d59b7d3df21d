"""The media bridge: what the caller hears is exactly what was queued, and clear() is instant."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from telephony_bot.media.bridge import MediaBridge

FRAME = 960  # 20 ms at 24 kHz, PCM16


def _pcm(ms: int, value: int = 1000) -> bytes:
    return np.full(24 * ms, value, dtype="<i2").tobytes()


async def test_bot_audio_of_any_chunk_size_plays_out_in_exact_20ms_frames() -> None:
    b = MediaBridge(asyncio.get_running_loop())
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


async def test_clear_silences_the_next_frame_and_reports_what_was_dropped() -> None:
    b = MediaBridge(asyncio.get_running_loop())
    b.write(_pcm(1000))
    assert b.pull_playout_frame() is not None
    dropped = b.clear()
    assert dropped == 980
    assert b.pull_playout_frame() is None  # barge-in: the very next frame is silence
    assert b.played_ms == 20  # only what was actually sent counts as played
    assert b.stats.cleared_ms == 980
    assert b.stats.underruns == 0  # a deliberate stop is not an underrun


async def test_gap_in_bot_audio_counts_as_underrun_but_end_of_reply_does_not() -> None:
    b = MediaBridge(asyncio.get_running_loop())
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


async def test_caller_frames_cross_from_the_media_thread_in_order() -> None:
    b = MediaBridge(asyncio.get_running_loop())
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


async def test_slow_reader_loses_oldest_caller_audio_and_it_is_counted() -> None:
    b = MediaBridge(asyncio.get_running_loop(), inbound_max_ms=100)  # 5 frames
    for i in range(8):
        b.push_caller_frame(bytes([i]) * FRAME)
    assert b.stats.frames_dropped == 3
    assert (await b.read_frame())[0] == 3  # oldest dropped, newest kept


async def test_playout_buffer_is_bounded() -> None:
    b = MediaBridge(asyncio.get_running_loop(), playout_max_ms=100)
    b.write(_pcm(150))
    assert b.queued_ms == 100
    assert b.stats.playout_overflow_ms == 50


async def test_pause_holds_bot_audio_without_dropping_it() -> None:
    b = MediaBridge(asyncio.get_running_loop())
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
