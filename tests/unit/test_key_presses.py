"""The caller's keys on a live session (a fake call and model, real session code): one burst
is one user item, then the model is asked to answer; a key over the bot cuts it off like a
barge-in; the burst is kept in the conversation a reconnected model is given."""

from __future__ import annotations

import asyncio
from typing import Any

from telephony_bot.callport import DtmfReceived
from telephony_bot.providers.base import (
    AudioDelta,
    Capabilities,
    HistoryItem,
    ResponseDone,
    SessionConfig,
)
from telephony_bot.session.dtmf import DtmfSettings
from telephony_bot.session.lifecycle import CallSession
from telephony_bot.session.settings import CallLimits, SessionOptions
from tests.support.fake_call import Events, FakeCall, FakeProvider

ITEM = "item user: The caller pressed the keys: 1234 (ended with #)"


async def _live(
    log: list[str], provider: FakeProvider | None = None, **dtmf: Any
) -> tuple[CallSession, asyncio.Task, FakeCall, Events]:
    call, events = FakeCall(log), Events()
    provider = provider or FakeProvider(log, first_audio_s=None)
    opts = SessionOptions(greeting=None, prewarm=False, dtmf=DtmfSettings(**dtmf))
    session = CallSession(call, provider, SessionConfig(), opts, CallLimits(), bus=events)  # type: ignore[arg-type]
    task = asyncio.create_task(session.run())
    while not (session.ctx.ready.is_set() and session.result.answered_at):
        await asyncio.sleep(0.01)
    return session, task, call, events


def _press(call: FakeCall, keys: str) -> None:
    for k in keys:
        call.events.put_nowait(DtmfReceived(call.call_id, k, "rfc2833", 160))


async def _until(cond: Any, timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_one_burst_is_one_user_item_then_the_model_is_asked_to_answer() -> None:
    log: list[str] = []
    session, task, call, events = await _live(log)
    _press(call, "1234#")
    await _until(lambda: "response.create" in log)
    said = [e for e in log if e.startswith("item ")]
    assert said == [ITEM]  # one item for the five keys
    assert log.index(ITEM) < log.index("response.create")
    assert session.ctx.conversation.items()[-1] == HistoryItem("user", ITEM[len("item user: ") :])
    assert events.of("dtmf.input") == [
        {"digits": "1234", "terminator": "#", "ended": "terminator", "to_model": True}
    ]
    assert [e["digit"] for e in events.of("dtmf")] == list("1234#")  # each key as before
    call.end()
    await asyncio.wait_for(task, 5)


async def test_a_burst_without_its_terminator_goes_after_the_inter_digit_time() -> None:
    log: list[str] = []
    _session, task, call, _events = await _live(log, inter_digit_ms=300)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    _press(call, "12")
    await asyncio.sleep(0.15)
    assert not [e for e in log if e.startswith("item ")]  # the caller may type on
    await _until(lambda: "response.create" in log)
    assert 0.28 <= loop.time() - t0 < 0.6
    assert [e for e in log if e.startswith("item ")] == [
        "item user: The caller pressed the keys: 12"
    ]
    call.end()
    await asyncio.wait_for(task, 5)


async def test_a_key_over_the_bot_cuts_it_off_where_the_caller_stopped_hearing() -> None:
    log: list[str] = []
    session, task, call, events = await _live(log)
    fake = session.ctx.session
    truncated: list[tuple[str, int]] = []

    async def truncate(item_id: str, audio_end_ms: int) -> None:
        truncated.append((item_id, audio_end_ms))

    fake.truncate = truncate  # type: ignore[union-attr,method-assign]
    fake.queue.put_nowait(AudioDelta(b"\x10\x00" * 24 * 3000, "reply", "r1"))  # type: ignore[union-attr]
    await _until(lambda: call.media.queued_ms > 0)
    _press(call, "5")
    await _until(lambda: bool(truncated))
    assert call.media.queued_ms == 0  # silence from the next frame
    assert truncated == [("reply", 0)]  # nothing of it had been played
    assert session.ctx.policy.last_interruption.cause == "dtmf"  # type: ignore[union-attr]
    assert session.result.barge_ins == 1 and events.of("barge_in")[0]["by"] == "dtmf"
    call.end()
    await asyncio.wait_for(task, 5)


async def test_without_interrupt_the_bot_finishes_and_the_keys_are_answered_after() -> None:
    log: list[str] = []
    session, task, call, _events = await _live(log, interrupt=False)
    fake = session.ctx.session
    fake.queue.put_nowait(AudioDelta(b"\x10\x00" * 24 * 3000, "reply", "r1"))  # type: ignore[union-attr]
    await _until(lambda: session.ctx.response_active)
    _press(call, "1234#")
    await _until(lambda: ITEM in log)
    await asyncio.sleep(0.1)
    assert call.media.queued_ms > 0 and session.result.barge_ins == 0  # still speaking
    assert "response.create" not in log  # the reply under way ends first
    fake.queue.put_nowait(ResponseDone("r1", "completed"))  # type: ignore[union-attr]
    await _until(lambda: "response.create" in log)
    call.end()
    await asyncio.wait_for(task, 5)


async def test_keys_reach_no_model_that_keeps_no_conversation_nor_when_turned_off() -> None:
    for provider_caps, dtmf in (
        (Capabilities(conversation=False), {}),  # the echo
        (Capabilities(), {"to_model": False}),
    ):
        log: list[str] = []
        provider = FakeProvider(log, first_audio_s=None)
        provider.capabilities = provider_caps  # type: ignore[misc]
        _session, task, call, events = await _live(log, provider, **dtmf)
        _press(call, "42#")
        await _until(lambda: bool(events.of("dtmf.input")))  # noqa: B023
        await asyncio.sleep(0.05)
        assert events.of("dtmf.input")[0]["to_model"] is False
        assert not [e for e in log if e.startswith("item ")] and "response.create" not in log
        call.end()
        await asyncio.wait_for(task, 5)
