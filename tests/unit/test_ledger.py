"""The one record of what the caller heard of the bot: turns as heard, the item being
played, the engine's prompts in their place, and the levels the echo gate reads."""

from __future__ import annotations

from telephony_bot.media.vad import frame_dbfs
from telephony_bot.session.ledger import SILENCE_DBFS, AgentTurn, PlayoutLedger
from telephony_bot.session.turns import (
    BargeInSettings,
    CancelResponse,
    StopPlayout,
    Truncate,
    TurnPolicy,
)

LOUD_FRAME = b"\x00\x20" * 480  # 20 ms at 24 kHz, about -12 dBFS
QUIET_FRAME = b"\x40\x00" * 480  # about -54 dBFS


def test_an_agent_turn_ends_when_its_audio_was_heard_or_cut() -> None:
    t = PlayoutLedger()
    t.queued("i1", 500, played_ms=0)
    t.queued("i1", 500, played_ms=100)
    t.transcript("i1", "Hello there.")
    t.done("i1")
    assert t.finished(900) == []  # still playing
    assert t.finished(1000) == [AgentTurn("i1", "Hello there.", False, 1000)]
    # the second reply starts where playout stands and is cut after 300 ms
    t.queued("i2", 800, played_ms=1500)
    t.transcript("i2", "Let me check")
    t.cleared(1800)
    assert t.finished(1800) == [AgentTurn("i2", "Let me check", True, 300)]
    t.queued("i2", 200, played_ms=1800)  # late audio of the cut item: ignored
    # a turn still playing when the call ends reports what was heard
    t.queued("i3", 1000, played_ms=2000)
    t.transcript("i3", "Goodbye")
    assert t.flush(2400) == [AgentTurn("i3", "Goodbye", True, 400)]


def test_a_reply_streaming_at_real_time_is_cut_even_when_its_queue_ran_dry() -> None:
    # the model sends audio as fast as it plays: at the cut every ms sent has been heard,
    # but the reply was not over, so the caller missed the rest of it
    t = PlayoutLedger()
    t.queued("i1", 1360, played_ms=0)
    t.transcript("i1", "A very")
    t.cleared(1360)
    t.done("i1")  # the cancelled response closes its item afterwards
    assert t.finished(1360) == [AgentTurn("i1", "A very", True, 1360)]
    # a reply whose audio is all in and played is over, not cut, whenever the queue clears
    t.queued("i2", 500, played_ms=2000)
    t.transcript("i2", "Bye.")
    t.done("i2")
    t.cleared(2500)
    assert t.finished(2500) == [AgentTurn("i2", "Bye.", False, 500)]


def test_a_prompt_takes_its_place_so_the_reply_after_it_is_truncated_where_it_was_heard() -> None:
    # "One moment" (800 ms) plays while a tool runs; the reply is queued behind it. A caller
    # who cuts in 500 ms into the reply heard 500 ms of it, not 1300.
    policy = TurnPolicy(BargeInSettings(pause_after_ms=0))
    policy.engine_audio(800, 0)
    policy.bot_audio("reply", 3000, 0)
    assert policy.played_item_ms() == ("", 0)  # the prompt plays: no model item has begun
    actions = policy.played(1300, -10.0, 1300)
    actions += policy.interrupt(1300, 1300, by="say")
    assert actions == [StopPlayout("say"), CancelResponse(), Truncate("reply", 500)]
    assert policy.ledger.queued_ms == 0
    assert policy.interrupted("reply")  # its late audio is not played


def test_the_levels_of_what_was_played_come_back_frame_by_frame() -> None:
    t = PlayoutLedger(level=frame_dbfs)
    t.queued("i1", 60, LOUD_FRAME + QUIET_FRAME + QUIET_FRAME)
    assert t.played(0) == SILENCE_DBFS  # nothing played yet
    assert t.played(20) == frame_dbfs(LOUD_FRAME)
    assert t.played(60) == frame_dbfs(QUIET_FRAME)  # the two quiet frames
    t.queued("i1", 10, LOUD_FRAME[:480])  # half a frame: kept until the rest arrives
    t.queued("i1", 10, LOUD_FRAME[480:])
    assert t.played(80) == frame_dbfs(LOUD_FRAME)
    t.queued("i2", 20, LOUD_FRAME)
    t.cleared(80)  # dropped unplayed: its level never counts
    assert t.played(100) == SILENCE_DBFS


def test_every_cause_cuts_the_same_way_and_is_recorded() -> None:
    policy = TurnPolicy(BargeInSettings(pause_after_ms=0))
    policy.reset_item("a")
    policy.bot_audio("a", 2000, 0)
    policy.played(400, -10.0, 400)
    acts = policy.provider_cancelled(400, 400, queued_ms=1600)
    assert acts == [StopPlayout("provider"), Truncate("a", 400)]  # already cancelled
    assert policy.provider_cancelled(420, 420, queued_ms=0) == []  # nothing more to cut
    policy.reset_item("b")
    policy.bot_audio("b", 1000, 500, played_ms=500)
    acts = policy.interrupt(700, 700, by="say")
    assert [type(a).__name__ for a in acts] == ["StopPlayout", "CancelResponse", "Truncate"]
    assert acts[-1] == Truncate("b", 200)
    assert [i.cause for i in policy.interruptions] == ["provider", "say"]
