"""Native media ports: pjmedia reaches the C callbacks through the wheel's own functions,
frames cross unchanged both ways, and one media tick wakes asyncio once for all calls."""

from __future__ import annotations

import asyncio

import pjsua2
import pytest

from telephony_bot.media.bridge import MediaBridge
from telephony_bot.native import _mediaport as m
from telephony_bot.sip import native_port


@pytest.fixture(scope="module", autouse=True)
def loaded() -> None:
    m.load(pjsua2._pjsua2.__file__)


def test_the_self_check_passes_on_this_pjsip_build() -> None:
    assert native_port.available(), native_port.why_not()


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
def test_frames_cross_a_port_through_pjmedia_unchanged(rate: int) -> None:
    port = m.Port("t", rate)
    n = rate // 50 * 2
    assert port.frame_bytes == n and port.info["clock_rate"] == rate
    c = m.Crossing(n, 10, 100 * n, False)
    port.attach(c)
    caller = [bytes([i]) * n for i in range(1, 4)]
    for f in caller:
        assert port.put(f) == 0  # pjmedia_port_put_frame -> the C callback
    port.put(None)  # a frame without audio keeps the clock: silence
    assert [c.pop() for _ in range(4)] == [*caller, bytes(n)]
    assert c.pop() is None
    bot = bytes(range(256)) * (2 * n // 256 + 1)
    c.write(bot[: 2 * n - 2])  # one full frame and one short by a sample
    assert port.get() == bot[:n]
    assert port.get() == bot[n : 2 * n - 2] + b"\x00\x00"  # padded
    assert port.get() is None  # nothing queued: pjmedia gets a frame without audio
    assert c.underruns == 1 and c.played_bytes == 2 * n - 2 and c.frames_out == 2
    port.attach(None)
    assert port.get() is None and port.put(caller[0]) == 0  # detached: frames go nowhere
    assert c.pop() is None


def test_a_crossing_of_the_wrong_frame_size_is_refused() -> None:
    port = m.Port("t", 8000)
    with pytest.raises(ValueError, match="320"):
        port.attach(m.Crossing(960, 4, 9600))


def test_caller_frames_signal_the_event_loop_once_until_it_reads() -> None:
    m.ack()
    port = m.Port("t", 8000)
    c = m.Crossing(320, 10, 3200)
    port.attach(c)
    for _ in range(4):  # four calls' frames in one tick
        port.put(b"\x01" * 320)
    assert m.ack() == 1  # one eventfd write for all four
    assert m.ack() == 0
    port.put(b"\x01" * 320)
    assert m.ack() == 1  # re-armed by the read
    port.attach(None)


async def test_the_waker_wakes_every_waiting_reader_on_one_signal() -> None:
    loop = asyncio.get_running_loop()
    m.ack()
    waker = native_port.NativeWaker(loop)
    try:
        bridges = [MediaBridge(loop, port_rate=8000, crossing=native_port.new_crossing)
                   for _ in range(3)]  # fmt: skip
        ports = [m.Port(f"t{i}", 8000) for i in range(3)]
        for b, p in zip(bridges, ports, strict=True):
            await asyncio.to_thread(waker.add, b)  # calls are created on PJSIP's threads
            p.attach(b.crossing)
        await asyncio.sleep(0)
        assert waker.bridges == set(bridges)
        for tick in range(3):
            readers = [asyncio.ensure_future(b.read_frame()) for b in bridges]
            await asyncio.sleep(0)
            before = waker.wakeups

            def media_tick() -> None:
                for p in ports:
                    p.put(b"\x10\x00" * 160)

            await asyncio.to_thread(media_tick)
            got = await asyncio.wait_for(asyncio.gather(*readers), 2)
            assert all(len(g) == 960 for g in got)  # resampled to 24 kHz
            assert waker.wakeups - before == 1, f"tick {tick}: {waker.wakeups - before} wakeups"
        bridges[0].close()
        ports[1].put(b"\x10\x00" * 160)  # the next signal
        await asyncio.sleep(0.05)
        assert bridges[0] not in waker.bridges  # a closed call's bridge is let go
        for p in ports:
            p.attach(None)
    finally:
        waker.close()
        await asyncio.sleep(0)


async def test_a_stuck_wake_up_is_re_armed_by_the_sweep() -> None:
    """The state the old ack order left behind (flag set, eventfd drained): the sweep finds
    the signal undelivered over a whole period, re-arms it and wakes the readers."""
    import os

    loop = asyncio.get_running_loop()
    m.ack()
    waker = native_port.NativeWaker(loop)
    try:
        b = MediaBridge(loop, port_rate=8000, crossing=native_port.new_crossing)
        waker.add(b)
        reader = asyncio.ensure_future(b.read_frame())
        await asyncio.sleep(0)
        b.crossing.push(b"\x10\x00" * 160)  # signals: flag set, one write
        os.read(m.wake_fd(), 8)  # ... swallowed before the loop saw it
        got = await asyncio.wait_for(reader, 2)  # woken by the sweep, not the eventfd
        assert len(got) == 960 and waker.sweep_wakeups == 1
        before = waker.wakeups
        reader = asyncio.ensure_future(b.read_frame())
        await asyncio.sleep(0)
        b.crossing.push(b"\x10\x00" * 160)  # re-armed: the eventfd works again
        assert len(await asyncio.wait_for(reader, native_port.SWEEP_S)) == 960
        assert waker.wakeups == before + 1 and waker.sweep_wakeups == 1
    finally:
        waker.close()
        await asyncio.sleep(0)


async def test_no_wake_up_is_lost_while_a_native_clock_races_the_event_loop() -> None:
    """A clock thread without the GIL signals while the loop drains and re-arms: every
    frame must reach a reader woken by the eventfd (re-arming before draining once let a
    write be swallowed, and that worker's readers starved for the rest of its life)."""
    loop = asyncio.get_running_loop()
    m.ack()
    waker = native_port.NativeWaker(loop)
    try:
        n, frames = 4, 3000
        bridges = [MediaBridge(loop, port_rate=8000, crossing=native_port.new_crossing,
                               inbound_max_ms=1_000_000) for _ in range(n)]  # fmt: skip
        ports = [m.Port(f"race{i}", 8000) for i in range(n)]
        for b, p in zip(bridges, ports, strict=True):
            waker.add(b)
            p.attach(b.crossing)
        await asyncio.sleep(0)

        async def read_all(b: MediaBridge) -> int:
            for _ in range(frames):
                await b.read_frame()
            return frames

        readers = [asyncio.ensure_future(read_all(b)) for b in bridges]
        for p in ports:
            p.run_clock(frames, 50)  # 4 native clocks, a frame every ~50 µs each
        got = await asyncio.wait_for(asyncio.gather(*readers), 30)
        assert got == [frames] * n
        assert sum(b.stats.frames_dropped for b in bridges) == 0
        assert waker.sweep_wakeups == 0, f"{waker.sweep_wakeups} readers found starving"
        for p in ports:
            p.attach(None)
    finally:
        waker.close()
        await asyncio.sleep(0)
