"""What may be done to a live call, the same way whoever asks: a transfer from the model's
tool and one from an operator are checked once, carried out, and end with the bot leaving
the call; an operator's `say` cuts the bot off through the same policy as a barge-in."""

from __future__ import annotations

import asyncio
import json

import pytest

from telephony_bot.providers.base import AudioDelta, FunctionCall, ResponseDone, SessionConfig
from telephony_bot.session import control
from telephony_bot.session.lifecycle import CallSession
from telephony_bot.session.settings import CallLimits, SessionOptions
from telephony_bot.tools.builtin import transfer_tool
from telephony_bot.transfer_target import TransferRules
from tests.support.fake_call import FakeCall, FakeProvider

NURSE = "sip:nurse@127.0.0.1:5080"


async def _live(
    log: list[str], bus: object = None, **options: object
) -> tuple[CallSession, asyncio.Task, FakeCall]:
    call, provider = FakeCall(log), FakeProvider(log, first_audio_s=None)
    options.setdefault("transfers", TransferRules({"nurse": NURSE}, route="front-desk"))
    opts = SessionOptions(greeting=None, prewarm=False, **options)  # type: ignore[arg-type]
    session = CallSession(call, provider, SessionConfig(), opts, CallLimits(), bus=bus)  # type: ignore[arg-type]
    task = asyncio.create_task(session.run())
    while not (session.ctx.ready.is_set() and session.result.answered_at):
        await asyncio.sleep(0.01)
    return session, task, call


async def test_an_operators_transfer_is_checked_carried_out_and_the_bot_leaves() -> None:
    log: list[str] = []
    bus = Events()
    session, task, _call = await _live(log, bus=bus)
    # toll fraud: a premium-rate number on someone else's server is no target of this call
    ok, detail = await session.control.transfer("sip:+900123@evil.example")
    assert not ok and detail == (
        "transfer refused: 'sip:+900123@evil.example' is not a transfer target of route "
        "'front-desk' (targets: nurse), and outbound.allow does not match +900123"
    )
    assert not any(e.startswith("transfer") for e in log)  # no REFER
    assert bus.of("transfer.refused") == [
        {"target": "sip:+900123@evil.example", "by": "operator", "reason": detail[18:]}
    ]
    ok, detail = await session.control.transfer("nurse")  # the route's target, by name
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


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, object]]] = []

    def emit(self, type_: str, call_id: str, **data: object) -> None:
        self.seen.append((type_, data))

    def of(self, type_: str) -> list[dict[str, object]]:
        return [d for t, d in self.seen if t == type_]


async def _until(cond: object, timeout: float = 3.0) -> None:
    async def wait() -> None:
        while not cond():  # type: ignore[operator]
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), timeout)


async def test_a_transfer_the_target_refuses_is_told_to_the_model_which_answers_at_once() -> None:
    log: list[str] = []
    bus = Events()
    tools = {"transfer": transfer_tool({"nurse": NURSE})}
    session, task, call = await _live(log, tools=tools, bus=bus)
    call.transfer_status, call.transfer_reason = 486, "Busy Here"
    fake = session.ctx.session
    args = json.dumps({"destination": "nurse"})
    fake.queue.put_nowait(FunctionCall("fc1", "transfer", args, "item_1", "r1"))  # type: ignore[union-attr]
    fake.queue.put_nowait(ResponseDone("r1", "completed"))  # type: ignore[union-attr]
    await _until(lambda: any(e.startswith("function_output fc1") for e in log))
    told = next(i for i, e in enumerate(log) if e.startswith("function_output fc1"))
    output = json.loads(log[told].split(" ", 2)[2])
    assert output == {
        "error": "transfer to nurse failed: 486 Busy Here; the caller is still on the line"
    }
    await _until(lambda: "response.create" in log[told:])  # the model answers the caller now
    assert bus.of("transfer.failed") == [
        {"target": NURSE, "by": "model", "ok": False, "status": 486, "reason": "Busy Here"}
    ]
    await asyncio.sleep(0.1)
    assert not task.done() and not any(e.startswith("hangup") for e in log)
    call.end()
    result = await asyncio.wait_for(task, 5)
    assert result.transfers == [
        {"target": NURSE, "by": "model", "ok": False, "status": 486, "reason": "Busy Here"}
    ]


async def test_an_operators_failed_transfer_is_told_to_the_model_and_the_caller_stays() -> None:
    log: list[str] = []
    session, task, call = await _live(log)
    call.transfer_status, call.transfer_reason = 603, "Decline"
    ok, detail = await session.control.transfer(NURSE)
    assert not ok and detail == "603 Decline; the caller is still on the line"
    note = next(i for i, e in enumerate(log) if e.startswith("item system: "))
    assert "the transfer failed (603 Decline; the caller is still on the line)" in log[note]
    assert log[note + 1] == "response.create"  # the caller hears the bot at once
    assert not task.done() and not any(e.startswith("hangup") for e in log)
    call.end()
    result = await asyncio.wait_for(task, 5)
    assert [t["status"] for t in result.transfers] == [603]


async def test_a_transfer_without_a_final_answer_fails_as_a_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(control, "TRANSFER_TIMEOUT_S", 0.2)
    log: list[str] = []
    bus = Events()
    session, task, call = await _live(log, bus=bus)
    call.transfer_status = None  # the target never gives a final answer
    ok, detail = await session.control.transfer(NURSE)
    assert not ok and detail.startswith("408 Request Timeout (no final answer within 0.2 s)")
    assert [e["status"] for e in bus.of("transfer.failed")] == [408]
    call.end()
    await asyncio.wait_for(task, 5)


async def test_a_transfer_answered_after_the_engine_stopped_waiting_still_ends_the_bots_leg(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The target took longer than the engine waits (a nurse line ringing long): when its
    200 comes at last, the caller is with the target, so the bot hangs up rather than stay
    on the line, silent, until the idle timer."""
    monkeypatch.setattr(control, "TRANSFER_TIMEOUT_S", 0.2)
    log: list[str] = []
    bus = Events()
    session, task, call = await _live(log, bus=bus)
    call.transfer_answer_s = 0.5  # the target answers 0.3 s after the engine gave up
    ok, detail = await session.control.transfer(NURSE)
    assert not ok and detail.startswith("408")
    result = await asyncio.wait_for(task, 3)  # the call ends without the caller hanging up
    assert result.hangup_reason == f"transferred to {NURSE}"
    assert [(t["status"], t["ok"]) for t in result.transfers] == [(408, False), (200, True)]
    assert [e["status"] for e in bus.of("transfer.completed")] == [200]


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
