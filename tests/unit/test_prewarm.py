"""Pre-warm: the model's session opens and the greeting starts while the call rings; the
call is answered once the greeting is queued, so the caller hears it at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from telephony_bot.callport import CallEnded, CallOffered
from telephony_bot.errors import ProviderError
from telephony_bot.media.bridge import MediaBridge
from telephony_bot.providers.base import (
    AudioDelta,
    Capabilities,
    ProviderErrorEvent,
    ProviderEvent,
    ResponseDone,
    SessionConfig,
    drain,
)
from telephony_bot.session.core import CallLimits, SessionOptions, run_call

GREETING = b"\x10\x00" * 24 * 400  # 400 ms at 24 kHz


class FakeCall:
    """A CallPort that records what happened, in order."""

    def __init__(self, log: list[str]) -> None:
        self.call_id = "c1"
        self.offer = CallOffered("c1", "sip-1", "100", "200", "", "", "127.0.0.1")
        self.media = MediaBridge(asyncio.get_running_loop())
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self.log = log
        self.queued_at_answer: int | None = None

    async def answer(self) -> None:
        self.queued_at_answer = self.media.queued_ms
        self.log.append("answer")

    async def reject(self, status_code: int, reason: str = "") -> None:
        self.log.append(f"reject {status_code}")

    async def hangup(self, reason: str = "normal") -> None:
        self.log.append(f"hangup {reason}")
        self.events.put_nowait(CallEnded(self.call_id, "local", 200, reason))

    async def transfer(self, target: str) -> None:
        pass

    async def send_dtmf(self, digits: str) -> None:
        pass

    def end(self) -> None:
        self.events.put_nowait(CallEnded(self.call_id, "remote", 200, "bye"))


class FakeSession:
    def __init__(self, log: list[str], first_audio_s: float | None) -> None:
        self.log = log
        self.first_audio_s = first_audio_s
        self.queue: asyncio.Queue[ProviderEvent | None] = asyncio.Queue()
        self.closed = False

    async def create_response(self, instructions: str | None = None) -> None:
        self.log.append("response.create")
        if self.first_audio_s is not None:
            loop = asyncio.get_running_loop()
            loop.call_later(self.first_audio_s, self.queue.put_nowait, AudioDelta(GREETING, "i1"))
            loop.call_later(
                self.first_audio_s, self.queue.put_nowait, ResponseDone("r1", "completed")
            )

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
        pass

    async def add_text_item(self, text: str, role: str = "user") -> None:
        pass

    async def add_image_item(self, data_url: str) -> None:
        pass

    def events(self) -> AsyncIterator[ProviderEvent]:
        return drain(self.queue)

    async def close(self) -> None:
        self.closed = True
        self.log.append("close")
        self.queue.put_nowait(None)


class FakeProvider:
    name = "fake"
    capabilities = Capabilities()

    def __init__(
        self, log: list[str], connect_s: float = 0.05, first_audio_s: float | None = 0.1
    ) -> None:
        self.log = log
        self.connect_s = connect_s
        self.first_audio_s = first_audio_s
        self.sessions: list[FakeSession] = []
        self.fail = False

    async def connect(self, config: SessionConfig) -> FakeSession:
        await asyncio.sleep(self.connect_s)
        if self.fail:
            raise ProviderError("refused", retryable=True)
        self.log.append("connect")  # session.update goes out with the connection
        s = FakeSession(self.log, self.first_audio_s)
        self.sessions.append(s)
        return s


async def _run(call: FakeCall, provider: FakeProvider, **options: Any) -> Any:
    opts = SessionOptions(greeting=options.pop("greeting", "Hello"), **options)
    return await run_call(call, provider, SessionConfig(), CallLimits(), opts)  # type: ignore[arg-type]


async def test_the_greeting_is_prepared_while_ringing_and_queued_when_answered() -> None:
    log: list[str] = []
    call, provider = FakeCall(log), FakeProvider(log)
    task = asyncio.create_task(_run(call, provider))
    await asyncio.sleep(0.3)
    assert log[:3] == ["connect", "response.create", "answer"]
    assert call.queued_at_answer == 400  # the caller hears the greeting from the first frame
    call.end()
    await task
    assert provider.sessions[0].closed


async def test_an_event_while_it_rings_does_not_hold_the_answer_back() -> None:
    # A non-fatal provider error while ringing (published as `provider.error`) used to
    # orphan the event pre-warm waits on: the call then rang the route's whole maximum.
    log: list[str] = []
    call, provider = FakeCall(log), FakeProvider(log, first_audio_s=0.3)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    task = asyncio.create_task(_run(call, provider, prewarm_max_wait_ms=5000))
    while not provider.sessions:
        await asyncio.sleep(0.01)
    provider.sessions[0].queue.put_nowait(ProviderErrorEvent("rate limited", code="rate_limit"))
    while "answer" not in log:
        await asyncio.sleep(0.01)
    assert loop.time() - t0 < 2.0  # once the greeting is queued, not after 5 s of ringing
    assert call.queued_at_answer == 400
    call.end()
    await task


async def test_without_prewarm_the_call_is_answered_first() -> None:
    log: list[str] = []
    call, provider = FakeCall(log), FakeProvider(log)
    task = asyncio.create_task(_run(call, provider, prewarm=False))
    await asyncio.sleep(0.3)
    assert log[:3] == ["answer", "connect", "response.create"]
    assert call.queued_at_answer == 0
    call.end()
    await task


async def test_a_caller_hanging_up_while_it_rings_closes_the_prepared_session() -> None:
    log: list[str] = []
    call, provider = FakeCall(log), FakeProvider(log, first_audio_s=5.0)
    task = asyncio.create_task(_run(call, provider))
    await asyncio.sleep(0.2)  # connected, greeting requested, no audio yet: still ringing
    assert log == ["connect", "response.create"]
    call.end()
    result = await asyncio.wait_for(task, 2)
    assert "answer" not in log and log[-1] == "close"
    assert result.ended_by == "remote"


async def test_hanging_up_before_the_provider_answers_leaves_nothing_open() -> None:
    log: list[str] = []
    call, provider = FakeCall(log), FakeProvider(log, connect_s=5.0)
    task = asyncio.create_task(_run(call, provider))
    await asyncio.sleep(0.1)
    call.end()
    await asyncio.wait_for(task, 2)
    assert log == [] and provider.sessions == []


async def test_a_slow_model_delays_the_answer_by_the_routes_maximum_only() -> None:
    log: list[str] = []
    call, provider = FakeCall(log), FakeProvider(log, first_audio_s=3.0)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    task = asyncio.create_task(_run(call, provider, prewarm_max_wait_ms=300))
    while "answer" not in log:
        await asyncio.sleep(0.01)
    assert 0.25 <= loop.time() - t0 < 1.5  # answered at the bound, the greeting follows later
    call.end()
    await task


async def test_no_greeting_means_answering_as_soon_as_the_session_is_open() -> None:
    log: list[str] = []
    call, provider = FakeCall(log), FakeProvider(log)
    task = asyncio.create_task(_run(call, provider, greeting=None))
    await asyncio.sleep(0.2)
    assert log[:2] == ["connect", "answer"]
    call.end()
    await task


async def test_a_provider_that_cannot_be_reached_still_gets_the_caller_an_apology() -> None:
    log: list[str] = []
    call, provider = FakeCall(log), FakeProvider(log)
    provider.fail = True
    result = await asyncio.wait_for(_run(call, provider), 15)
    assert log[0] == "answer"  # answered, then the engine's own apology, then hung up
    assert any(e.startswith("hangup provider unavailable") for e in log)
    assert result.ended_by == "local"


def test_prewarm_is_on_by_default_and_a_route_can_turn_it_off() -> None:
    from telephony_bot.dialplan.router import effective
    from telephony_bot.dialplan.schema import Dialplan

    plan = Dialplan.model_validate(
        {
            "defaults": {"prewarm_max_wait_ms": 1500},
            "routes": [
                {"name": "fast", "match": {"number": "+100"}},
                {"name": "plain", "match": {"number": "+200"}, "prewarm": False},
            ],
        }
    )
    fast, plain = (effective(plan, r) for r in plan.routes)
    assert fast.prewarm and fast.prewarm_max_wait_ms == 1500
    assert not plain.prewarm
