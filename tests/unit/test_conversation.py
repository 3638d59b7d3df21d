"""The conversation a (re)connected model is given: the caller's words, the bot's as far as
the caller heard them, tool calls with their outputs, injected items - in order."""

from __future__ import annotations

import asyncio

from telephony_bot.providers.base import (
    AudioDelta,
    AudioDone,
    HistoryItem,
    SessionConfig,
    TranscriptDelta,
)
from telephony_bot.providers.openai.session_config import history_events
from telephony_bot.session.conversation import Conversation, heard_text
from telephony_bot.session.ledger import AgentTurn
from telephony_bot.session.lifecycle import CallSession
from telephony_bot.session.settings import CallLimits, SessionOptions
from tests.support.fake_call import Events, FakeCall, FakeProvider


def test_a_reply_cut_short_is_kept_as_far_as_it_was_heard() -> None:
    text = "We are open Monday to Friday from eight to six."
    assert heard_text(AgentTurn("i1", text, False, 3000, 3000)) == text
    assert heard_text(AgentTurn("i1", text, True, 600, 3000)) == "We are"  # 2 of 10 words
    assert heard_text(AgentTurn("i1", text, True, 10, 3000)) == "We"  # heard, if barely
    assert heard_text(AgentTurn("i1", text, True, 0, 3000)) == ""


def test_the_record_keeps_the_calls_order_and_leaves_out_what_was_never_heard() -> None:
    c = Conversation()
    c.assistant(AgentTurn("g", "Hello, how can I help?", False, 1500, 1500))
    c.user("When are you open?")
    c.function_call("call_1", "hours", "{}")
    c.function_output("call_1", '{"open": "9 to 5"}')
    c.assistant(AgentTurn("r", "We are open nine to five on weekdays.", True, 900, 2800))
    c.injected(text="The caller is a premium customer.", role="system")
    c.assistant(AgentTurn("x", "Sorry", True, 0, 400))  # cut before a word was heard
    c.user("  ")
    assert c.items() == (
        HistoryItem("assistant", "Hello, how can I help?"),
        HistoryItem("user", "When are you open?"),
        HistoryItem("function_call", call_id="call_1", name="hours", arguments="{}"),
        HistoryItem("function_output", '{"open": "9 to 5"}', call_id="call_1"),
        HistoryItem("assistant", "We are open"),
        HistoryItem("system", "The caller is a premium customer."),
    )


def test_the_record_becomes_realtime_items_in_either_dialect() -> None:
    items = [
        HistoryItem("user", "Hi"),
        HistoryItem("assistant", "Hello"),
        HistoryItem("function_call", call_id="c1", name="hours", arguments="{}"),
        HistoryItem("function_output", "{}", call_id="c1"),
        HistoryItem("image", "data:image/png;base64,aGk="),
    ]
    preview = history_events(items, "preview")
    ga = history_events(items, "ga")
    assert all(e["type"] == "conversation.item.create" for e in preview + ga)
    assert [e["item"]["type"] for e in preview] == [
        "message",
        "message",
        "function_call",
        "function_call_output",
    ]  # fmt: skip  (the preview API takes no image)
    assert preview[1]["item"]["content"][0]["type"] == "text"
    assert ga[1]["item"]["content"][0]["type"] == "output_text"
    assert len(ga) == 5 and ga[2]["item"]["name"] == "hours"


async def test_the_turn_event_of_a_reply_cut_short_says_what_the_caller_heard() -> None:
    log: list[str] = []
    call, bus = FakeCall(log, line_speed=1), Events()
    provider = FakeProvider(log, first_audio_s=None)
    session = CallSession(
        call, provider, SessionConfig(provider="fake"), SessionOptions(greeting=None),
        CallLimits(), bus=bus,  # type: ignore[arg-type]
    )  # fmt: skip
    task = asyncio.create_task(session.run())
    while not provider.sessions or "answer" not in log:
        await asyncio.sleep(0.01)
    text = "We are open Monday to Friday from eight in the morning."  # 10 words
    model = provider.sessions[0]
    model.queue.put_nowait(AudioDelta(b"\x10\x00" * 24 * 3000, "a1"))  # 3 s of reply
    model.queue.put_nowait(AudioDone("a1"))
    model.queue.put_nowait(TranscriptDelta("assistant", text, "a1", final=True))
    await asyncio.sleep(0.9)  # the caller hears 0.9 s of it, then it is cut off
    await session.control.say("Sorry to interrupt.", interrupt=True)
    while not [d for t, d in bus.seen if t == "turn.agent"]:
        await asyncio.sleep(0.01)
    turn = next(d for t, d in bus.seen if t == "turn.agent")
    assert turn["interrupted"] is True
    assert turn["text"] == "We are open"  # 3 of 10 words: what 0.9 s of 3 s carried
    assert turn["generated_text"] == text
    assert [h.text for h in session.ctx.conversation.items()] == ["We are open"]
    call.end()
    await task
