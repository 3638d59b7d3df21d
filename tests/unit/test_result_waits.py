"""When a tool's result is to follow: the model is told at once for an async tool and at the
window for any other; the result is handed over only at a quiet moment, never over a reply
or a caller's turn; the caller never waits in silence longer than the filler gap."""

from __future__ import annotations

from telephony_bot.session.result_waits import (
    AskAgain,
    Deliver,
    Line,
    PlayFiller,
    ResultWaits,
    pending_after_ms,
)


def _quiet(waits: ResultWaits, start: int, until: int, **line: object) -> list[tuple[int, object]]:
    """Step every 100 ms from `start` to `until`; the actions, with their times."""
    out = []
    for now in range(start, until + 1, 100):
        out += [(now, a) for a in waits.step(Line(now, **line))]  # type: ignore[arg-type]
    return out


def test_an_async_tool_is_pending_at_once_any_other_at_the_window() -> None:
    assert pending_after_ms(True, 5000) == 0
    assert pending_after_ms(False, 5000) == 5000
    assert pending_after_ms(False, 8000) == 8000


def test_a_result_is_handed_over_once_the_line_has_been_quiet() -> None:
    w = ResultWaits(quiet_ms=700)
    w.pending("c1")
    w.asked(0)  # the reply to the pending output: "I am checking"
    w.response_done(1500)
    w.arrived("c1")
    acts = _quiet(w, 1600, 3000)
    assert acts == [(2200, Deliver(("c1",)))]  # 700 ms after the reply ended, once
    assert not w.watching


def test_a_result_waits_while_the_bot_speaks_and_is_given_after() -> None:
    w = ResultWaits(quiet_ms=700)
    w.pending("c1")
    w.arrived("c1")
    # the bot's reply is still being heard (queued audio) until 2000 ms
    assert _quiet(w, 0, 2000, bot_queued_ms=400) == []
    assert _quiet(w, 2100, 2600) == []  # quiet, but not long enough yet
    assert _quiet(w, 2700, 2700) == [(2700, Deliver(("c1",)))]


def test_a_result_waits_while_a_reply_is_generated() -> None:
    w = ResultWaits(quiet_ms=500)
    w.pending("c1")
    w.arrived("c1")
    assert _quiet(w, 0, 3000, bot_generating=True) == []
    assert _quiet(w, 3100, 3500) == [(3500, Deliver(("c1",)))]


def test_a_result_waits_for_the_callers_turn_and_the_reply_to_it() -> None:
    w = ResultWaits(quiet_ms=500, reply_wait_ms=3000)
    w.pending("c1")
    w.caller_started()
    w.arrived("c1")
    assert _quiet(w, 0, 2000, caller_voice_ms=None) == []  # the caller is speaking
    w.caller_stopped(2000)
    # the model's reply to the caller is due: nothing is given meanwhile...
    assert _quiet(w, 2100, 2400) == []
    w.response_done(2400)  # ... the reply came and went (it did not see the result)
    assert _quiet(w, 2500, 3000) == [(2900, Deliver(("c1",)))]


def test_the_callers_own_voice_counts_as_sound_even_without_a_provider_turn() -> None:
    w = ResultWaits(quiet_ms=700)
    w.pending("c1")
    w.arrived("c1")
    assert _quiet(w, 0, 1000, caller_voice_ms=900) == []  # a cough at 900 ms
    assert _quiet(w, 1100, 1600) == [(1600, Deliver(("c1",)))]


def test_no_result_is_given_while_another_tool_is_about_to_answer() -> None:
    w = ResultWaits(quiet_ms=300)
    w.pending("c1")
    w.arrived("c1")
    assert _quiet(w, 0, 2000, tools_running=True) == []  # its answer will ask for a reply
    assert _quiet(w, 2100, 2300) == [(2300, Deliver(("c1",)))]


def test_results_arriving_together_are_given_with_one_reply() -> None:
    w = ResultWaits(quiet_ms=300)
    for c in ("c1", "c2", "c3"):
        w.pending(c)
    w.arrived("c2")
    w.arrived("c1")
    acts = _quiet(w, 0, 600)
    assert acts == [(300, Deliver(("c2", "c1")))]
    assert w.awaited == {"c3"}  # still running: the filler keeps the caller company
    w.response_done(1500)
    w.arrived("c3")
    assert _quiet(w, 1600, 1800) == [(1800, Deliver(("c3",)))]


def test_the_engines_reply_request_blocks_a_second_one_until_done_or_stale() -> None:
    w = ResultWaits(quiet_ms=300, ask_wait_ms=8000)
    w.pending("c1")
    w.asked(0)
    w.arrived("c1")
    assert _quiet(w, 100, 7900) == []  # the model is answering the pending output
    # no response.done ever came (a lost request): after ask_wait_ms it is no longer waited
    assert _quiet(w, 8000, 8300) == [(8200, Deliver(("c1",)))]


def test_a_refused_reply_request_with_results_is_asked_again() -> None:
    w = ResultWaits(quiet_ms=300)
    w.pending("c1")
    w.arrived("c1")
    assert _quiet(w, 0, 300) == [(300, Deliver(("c1",)))]
    w.refused()  # conversation_already_has_active_response
    assert w.watching
    assert _quiet(w, 400, 2000, bot_generating=True) == []  # the other reply plays
    assert _quiet(w, 2100, 2400) == [(2300, AskAgain())]
    w.response_done(3000)
    assert not w.watching


def test_a_refusal_of_a_reply_without_results_asks_nothing_again() -> None:
    w = ResultWaits(quiet_ms=300)
    w.pending("c1")
    w.asked(0)  # the reply to the pending output
    w.refused()
    assert _quiet(w, 100, 1000) == []  # nothing held: nothing to ask for
    assert w.watching  # c1 is still awaited


def test_a_long_wait_never_leaves_more_than_the_filler_gap_of_silence() -> None:
    w = ResultWaits(filler_gap_ms=4000)
    w.pending("c1")
    w.asked(0)
    w.response_done(2000)  # "I am checking", heard until 2000 ms
    acts = _quiet(w, 2100, 6000)
    assert acts == [(6000, PlayFiller())]
    # the filler plays (queued audio) for 1.2 s, then the line is quiet again
    assert _quiet(w, 6100, 7200, bot_queued_ms=500) == []
    assert _quiet(w, 7300, 11300) == [(11200, PlayFiller())]


def test_the_first_filler_waits_for_no_reply_already_on_its_way() -> None:
    w = ResultWaits()
    w.asked(0)  # an async tool's pending output asked for "I am checking"
    assert not w.early_filler(Line(700))
    w.response_done(900)  # a reply with no audio (nothing to say): the filler it is
    assert w.early_filler(Line(1000))
    assert not w.early_filler(Line(1000, bot_queued_ms=600))  # not over the bot's words
    assert not w.early_filler(Line(1000, bot_generating=True))


def test_nothing_is_watched_once_every_result_was_given() -> None:
    w = ResultWaits(quiet_ms=100)
    assert not w.watching
    w.pending("c1")
    assert w.watching and w.awaited == {"c1"}
    w.arrived("c1")
    assert w.held == ("c1",)
    _quiet(w, 0, 200)
    assert not w.watching and w.held == ()
    w.arrived("c9")  # a result nobody awaits (answered in the window): ignored
    assert not w.watching
