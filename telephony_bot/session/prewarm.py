"""Pre-warm: get the model ready while the call still rings.

A realtime model needs a connection, its instructions (`session.update`) and a few hundred
ms to start a greeting. Doing that after the 200 OK leaves the caller in dead air for that
long; doing it between 180 Ringing and 200 OK hides it in the ringback. `Prewarm` starts
the session's opening (connect, audio tasks, greeting) at once and tells the session when
it may answer: when the opening failed (answer, then apologise), when no greeting is due,
or when the greeting's first audio is queued for playout — and never later than the
route's `prewarm_max_wait_ms` after the call arrived (then the greeting simply follows the
answer). A caller who hangs up while it rings ends it all: the session's tasks, the
opening and the provider session are closed with the call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from telephony_bot import log

_log = log.get("session.prewarm")


class Prewarm:
    def __init__(
        self,
        open_session: Callable[[set[asyncio.Task[Any]]], Awaitable[bool]],
        tasks: set[asyncio.Task[Any]],
        first_audio: asyncio.Event,
        wait_for_audio: bool,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._t0 = self._loop.time()
        self._first_audio = first_audio
        self._wait_for_audio = wait_for_audio
        self._open = asyncio.create_task(open_session(tasks), name="prewarm-open")
        self._ready = asyncio.create_task(self._until_ready(), name="prewarm-ready")
        tasks.update((self._open, self._ready))  # cancelled with the call's other tasks

    async def _until_ready(self) -> None:
        if await self._open and self._wait_for_audio:
            await self._first_audio.wait()

    async def ready_or(self, watcher: asyncio.Task[Any], deadline: float) -> None:
        """Wait until the call may be answered, the call ended, or the loop time `deadline`."""
        left = deadline - self._loop.time()
        if not self._ready.done() and left > 0:
            await asyncio.wait(
                {watcher, self._ready}, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
        if not watcher.done():
            _log.info(
                "prewarm",
                ready=self._ready.done(),
                greeting_queued=self._first_audio.is_set(),
                ringing_ms=round((self._loop.time() - self._t0) * 1000),
            )

    async def opened(self) -> bool:
        """Whether the provider session opened (waits for the opening to finish)."""
        return await self._open
