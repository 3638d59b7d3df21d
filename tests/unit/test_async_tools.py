"""Tools whose result follows later, on a call with fakes at the seams: the model hears at
once that the result will follow, the result reaches it as a message at the next quiet
moment with one request for a reply, a failure is told the same way, and a result after
the call ended is logged and published, not lost."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from telephony_bot.events.cdr import build_record
from telephony_bot.providers.base import (
    PENDING_OUTPUT,
    AudioDelta,
    FunctionCall,
    ResponseDone,
    SessionConfig,
    ToolSpec,
    followed_result,
    is_pending_output,
    result_follows,
)
from telephony_bot.session.lifecycle import CallSession
from telephony_bot.session.settings import CallLimits, CallMeta, SessionOptions
from telephony_bot.tools.base import FunctionTool
from tests.support.fake_call import Events, FakeCall, FakeProvider

SPEC = ToolSpec("lookup_order", "An order's status", {"type": "object"})


def _tool(seconds: float, *, is_async: bool, fail: bool = False, timeout_s: float = 5) -> Any:
    async def run(args: dict[str, Any], call: Any) -> Any:
        await asyncio.sleep(seconds)
        if fail:
            raise ConnectionError("backend down")
        return {"order": "A-17", "status": "shipped"}

    return FunctionTool(SPEC, run, timeout_s=timeout_s, is_async=is_async)


async def _live(
    log: list[str], tool: Any, events: Events, line_speed: int = 50, **options: Any
) -> tuple[CallSession, asyncio.Task[Any], FakeCall]:
    # the line plays the bot's audio (fast by default: a second in 20 ms); every reply the
    # model is asked for is 400 ms of audio
    call, provider = FakeCall(log, line_speed), FakeProvider(log, first_audio_s=0.05)
    opts = SessionOptions(greeting=None, prewarm=False, tools={SPEC.name: tool}, **options)
    session = CallSession(call, provider, SessionConfig(), opts, CallLimits(), bus=events)  # type: ignore[arg-type]
    task = asyncio.create_task(session.run())
    while not (session.ctx.ready.is_set() and session.result.answered_at):
        await asyncio.sleep(0.01)
    return session, task, call


def _model_calls(session: CallSession, call_id: str = "fc1") -> None:
    fake = session.ctx.session
    fake.queue.put_nowait(FunctionCall(call_id, SPEC.name, "{}", "item_fc", "r0"))  # type: ignore[union-attr]
    fake.queue.put_nowait(ResponseDone("r0", "completed"))  # type: ignore[union-attr]


async def _wait_for(log: list[str], prefix: str, timeout: float = 5) -> int:
    async def seen() -> int:
        while not any(e.startswith(prefix) for e in log):
            await asyncio.sleep(0.01)
        return next(i for i, e in enumerate(log) if e.startswith(prefix))

    return await asyncio.wait_for(seen(), timeout)


async def test_an_async_tool_is_answered_at_once_and_its_result_given_later() -> None:
    log: list[str] = []
    events = Events()
    session, task, call = await _live(log, _tool(1.0, is_async=True), events)
    t0 = asyncio.get_running_loop().time()
    _model_calls(session)
    pending = await _wait_for(log, "function_output fc1")
    assert asyncio.get_running_loop().time() - t0 < 0.5  # at once, not after the tool (1 s)
    assert log[pending] == f"function_output fc1 {PENDING_OUTPUT}"
    assert log[pending + 1] == "response.create"  # the model tells the caller it is on it
    given = await _wait_for(log, "item system:", timeout=4)
    assert asyncio.get_running_loop().time() - t0 >= 1.0
    assert log[given] == (
        'item system: Result of lookup_order (call fc1): {"order": "A-17", "status": "shipped"}'
    )
    assert log[given + 1] == "response.create"  # and is asked to tell the caller
    assert [e for e in log if e.startswith("function_output")] == [log[pending]]  # only once
    # the conversation a new provider would be given holds the pending output and the result
    kinds = [(i.kind, i.text[:9]) for i in session.ctx.conversation.items()]
    assert kinds[-3:] == [("function_call", ""), ("function_output", PENDING_OUTPUT[:9]),
                          ("system", "Result of")]  # fmt: skip
    await asyncio.sleep(0.3)
    call.end()
    result = await asyncio.wait_for(task, 5)
    [rec] = result.tools
    assert rec["name"] == "lookup_order" and rec["ok"] is True and rec["async"] is True
    assert rec["pending_ms"] < 100 and rec["duration_ms"] >= 1000
    assert rec["delivered"] is True and rec["delivered_ms"] >= rec["duration_ms"]
    [pend] = events.of("tool.pending")
    assert abs(pend["after_ms"] - rec["pending_ms"]) <= 1 and pend["declared_async"] is True
    [res] = events.of("tool.result")
    assert res["ok"] is True and res["pending"] is True and res["late"] is False


async def test_a_tool_still_running_at_the_window_is_pending_then_given() -> None:
    log: list[str] = []
    events = Events()
    session, task, call = await _live(log, _tool(1.0, is_async=False), events, tool_window_ms=300)
    t0 = asyncio.get_running_loop().time()
    _model_calls(session)
    await _wait_for(log, f"function_output fc1 {PENDING_OUTPUT}")
    assert 0.3 <= asyncio.get_running_loop().time() - t0 < 0.9  # at the window, not at 1 s
    await _wait_for(log, "item system: Result of lookup_order (call fc1)", timeout=4)
    call.end()
    result = await asyncio.wait_for(task, 5)
    [rec] = result.tools
    assert rec["async"] is False and 300 <= rec["pending_ms"] < 900 and rec["delivered"] is True


async def test_a_tool_answering_within_the_window_is_answered_as_before() -> None:
    log: list[str] = []
    session, task, call = await _live(log, _tool(0.1, is_async=False), Events())
    _model_calls(session)
    i = await _wait_for(log, "function_output fc1")
    assert json.loads(log[i].split(" ", 2)[2]) == {"order": "A-17", "status": "shipped"}
    await asyncio.sleep(1.0)
    assert not [e for e in log if e.startswith("item ")]
    call.end()
    result = await asyncio.wait_for(task, 5)
    [rec] = result.tools
    assert set(rec) == {"name", "ok", "duration_ms"} and rec["ok"] is True


async def test_an_async_tools_failure_is_told_the_same_way() -> None:
    log: list[str] = []
    events = Events()
    session, task, call = await _live(log, _tool(0.3, is_async=True, fail=True), events)
    _model_calls(session)
    i = await _wait_for(log, "item system:", timeout=4)
    assert log[i] == (
        'item system: lookup_order (call fc1) failed: {"error": "lookup_order failed: '
        'ConnectionError"}'
    )
    assert log[i + 1] == "response.create"  # so the model can apologise
    call.end()
    result = await asyncio.wait_for(task, 5)
    assert result.tools[0]["ok"] is False and result.tools[0]["delivered"] is True


async def test_a_result_is_not_given_over_the_callers_turn_nor_the_bots_reply() -> None:
    log: list[str] = []
    session, task, call = await _live(log, _tool(0.5, is_async=True), Events(), line_speed=1)
    fake = session.ctx.session
    loop = asyncio.get_running_loop()
    _model_calls(session)
    await _wait_for(log, "function_output fc1")
    await asyncio.sleep(0.3)
    # the caller starts speaking before the result is there, and talks for 1.5 s
    session.tools.caller_turn(started=True)
    await asyncio.sleep(1.5)
    assert not [e for e in log if e.startswith("item ")]
    session.tools.caller_turn(started=False)
    # the model answers the caller's turn: 1.5 s of audio, played in real time
    fake.queue.put_nowait(AudioDelta(b"\x10\x00" * 24 * 1500, "answer", "ranswer"))  # type: ignore[union-attr]
    fake.queue.put_nowait(ResponseDone("ranswer", "completed"))  # type: ignore[union-attr]
    t_answer = loop.time()
    i = await _wait_for(log, "item system:", timeout=5)
    # once it was heard, and the line quiet for 0.7 s (looked at every 0.1 s)
    assert loop.time() - t_answer >= 1.5 + 0.7 - 0.1
    assert log[i + 1] == "response.create"
    call.end()
    await asyncio.wait_for(task, 5)


async def test_a_result_after_the_call_ended_is_logged_and_published_not_lost() -> None:
    log: list[str] = []
    events = Events()
    session, task, call = await _live(log, _tool(0.8, is_async=True), events)
    _model_calls(session)
    await _wait_for(log, "function_output fc1")
    call.end()  # the caller hangs up while the tool runs
    result = await asyncio.wait_for(task, 5)
    [rec] = result.tools  # the record, written at the end of the call
    assert rec["ok"] is None and rec["duration_ms"] is None and rec["delivered"] is False
    cdr = build_record(result, call.offer, CallMeta())
    assert cdr["tools"] == [rec] and cdr["tool_calls"] == 1
    assert not events.of("tool.result")
    for _ in range(200):  # the tool runs on to its end
        if events.of("tool.result"):
            break
        await asyncio.sleep(0.01)
    [late] = events.of("tool.result")
    assert late["late"] is True and late["ok"] is True and late["duration_ms"] >= 800
    assert late["output_chars"] == len('{"order": "A-17", "status": "shipped"}')
    assert not [e for e in log if e.startswith("item ")]  # nothing sent to a closed model


async def test_a_tool_that_has_not_answered_at_the_end_of_the_call_is_stopped() -> None:
    log: list[str] = []
    events = Events()
    ran_to_end: list[bool] = []

    async def run(args: dict[str, Any], call: Any) -> Any:
        await asyncio.sleep(0.5)
        ran_to_end.append(True)
        return "done"

    tool = FunctionTool(SPEC, run, timeout_s=5)  # within the window: not pending yet
    session, task, call = await _live(log, tool, events)
    _model_calls(session)
    await asyncio.sleep(0.2)
    call.end()
    await asyncio.wait_for(task, 5)
    await asyncio.sleep(0.6)
    assert ran_to_end == [] and not events.of("tool.result")


def test_the_result_message_reads_back_as_what_it_carries() -> None:
    assert is_pending_output(PENDING_OUTPUT) and not is_pending_output('{"status": "ok"}')
    assert json.loads(PENDING_OUTPUT)["status"] == "pending"
    text = result_follows("lookup_order", "call_A1", '{"a": "x (y): z"}', True)
    assert text == 'Result of lookup_order (call call_A1): {"a": "x (y): z"}'
    assert followed_result(text) == ("call_A1", True, '{"a": "x (y): z"}')
    failed = result_follows("book-slot", "c2", '{"error": "busy"}', False)
    assert followed_result(failed) == ("c2", False, '{"error": "busy"}')
    assert followed_result("Result of the vote: yes") is None
    assert followed_result("The caller is a premium customer.") is None
