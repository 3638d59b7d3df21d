"""A call and a realtime provider as the session sees them, for unit tests of the session
without SIP or sockets: both record what the session did to them, in order (`log`), and
follow the seams' contracts (`callport.CallPort`, `providers.base.Provider`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from telephony_bot.callport import CallAnswered, CallEnded, CallOffered, TransferOutcome
from telephony_bot.errors import ProviderError
from telephony_bot.media.bridge import MediaBridge
from telephony_bot.providers.base import (
    AudioDelta,
    Capabilities,
    ProviderEvent,
    ResponseDone,
    ResponseStarted,
    SessionConfig,
    drain,
)

GREETING = b"\x10\x00" * 24 * 400  # 400 ms at 24 kHz


class FakeCall:
    """A CallPort that records what happened, in order. Its line plays nothing unless
    `line_speed` is set: then, once answered, it takes that many 20 ms frames of the bot's
    audio every 20 ms (50: a second of audio in 20 ms, for tests that wait for playouts;
    1: real time) and gives a quiet caller frame every 20 ms."""

    def __init__(self, log: list[str], line_speed: int = 0) -> None:
        self.line_speed = line_speed
        self._line: asyncio.Task[None] | None = None
        self.call_id = "c1"
        self.offer = CallOffered("c1", "sip-1", "100", "200", "", "", "127.0.0.1")
        self.media = MediaBridge(asyncio.get_running_loop())
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self.log = log
        self.queued_at_answer: int | None = None
        # the target's final answer, as the NOTIFY reports it (None: none ever comes)
        self.transfer_status: int | None = 200
        self.transfer_reason = ""
        self.transfer_answer_s = 0.05  # when the final answer comes after the REFER

    async def answer(self) -> None:
        self.queued_at_answer = self.media.queued_ms
        self.log.append("answer")
        if self.line_speed and self._line is None:
            self._line = asyncio.create_task(self._play())
        self.events.put_nowait(CallAnswered(self.call_id, "PCMU/8000"))

    async def reject(self, status_code: int, reason: str = "") -> None:
        self.log.append(f"reject {status_code}")

    async def hangup(self, reason: str = "normal") -> None:
        self.log.append(f"hangup {reason}")
        self.events.put_nowait(CallEnded(self.call_id, "local", 200, reason))

    async def transfer(self, target: str) -> None:
        """A blind REFER: the target's provisional, then its final answer."""
        self.log.append(f"transfer {target}")
        loop = asyncio.get_running_loop()
        answers = [(0.01, 100, "Trying", False)]
        if self.transfer_status is not None:
            answers.append(
                (self.transfer_answer_s, self.transfer_status, self.transfer_reason, True)
            )
        for delay, code, reason, final in answers:
            ev = TransferOutcome(self.call_id, target, code, reason, final)
            loop.call_later(delay, self.events.put_nowait, ev)

    async def send_dtmf(self, digits: str) -> None:
        pass

    async def _play(self) -> None:
        silence = bytes(self.media.frame_bytes)
        while not self.media.closed:
            for _ in range(self.line_speed):
                self.media.pull_playout_frame()
            self.media.push_caller_frame(silence)  # a quiet caller, a frame every 20 ms
            await asyncio.sleep(0.02)

    def end(self) -> None:
        self.events.put_nowait(CallEnded(self.call_id, "remote", 200, "bye"))


class FakeSession:
    audio_rate = 24000  # like an OpenAI pcm16 session

    def __init__(self, log: list[str], first_audio_s: float | None) -> None:
        self.log = log
        self.first_audio_s = first_audio_s
        self.queue: asyncio.Queue[ProviderEvent | None] = asyncio.Queue()
        self.closed = False
        self.responses = 0

    async def create_response(self, instructions: str | None = None) -> None:
        """Each response: 400 ms of audio (item i1, i2, ...) `first_audio_s` after the
        request, done at once (r1, r2, ...)."""
        self.log.append("response.create")
        self.responses += 1
        if self.first_audio_s is not None:  # None: a server that never answers (stalled)
            n, loop = self.responses, asyncio.get_running_loop()
            self.queue.put_nowait(ResponseStarted(f"r{n}"))
            delta = AudioDelta(GREETING, f"i{n}", f"r{n}")
            loop.call_later(self.first_audio_s, self.queue.put_nowait, delta)
            done = ResponseDone(f"r{n}", "completed")
            loop.call_later(self.first_audio_s, self.queue.put_nowait, done)

    async def send_audio(self, pcm: bytes) -> None:
        pass

    async def commit_input(self) -> None:
        pass

    async def clear_input(self) -> None:
        pass

    async def cancel_response(self) -> None:
        pass

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        pass

    async def send_function_output(self, call_id: str, output: str) -> None:
        self.log.append(f"function_output {call_id} {output}")

    async def add_text_item(self, text: str, role: str = "user") -> None:
        self.log.append(f"item {role}: {text}")

    async def add_image_item(self, data_url: str) -> None:
        pass

    def events(self) -> AsyncIterator[ProviderEvent]:
        return drain(self.queue)

    async def close(self) -> None:
        self.closed = True
        self.log.append("close")
        self.queue.put_nowait(None)


class FakeProvider:
    capabilities = Capabilities()

    def __init__(
        self,
        log: list[str],
        connect_s: float = 0.05,
        first_audio_s: float | None = 0.1,
        name: str = "fake",
    ) -> None:
        self.name = name
        self.log = log
        self.connect_s = connect_s
        self.first_audio_s = first_audio_s
        self.sessions: list[FakeSession] = []
        self.fail = False  # every connection is refused (a server that is down)
        self.refuse_first = 0  # this many connections are refused first (a server starting)
        self.retryable = True  # whether a refusal says a retry may help (False: a bad key)
        self.attempts = 0
        self.configs: list[SessionConfig] = []  # as each connection was asked for

    async def connect(self, config: SessionConfig) -> FakeSession:
        self.attempts += 1
        self.configs.append(config)
        await asyncio.sleep(self.connect_s)
        if self.fail or self.attempts <= self.refuse_first:
            raise ProviderError("connection refused", retryable=self.retryable)
        self.log.append("connect" if self.name == "fake" else f"connect {self.name}")
        s = FakeSession(self.log, self.first_audio_s)
        self.sessions.append(s)
        return s


class Events:
    """An `EventSink` that keeps every event a session published, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def emit(self, type_: str, call_id: str, **data: Any) -> None:
        self.seen.append((type_, data))

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [d for t, d in self.seen if t == type_]
