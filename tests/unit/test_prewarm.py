"""Pre-warm: the model's session opens and the greeting starts while the call rings; the
call is answered once the greeting is queued, so the caller hears it at once."""

from __future__ import annotations

import asyncio
from typing import Any

from telephony_bot.providers.base import ProviderErrorEvent, SessionConfig
from telephony_bot.session.lifecycle import run_call
from telephony_bot.session.settings import CallLimits, SessionOptions
from tests.support.fake_call import FakeCall, FakeProvider


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
    call, provider = FakeCall(log, line_speed=50), FakeProvider(log)
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
            "defaults": {"provider": "echo", "prewarm_max_wait_ms": 1500},
            "routes": [
                {"name": "fast", "match": {"number": "+100"}},
                {"name": "plain", "match": {"number": "+200"}, "prewarm": False},
            ],
        }
    )
    fast, plain = (effective(plan, r) for r in plan.routes)
    assert fast.prewarm and fast.prewarm_max_wait_ms == 1500
    assert not plain.prewarm


async def test_a_provider_still_starting_is_retried_while_the_phone_rings() -> None:
    # The offline engine still loading its models refuses the first connections: the call
    # rings on while the engine retries, then is answered and greeted - no apology.
    log: list[str] = []
    call, provider = FakeCall(log), FakeProvider(log)
    provider.refuse_first = 3
    task = asyncio.create_task(_run(call, provider))
    while "answer" not in log:
        await asyncio.sleep(0.01)
    assert log[:3] == ["connect", "response.create", "answer"] and provider.attempts == 4
    assert call.queued_at_answer == 400  # greeted from the first frame
    call.end()
    result = await task
    assert result.ended_by == "remote" and not any(e.startswith("hangup") for e in log)


async def test_a_refusal_no_retry_can_mend_is_not_retried() -> None:
    log: list[str] = []
    call, provider = FakeCall(log, line_speed=50), FakeProvider(log)
    provider.fail, provider.retryable = True, False  # e.g. HTTP 401: a wrong key
    result = await asyncio.wait_for(_run(call, provider), 15)
    assert provider.attempts == 1
    assert any(e.startswith("hangup provider unavailable") for e in log)
    assert result.ended_by == "local"
