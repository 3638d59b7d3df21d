"""The echo provider: plays the caller's audio back after a fixed delay.

For diagnostics (is audio flowing both ways, how much delay does the engine add) and
load tests (no model, no network).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Literal

from telephony_bot.providers.base import (
    AudioDelta,
    Capabilities,
    ProviderEvent,
    SessionConfig,
    drain,
)


class EchoSession:
    def __init__(self, delay_ms: int, audio_rate: int = 24000) -> None:
        self.audio_rate = audio_rate  # the call's own rate: nothing to resample
        self._delay = max(0, delay_ms) / 1000.0
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[ProviderEvent | None] = asyncio.Queue()
        self._closed = False

    async def send_audio(self, pcm: bytes) -> None:
        if self._closed:
            return
        ev = AudioDelta(pcm)
        if self._delay:
            self._loop.call_later(self._delay, self._queue.put_nowait, ev)
        else:
            self._queue.put_nowait(ev)

    # The echo has no model: turn and conversation actions have nothing to act on.
    async def commit_input(self) -> None:
        pass

    async def clear_input(self) -> None:
        pass

    async def create_response(self, instructions: str | None = None) -> None:
        pass

    async def cancel_response(self) -> None:
        pass

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        pass

    async def send_function_output(self, call_id: str, output: str) -> None:
        pass

    async def add_text_item(self, text: str, role: Literal["user", "system"] = "user") -> None:
        pass

    async def add_image_item(self, data_url: str) -> None:
        pass

    def events(self) -> AsyncIterator[ProviderEvent]:
        return drain(self._queue)

    async def close(self) -> None:
        self._closed = True
        self._queue.put_nowait(None)


class EchoProvider:
    name = "echo"
    # it plays the caller's own audio back: no voice, no conversation, nothing to barge in on
    capabilities = Capabilities(speech=False, conversation=False, interruptible=False)

    def __init__(self, delay_ms: int = 0) -> None:
        self.delay_ms = delay_ms

    async def connect(self, config: SessionConfig) -> EchoSession:
        return EchoSession(config.echo_delay_ms or self.delay_ms, config.media_rate)
