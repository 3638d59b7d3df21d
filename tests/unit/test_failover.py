"""A route's providers in order: the next takes the call over when one cannot serve it, at
call start or mid-call, with the conversation so far - the caller is never dropped and the
bot does not greet again."""

from __future__ import annotations

import asyncio

from telephony_bot.providers.base import (
    ProviderErrorEvent,
    SessionConfig,
    SpeechStopped,
    TranscriptDelta,
)
from telephony_bot.session.lifecycle import CallSession
from telephony_bot.session.settings import CallLimits, Fallback, SessionOptions
from telephony_bot.session.stall import StallSettings
from tests.support.fake_call import Events, FakeCall, FakeProvider


def _session(call: FakeCall, first: FakeProvider, second: FakeProvider, bus: Events) -> CallSession:
    fallback = Fallback("backup", second, SessionConfig(provider="backup"))
    opts = SessionOptions(greeting="Hello", fallbacks=(fallback,))
    return CallSession(
        call,
        first,
        SessionConfig(provider="main"),
        opts,
        CallLimits(),
        bus=bus,  # type: ignore[arg-type]
    )


async def test_a_provider_that_cannot_be_reached_hands_the_call_to_the_next() -> None:
    log: list[str] = []
    call, bus = FakeCall(log), Events()
    main, backup = FakeProvider(log, name="main"), FakeProvider(log, name="backup")
    main.fail, main.retryable = True, False  # a wrong key: no retry mends it
    task = asyncio.create_task(_session(call, main, backup, bus).run())
    while "answer" not in log:
        await asyncio.sleep(0.01)
    assert log[:3] == ["connect backup", "response.create", "answer"]  # greeted by it
    assert call.queued_at_answer == 400
    assert bus.of("provider.failover")[0] | {"ms": 0} == {
        "from": "main", "to": "backup", "reason": "provider unavailable", "ok": True, "ms": 0,
    }  # fmt: skip
    call.end()
    result = await task
    assert result.failovers == [
        {"from": "main", "to": "backup", "reason": "provider unavailable", "ok": True}
    ]
    assert not any(e.startswith("hangup") for e in log)


async def test_mid_call_the_next_provider_goes_on_with_the_conversation() -> None:
    log: list[str] = []
    call, bus = FakeCall(log), Events()
    main, backup = FakeProvider(log, name="main"), FakeProvider(log, name="backup")
    session = _session(call, main, backup, bus)
    task = asyncio.create_task(session.run())
    while "answer" not in log:
        await asyncio.sleep(0.01)
    first = main.sessions[0]
    first.queue.put_nowait(TranscriptDelta("user", "I need an appointment.", "u1", final=True))
    first.queue.put_nowait(ProviderErrorEvent("quota", code="insufficient_quota", fatal=True))
    while not backup.sessions:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    history = backup.configs[0].history()  # type: ignore[misc]
    assert [(h.kind, h.text) for h in history] == [("user", "I need an appointment.")]
    assert first.closed and session.ctx.session is backup.sessions[0]
    assert log.count("response.create") == 1  # the greeting, once: never again
    assert call.media.queued_ms > 0  # the bridge phrase plays
    assert bus.of("provider.failover")[0]["reason"] == "provider error: insufficient_quota"
    call.end()
    result = await task
    assert result.ended_by == "remote" and not any(e.startswith("hangup") for e in log)


async def test_when_every_provider_failed_the_caller_hears_the_apology() -> None:
    log: list[str] = []
    call, bus = FakeCall(log, line_speed=50), Events()
    main, backup = FakeProvider(log, name="main"), FakeProvider(log, name="backup")
    main.fail = backup.fail = True
    main.retryable = backup.retryable = False
    result = await asyncio.wait_for(_session(call, main, backup, bus).run(), 20)
    assert main.attempts == backup.attempts == 1
    assert any(e.startswith("hangup provider unavailable") for e in log)
    assert result.failovers[0]["ok"] is False


async def test_a_provider_that_stops_answering_gets_a_filler_then_the_call_moves_on() -> None:
    log: list[str] = []
    call, bus = FakeCall(log, line_speed=1), Events()  # real time: silence is heard as such
    main, backup = FakeProvider(log, name="main"), FakeProvider(log, name="backup")
    fallback = Fallback("backup", backup, SessionConfig(provider="backup"))
    stall = StallSettings(filler_ms=600, reply_timeout_ms=1500, audio_gap_ms=1500)
    opts = SessionOptions(greeting="Hello", fallbacks=(fallback,), stall=stall)
    session = CallSession(call, main, SessionConfig(provider="main"), opts, CallLimits(), bus=bus)  # type: ignore[arg-type]
    task = asyncio.create_task(session.run())
    while "answer" not in log:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.6)  # the greeting (400 ms) is heard
    first = main.sessions[0]
    first.first_audio_s = None  # from now on it never answers
    first.queue.put_nowait(TranscriptDelta("user", "When are you open?", "u1", final=True))
    first.queue.put_nowait(SpeechStopped(0, "u1"))  # the caller's turn ended
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    while call.media.queued_ms == 0:  # silence ... until the filler
        await asyncio.sleep(0.01)
    filler_at = loop.time() - t0
    assert 0.5 < filler_at < 0.9, filler_at
    while not backup.sessions:
        await asyncio.sleep(0.01)
    assert 1.4 < loop.time() - t0 < 2.0  # the configured reply timeout
    await asyncio.sleep(0.3)
    (stalled,) = bus.of("provider.stalled")
    assert stalled["provider"] == "main" and stalled["kind"] == "no_reply"
    assert 1500 <= stalled["waited_ms"] < 1600  # type: ignore[operator]
    assert bus.of("provider.failover")[0]["reason"] == "stalled: no_reply"
    history = backup.configs[0].history()  # type: ignore[misc]
    assert [(h.kind, h.text) for h in history] == [("user", "When are you open?")]
    assert log.count("response.create") == 2  # the greeting; the backup's reply to the turn
    assert session.ctx.session is backup.sessions[0] and first.closed
    call.end()
    result = await task
    assert result.stalls == [stalled]
    assert not any(e.startswith("hangup") for e in log)
