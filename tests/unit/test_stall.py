"""The stall watch (pure): a provider that stops answering is noticed from the caller's side
- a filler before the silence gets long, then the call moves on - and nothing else is
taken for a stall: a slow tool, a caller who speaks again, a cough with no words, audio
that is still playing."""

from __future__ import annotations

import pytest

from telephony_bot.session.stall import Filler, Stalled, StallSettings, StallWatch

S = StallSettings(filler_ms=2000, reply_timeout_ms=5000, audio_gap_ms=4000)


def run(
    w: StallWatch, start: int, end: int, queued: int = 0, **kw: bool
) -> list[tuple[int, object]]:
    """Tick every 20 ms from `start` to `end` (exclusive): (time, action) for each action."""
    out = []
    for t in range(start, end, 20):
        out += [(t, a) for a in w.tick(t, queued, **kw)]
    return out


def test_no_reply_gives_a_filler_at_two_seconds_then_a_stall_at_the_timeout() -> None:
    w = StallWatch(S)
    w.reply_due(1000)  # the caller's turn ended
    got = run(w, 1000, 9000)
    assert got[0] == (3000, Filler(2000, "no_reply"))
    stalled = [(t, a) for t, a in got if isinstance(a, Stalled)]
    assert stalled == [(6000, Stalled("no_reply", 5000))]  # once
    assert w.stalls == 1


def test_a_long_stall_hears_the_filler_again_after_each_quiet_stretch_up_to_a_limit() -> None:
    w = StallWatch(StallSettings(filler_ms=1000, reply_timeout_ms=30000, audio_gap_ms=30000))
    w.reply_due(0)
    fillers, t = [], 0
    while t < 20000:
        acts = w.tick(t, 0)
        if any(isinstance(a, Filler) for a in acts):
            fillers.append(t)
            for t2 in range(t + 20, t + 1200, 20):  # the filler plays 1.2 s
                w.tick(t2, 500)
            t += 1200
            continue
        t += 20
    assert fillers == [1000, 3200, 5400]  # 1 s of silence before each; three at most


def test_a_reply_that_starts_in_time_is_no_stall() -> None:
    w = StallWatch(S)
    w.reply_due(0)
    assert run(w, 0, 1500) == []
    w.response_started(1500)
    w.response_event(1600)  # audio arrives
    assert run(w, 1600, 4000, queued=800) == []  # playing
    w.response_done()
    assert run(w, 4000, 20000) == [] and not w.watching


def test_audio_stopping_mid_reply_counts_from_when_the_caller_stops_hearing_it() -> None:
    w = StallWatch(S)
    w.reply_due(0)
    w.response_started(300)
    w.response_event(400)  # the last audio: 3 s of it, playing until 3400
    assert run(w, 400, 3400, queued=1000) == []  # the buffered reply is still heard
    got = run(w, 3400, 9000)
    assert got[0] == (5400, Filler(2000, "audio_gap"))
    assert [x for x in got if isinstance(x[1], Stalled)] == [(7400, Stalled("audio_gap", 4000))]


def test_the_caller_speaking_again_or_saying_no_words_means_no_reply_is_owed() -> None:
    w = StallWatch(S)
    w.reply_due(0)
    w.no_reply_due()  # speech started again, or an empty transcript
    assert run(w, 0, 10000) == []


def test_tools_running_are_not_a_stall() -> None:
    w = StallWatch(S)
    w.reply_due(0)  # the caller spoke while a slow tool ran: the engine asks for the reply
    assert run(w, 0, 10000, busy=True) == []


def test_a_reply_under_way_is_not_ended_by_the_caller_talking_over_it() -> None:
    w = StallWatch(S)
    w.response_started(0)
    w.no_reply_due()  # barge-in disabled: the reply goes on, and is still watched
    got = run(w, 0, 5000)
    assert [a for _, a in got if isinstance(a, Stalled)] == [Stalled("audio_gap", 4000)]


def test_after_a_takeover_the_watch_starts_afresh() -> None:
    w = StallWatch(S)
    w.reply_due(0)
    run(w, 0, 5100)
    w.reset()
    w.reply_due(5200)  # the new provider is asked for the reply
    got = run(w, 5200, 11000)
    assert [a for _, a in got if isinstance(a, Stalled)] == [Stalled("no_reply", 5000)]


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        StallSettings(filler_ms=0)
    off = StallWatch(StallSettings(enabled=False))
    off.reply_due(0)
    assert run(off, 0, 20000) == []


def speak(w: StallWatch, start: int, ms: int) -> int:
    """The engine's VAD hears the caller for `ms` from `start`; returns the end."""
    for t in range(start, start + ms, 20):
        w.caller_frame(t + 20, True)
    return start + ms


def test_a_provider_that_hears_nothing_any_more_is_noticed_by_the_engines_own_vad() -> None:
    # A stopped server says nothing at all, not even speech_stopped: the engine's VAD
    # heard the caller's turn end; no sign from the provider within the grace: a reply is due.
    w = StallWatch(S)
    end = speak(w, 1000, 800)
    got = []
    for t in range(end, end + 8000, 20):
        w.caller_frame(t, False)
        got += [(t, a) for a in w.tick(t, 0)]
    assert got[0] == (end + 2000, Filler(2000, "no_reply"))
    assert [x for x in got if isinstance(x[1], Stalled)] == [
        (end + 5000, Stalled("no_reply", 5000))
    ]


def test_the_engines_vad_leaves_turns_to_a_provider_that_heard_them() -> None:
    w = StallWatch(S)
    end = speak(w, 1000, 800)
    w.provider_heard(end + 300)  # speech_stopped came (and the reply was due from it)
    for t in range(end, end + 8000, 20):
        w.caller_frame(t, False)
        assert w.tick(t, 0) == []


def test_a_short_noise_is_no_turn() -> None:
    w = StallWatch(S)
    end = speak(w, 1000, 300)  # a cough
    for t in range(end, end + 8000, 20):
        w.caller_frame(t, False)
        assert w.tick(t, 0) == []
