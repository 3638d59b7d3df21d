"""The conversation bench's verdicts: what counts as a caller served, a reply's latency on
the wire, a greeting cut by a backchannel, a call left up after a transfer."""

from __future__ import annotations

from datetime import date
from typing import Any

from bench.conversation_judge import Observed, judge, reply_latency_ms, resolve_day

MONDAY = date(2026, 12, 7)
TARGETS = {"nurse": "sip:nurse@127.0.0.1:5999", "advisor": "sip:advisor@127.0.0.1:5999"}
LOUD, QUIET = -20.0, -80.0


def _obs(**kw: Any) -> Observed:
    base: dict[str, Any] = dict(
        tool_calls=[], bot_turns=[], user_turns=[], transfer_target=None,
        after_transfer_s=None, ended_by="local", duration_s=10.0, energy=[], utterances=[],
    )  # fmt: skip
    base.update(kw)
    return Observed(**base)


def _energy(*spans: tuple[int, int, float]) -> list[float]:
    """Frames (20 ms) of silence with loud spans given as (start_ms, end_ms, dBFS)."""
    out = [QUIET] * 1000
    for a, b, level in spans:
        for i in range(a // 20, b // 20):
            out[i] = level
    return out


def test_a_weekday_is_the_next_one_or_the_one_after() -> None:
    assert resolve_day({"weekday": "tuesday"}, MONDAY) == {date(2026, 12, 8), date(2026, 12, 15)}
    assert resolve_day({"weekday": "monday"}, MONDAY) == {date(2026, 12, 14), date(2026, 12, 21)}
    assert resolve_day("tomorrow", MONDAY) == {date(2026, 12, 8)}
    assert resolve_day({"day_of_month": 3}, MONDAY) == {date(2027, 1, 3)}


def test_the_booking_tool_must_reach_the_back_office_with_the_callers_slots() -> None:
    item = {"expect": {"tool": {"name": "check_availability",
                                "args": {"department": "cardiology",
                                         "day": {"weekday": "tuesday"}}}}}  # fmt: skip

    def call(day: str) -> list[dict[str, Any]]:
        return [{"name": "check_availability", "args": {"department": "cardiology", "day": day}}]

    right, wrong_day = _obs(tool_calls=call("2026-12-08")), _obs(tool_calls=call("2026-12-07"))
    assert judge(item, right, MONDAY, TARGETS).ok
    verdict = judge(item, wrong_day, MONDAY, TARGETS)
    assert not verdict.ok and "2026-12-07" in verdict.why[0]


def test_a_transfer_needs_the_right_target_and_the_bot_hanging_up_soon_after() -> None:
    item = {"expect": {"transfer": "nurse", "hangup": True}}
    done = _obs(transfer_target="sip:nurse@127.0.0.1:5999", ended_by="remote", after_transfer_s=1)
    left_up = _obs(transfer_target="sip:nurse@127.0.0.1:5999", ended_by="remote",
                   after_transfer_s=28.0)  # fmt: skip
    elsewhere = _obs(transfer_target="sip:advisor@127.0.0.1:5999", ended_by="remote")
    assert judge(item, done, MONDAY, TARGETS).ok
    assert "left up 28 s" in judge(item, left_up, MONDAY, TARGETS).why[0]
    assert not judge(item, elsewhere, MONDAY, TARGETS).ok


def test_reply_latency_is_from_the_callers_last_word_to_the_bots_first_audio() -> None:
    energy = _energy((0, 2000, LOUD), (4140, 6000, LOUD))
    assert reply_latency_ms(energy, 3000) == 1140.0
    assert reply_latency_ms(energy, 1500) is None  # the bot was still talking: no reply to time


def test_a_backchannel_that_cuts_the_greeting_or_gets_an_answer_is_counted() -> None:
    item = {"expect": {"greeting_kept": True}, "tags": ["backchannel"]}
    greeting = ["Hello, this is the clinic. How can I help you?"]
    whole = _obs(energy=_energy((0, 4000, LOUD)), reference_greeting_ms=4000,
                 greeting_window_ms=8000, bot_turns=greeting, reference_turns=greeting)  # fmt: skip
    cut = _obs(energy=_energy((0, 1500, LOUD)), reference_greeting_ms=4000,
               greeting_window_ms=8000, bot_turns=greeting, reference_turns=greeting)  # fmt: skip
    answered = _obs(energy=_energy((0, 4000, LOUD)), reference_greeting_ms=4000,
                    greeting_window_ms=8000, reference_turns=greeting,
                    bot_turns=[*greeting, "Sorry, I didn't catch that."])  # fmt: skip
    assert judge(item, whole, MONDAY, TARGETS).greeting_cut is False
    assert judge(item, cut, MONDAY, TARGETS).greeting_cut is True
    assert judge(item, answered, MONDAY, TARGETS).greeting_cut is True


def test_an_utterance_the_engine_never_transcribed_is_lost() -> None:
    item = {"expect": {}, "tags": []}
    obs = _obs(utterances=[(1000, 2000), (5000, 6000)], user_turns=["when are you open"])
    assert judge(item, obs, MONDAY, TARGETS).lost == 1
