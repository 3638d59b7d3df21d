"""The engine's ASR/TTS thread pool: jobs run earliest deadline first."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["WorkPool"]

T = TypeVar("T")


class WorkPool:
    """Runs blocking ASR/TTS jobs in `workers` threads, earliest deadline first.

    A job's deadline is when a caller would notice it missing: now for a transcription or a
    reply's first audio (the caller is waiting in silence), and for later TTS chunks the
    moment the audio already sent runs out. So a reply that is already playing yields to
    another caller's silence, and no caller's reply starts behind someone else's long
    sentence. Ties (equal deadlines) go first come, first served. `run()` returns the job's
    result and its wait in the queue."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._free = self.workers
        self._waiting: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="local-speech")

    async def run(
        self, fn: Callable[..., T], *args: Any, deadline: float | None = None
    ) -> tuple[T, float]:
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        if self._free > 0 and not self._waiting:
            self._free -= 1
        else:
            turn: asyncio.Future[None] = loop.create_future()
            heapq.heappush(self._waiting, (t0 if deadline is None else deadline,
                                           next(self._seq), turn))  # fmt: skip
            try:
                await turn
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():
                    self._release()  # our turn came as we were cancelled: pass it on
                raise
        wait_ms = (time.monotonic() - t0) * 1000
        job = loop.run_in_executor(self._executor, fn, *args)
        job.add_done_callback(lambda _f: self._release())  # when the thread is really free
        return await asyncio.shield(job), wait_ms

    def _release(self) -> None:
        while self._waiting:
            _, _, turn = heapq.heappop(self._waiting)
            if not turn.done():
                turn.set_result(None)
                return
        self._free += 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
