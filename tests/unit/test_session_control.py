"""What may be done to a live call, the same way whoever asks: a transfer from the model's
tool and one from an operator are checked once, carried out, and end with the bot leaving
the call; an operator's `say` cuts the bot off through the same policy as a barge-in."""

from __future__ import annotations

import asyncio
import json

from telephony_bot.providers.base import AudioDelta, FunctionCall, ResponseDone, SessionConfig
from telephony_bot.session.lifecycle import CallSession
from telephony_bot.session.settings import CallLimits, SessionOptions
from telephony_bot.tools.builtin import transfer_tool
from tests.support.fake_call import FakeCall, FakeProvider

NURSE = "sip:nurse@127.0.0.1:5080"


async def _live(log: list[str], **options: object) -> tuple[CallSession, asyncio.Task, FakeCall]:
    call, provider = FakeCall(log), FakeProvider(log, first_audio_s=None)
    opts = SessionOptions(greeting=None, prewarm=False, **options)  # type: ignore[arg-type]
    session = CallSession(call, provider, SessionConfig(), opts, CallLimits())  # type: ignore[arg-type]
    task = asyncio.create_task(session.run())
    while not (session.ctx.ready.is_set() and session.result.answered_at):
        await asyncio.sleep(0.01)
    return session, task, call


async def test_an_operators_transfer_is_checked_carried_out_and_the_bot_leaves() -> None:
    log: list[str] = []
    session, task, _call = await _live(log)
    ok, detail = await session.control.transfer("nurse")  # not a SIP URI: refused, no REFER
    assert not ok and "sip:" in detail and not any(e.startswith("transfer") for e in log)
    ok, detail = await session.control.transfer(NURSE)
    assert ok and detail.startswith("200")
    result = await asyncio.wait_for(task, 5)
    assert log[-3:-1] == [f"transfer {NURSE}", f"hangup transferred to {NURSE}"]
    assert result.hangup_reason == f"transferred to {NURSE}"


async def test_the_models_transfer_tool_ends_the_same_way_after_telling_the_model() -> None:
    log: list[str] = []
    tools = {"transfer": transfer_tool({"nurse": NURSE})}
    session, task, _call = await _live(log, tools=tools)
    fake = session.ctx.session
    args = json.dumps({"destination": "nurse"})
    fake.queue.put_nowait(FunctionCall("fc1", "transfer", args, "item_1", "r1"))  # type: ignore[union-attr]
    fake.queue.put_nowait(ResponseDone("r1", "completed"))  # type: ignore[union-attr]
    result = await asyncio.wait_for(task, 5)
    told = next(i for i, e in enumerate(log) if e.startswith("function_output fc1"))
    hung = log.index(f"hangup transferred to {NURSE}")
    assert log.index(f"transfer {NURSE}") < told < hung  # the model hears the outcome first
    assert json.loads(log[told].split(" ", 2)[2])["status"].startswith("200")
    assert "response.create" not in log[told:]  # nothing more is asked of the model
    assert result.hangup_reason == f"transferred to {NURSE}"


async def test_a_failed_transfer_keeps_the_caller_with_the_bot() -> None:
    log: list[str] = []
    session, task, call = await _live(log)
    call.transfer_status = 486
    ok, detail = await session.control.transfer(NURSE)
    assert not ok and detail.startswith("486")
    await asyncio.sleep(0.1)
    assert not task.done() and not any(e.startswith("hangup") for e in log)
    call.end()
    await asyncio.wait_for(task, 5)


async def test_say_now_cuts_the_bot_off_where_the_caller_stopped_hearing_it() -> None:
    log: list[str] = []
    session, task, call = await _live(log)
    truncated: list[tuple[str, int]] = []
    fake = session.ctx.session

    async def truncate(item_id: str, audio_end_ms: int) -> None:
        truncated.append((item_id, audio_end_ms))

    fake.truncate = truncate  # type: ignore[union-attr,method-assign]
    fake.queue.put_nowait(AudioDelta(b"\x10\x00" * 24 * 3000, "reply", "r1"))  # type: ignore[union-attr]
    while call.media.queued_ms == 0:
        await asyncio.sleep(0.01)
    ok, _ = await session.control.say("Sorry, one more thing.", interrupt=True)
    await asyncio.sleep(0.05)
    assert ok and call.media.queued_ms == 0  # silence from the next frame
    assert truncated == [("reply", 0)]  # nothing of it had been played
    assert session.ctx.policy.last_interruption.cause == "say"  # type: ignore[union-attr]
    assert session.result.barge_ins == 0  # an operator's cut is no barge-in
    call.end()
    await asyncio.wait_for(task, 5)
