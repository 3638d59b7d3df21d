"""The local engine's shared ASR/TTS pool: earliest deadline first, no slot lost to a
cancelled waiter, a busy thread never double-booked."""

from __future__ import annotations

import asyncio
import threading
import time

from telephony_bot.local_engine.work_pool import WorkPool


async def test_a_waiting_caller_goes_before_replies_already_playing() -> None:
    pool = WorkPool(1)
    gate = threading.Event()
    order: list[str] = []
    busy = asyncio.create_task(pool.run(gate.wait))
    await asyncio.sleep(0.05)
    now = time.monotonic()
    jobs = [
        asyncio.create_task(pool.run(order.append, "playing, due in 10 s", deadline=now + 10)),
        asyncio.create_task(pool.run(order.append, "playing, due in 5 s", deadline=now + 5)),
        asyncio.create_task(pool.run(order.append, "caller in silence")),  # due now
        asyncio.create_task(pool.run(order.append, "second caller in silence")),
    ]
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(busy, *jobs)
    assert order == [
        "caller in silence",
        "second caller in silence",
        "playing, due in 5 s",
        "playing, due in 10 s",
    ]
    waits = [j.result()[1] for j in jobs]
    assert all(w >= 40 for w in waits)  # each reports the time it spent queued
    pool.shutdown()


async def test_cancelled_waiters_do_not_lose_a_worker() -> None:
    pool = WorkPool(1)
    gate = threading.Event()
    busy = asyncio.create_task(pool.run(gate.wait))
    await asyncio.sleep(0.02)
    waiters = [asyncio.create_task(pool.run(time.sleep, 0)) for _ in range(3)]
    await asyncio.sleep(0.02)
    for w in waiters:
        w.cancel()
    gate.set()
    await busy
    await asyncio.gather(*waiters, return_exceptions=True)
    result, _ = await asyncio.wait_for(pool.run(lambda: "still works"), 2)
    assert result == "still works"
    pool.shutdown()


async def test_a_job_cancelled_while_running_keeps_its_thread_until_it_ends() -> None:
    pool = WorkPool(1)
    gate = threading.Event()
    running = asyncio.create_task(pool.run(gate.wait))
    await asyncio.sleep(0.02)
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    nxt = asyncio.create_task(pool.run(lambda: "next"))
    await asyncio.sleep(0.1)
    assert not nxt.done()  # the thread is still busy with the cancelled job's work
    gate.set()
    assert (await asyncio.wait_for(nxt, 2))[0] == "next"
    pool.shutdown()
