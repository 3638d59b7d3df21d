"""Barge-in policy, told as calls: a bot talking, a caller who coughs, echoes or cuts in."""

from __future__ import annotations

import random

import pytest

from telephony_bot.session.turns import (
    Action,
    BargeInSettings,
    CancelResponse,
    PausePlayout,
    ResumePlayout,
    ResumeTurn,
    StopPlayout,
    Truncate,
    TurnPolicy,
)

FRAME = 20
BOT_LEVEL = -10.0  # dBFS of the bot's audio as played
LOUD = -20.0  # a caller talking: above the echo bound (-10 - 15 = -25)
ECHO = -30.0  # the bot's own voice coming back 20 dB down
INTERRUPT = [StopPlayout(), CancelResponse()]


class Call:
    """A call on a 20 ms clock: the bridge plays one frame, then one caller frame arrives.

    `now` is the end of the current frame. The playout queue models the bridge: a StopPlayout
    the policy emits clears it, a PausePlayout holds it, as the session core would. Most
    stories test the confirmed interruption alone (first-stage pause off); the pause stories
    turn it on.
    """

    def __init__(self, settings: BargeInSettings | None = None) -> None:
        self.policy = TurnPolicy(settings or BargeInSettings(pause_after_ms=0))
        self.paused = False
        self.now = 0
        self.queued = 0  # bot audio in the bridge, ms
        self.played = 0  # bridge's cumulative played ms
        self.log: list[tuple[int, Action]] = []

    def _take(self, actions: list[Action]) -> None:
        for a in actions:
            self.log.append((self.now, a))
            if isinstance(a, StopPlayout):
                self.queued = 0
                self.paused = False
            elif isinstance(a, PausePlayout):
                self.paused = True
            elif isinstance(a, ResumePlayout):
                self.paused = False

    def bot_says(self, item_id: str, ms: int, *, queued: int | None = None) -> None:
        """The provider generated `ms` of audio (the bridge got `queued`, default the same)."""
        self.queued += ms if queued is None else queued
        self._take(self.policy.bot_audio(item_id, ms, self.now))

    def frame(self, speech: bool = False, level: float = -120.0) -> None:
        self.now += FRAME
        n = 0 if self.paused else min(FRAME, self.queued)
        self.queued -= n
        self.played += n
        self._take(self.policy.played(self.played, BOT_LEVEL if n else -120.0, self.now))
        self._take(self.policy.caller_frame(speech, level, self.now))

    def frames(self, ms: int, speech: bool = False, level: float = -120.0) -> None:
        for _ in range(ms // FRAME):
            self.frame(speech, level)

    def provider_speech_started(self) -> None:
        self._take(self.policy.provider_speech_started(self.now))

    def tick(self, now: int) -> None:
        self.now = now
        self._take(self.policy.tick(now))

    def actions(self) -> list[Action]:
        return [a for _, a in self.log]


# ---------- the caller cuts in ----------


def test_caller_talks_one_second_into_a_four_second_answer() -> None:
    call = Call()
    call.bot_says("item_1", 4000)  # the whole answer arrives at once, playback lags behind
    call.frames(1000)  # the bot has been heard for 1 s
    assert call.policy.bot_speaking and call.log == []
    onset = call.now
    call.frames(1000, speech=True, level=LOUD)  # the caller talks for a second
    call.provider_speech_started()  # the provider's VAD agrees, later: nothing more to do
    call.frames(500)
    call.tick(call.now + 2000)

    at = call.log[0][0]
    assert call.actions() == INTERRUPT + [Truncate("item_1", at)]  # played ms, not 4000
    assert all(t == at for t, _ in call.log)  # all at once, exactly once
    assert onset + 150 <= at <= onset + 150 + FRAME
    assert not call.policy.bot_speaking
    it = call.policy.last_interruption
    assert it is not None and (it.started_ms, it.confirmed_ms) == (onset, at)
    assert (it.item_id, it.played_ms, it.truncate_ms) == ("item_1", at, at)
    assert len(call.policy.interruptions) == 1 and call.policy.false_interruptions == 0


def test_late_audio_of_the_interrupted_item_is_ignored() -> None:
    call = Call()
    call.bot_says("item_1", 2000)
    call.frames(500)
    call.frames(300, speech=True, level=LOUD)
    assert len(call.log) == 3
    assert call.policy.interrupted("item_1")
    call.policy.bot_audio("item_1", 400, call.now)  # in flight before the cancel landed
    assert not call.policy.bot_speaking
    assert call.policy.generated_ms("item_1") == 0


def test_truncate_is_played_ms_while_generation_streams_ahead() -> None:
    call = Call()
    for _ in range(30):  # the model streams 40 ms every 20 ms: twice real time
        call.bot_says("item_1", 40)
        call.frame()
    call.frames(180, speech=True, level=LOUD)
    truncates = [a for a in call.actions() if isinstance(a, Truncate)]
    at = call.log[0][0]
    assert truncates == [Truncate("item_1", at)]
    assert at < 1200  # generated so far: clamp not involved


def test_truncate_clamps_to_generated_when_played_runs_ahead() -> None:
    call = Call()
    call.bot_says("item_1", 500, queued=1000)  # the bridge played more than was reported
    call.frames(700)
    call.frames(200, speech=True, level=LOUD)
    assert call.actions() == INTERRUPT + [Truncate("item_1", 500)]
    assert call.policy.last_interruption.played_ms > 500  # type: ignore[union-attr]


def test_truncate_targets_the_item_being_played() -> None:
    call = Call()
    call.bot_says("item_1", 400)
    call.bot_says("item_2", 3000)  # queued behind the first
    call.frames(1000)
    call.frames(200, speech=True, level=LOUD)
    at = call.log[0][0]
    assert call.actions() == INTERRUPT + [Truncate("item_2", at - 400)]


def test_no_cancel_once_the_response_is_done() -> None:
    call = Call()
    call.bot_says("item_1", 3000)
    call._take(call.policy.response_done(call.now))  # generated fully, still playing
    call.policy.item_done("item_1")
    call.frames(600)
    call.frames(200, speech=True, level=LOUD)
    at = call.log[0][0]
    assert call.actions() == [StopPlayout(), Truncate("item_1", at)]


def test_a_new_answer_can_be_interrupted_again() -> None:
    call = Call()
    call.bot_says("item_1", 2000)
    call.frames(400)
    call.frames(400, speech=True, level=LOUD)
    call.frames(200)
    call._take(call.policy.response_done(call.now))
    call.policy.reset_item("item_2")
    call.bot_says("item_2", 2000)
    call.frames(300)
    call.frames(300, speech=True, level=LOUD)
    truncates = [a for a in call.actions() if isinstance(a, Truncate)]
    assert [t.item_id for t in truncates] == ["item_1", "item_2"]
    assert truncates[1].audio_end_ms == call.log[-1][0] - 1000  # item_2 began playing at 1000
    assert len(call.policy.interruptions) == 2


# ---------- sounds that are not an interruption ----------


def test_a_60ms_cough_does_not_interrupt() -> None:
    call = Call()
    call.bot_says("item_1", 4000)
    call.frames(1000)
    call.frames(60, speech=True, level=-5.0)
    call.frames(1000)
    call.frames(120, speech=True, level=LOUD)  # a "mhm" backchannel, 120 ms
    call.frames(1000)
    assert call.log == []
    assert call.policy.bot_speaking


def test_a_one_frame_gap_does_not_reset_the_run() -> None:
    call = Call()
    call.bot_says("item_1", 4000)
    call.frames(1000)
    onset = call.now
    call.frames(100, speech=True, level=LOUD)
    call.frame(speech=False, level=-60.0)  # the VAD drops one frame
    call.frames(100, speech=True, level=LOUD)
    assert len(call.log) == 3
    assert call.log[0][0] == onset + 160  # 8 frames of run, the gap inside it


def test_a_two_frame_gap_resets_the_run() -> None:
    call = Call()
    call.bot_says("item_1", 4000)
    call.frames(1000)
    for _ in range(5):  # 100 ms bursts with 40 ms pauses never add up
        call.frames(100, speech=True, level=LOUD)
        call.frames(40)
    assert call.log == []


def test_the_bots_own_echo_does_not_interrupt() -> None:
    call = Call()
    call.bot_says("item_1", 4000)
    call.frames(200)
    call.frames(2000, speech=True, level=ECHO)  # VAD hears the bot, 20 dB down
    assert call.log == []
    call.frames(200, speech=True, level=LOUD)  # the caller, louder than the echo bound
    at = call.log[0][0]
    assert call.actions() == INTERRUPT + [Truncate("item_1", at)]


def test_echo_bound_follows_the_played_level_window() -> None:
    settings = BargeInSettings(echo_window_ms=300)
    call = Call(settings)
    call.bot_says("item_1", 400)
    call.frames(400)  # the bot's audio ends here; hangover keeps it "speaking" 100 ms
    assert call.policy.bot_speaking
    call.frames(300, speech=True, level=ECHO)  # echo tail, then the bot is silent anyway
    assert call.log == []


QUIET = -38.0  # a soft-spoken caller's first syllables: under the worst-case bound (-25)


def test_on_a_line_without_echo_a_soft_caller_interrupts_at_once() -> None:
    call = Call()
    call.bot_says("item_1", 5000)
    call.frames(1500)  # the caller side is silent while the bot speaks: no echo on this line
    assert call.policy.echo_return_loss_db(call.now) == 40.0
    onset = call.now
    call.frames(200, speech=True, level=QUIET)
    assert call.actions()[:2] == INTERRUPT
    assert call.log[0][0] - onset == 160  # min_interrupt_ms + the frame it takes to see


def test_on_an_echoing_line_the_gate_stays_where_the_echo_is() -> None:
    call = Call()
    call.bot_says("item_1", 6000)
    call.frames(200)  # the echo is on its way back
    call.frames(3000, speech=True, level=ECHO)  # then comes back 20 dB down, all the time
    assert call.log == []  # never an interruption by the bot's own voice
    assert call.policy.echo_return_loss_db(call.now) == 15.0  # 20 dB measured - 6 margin
    call.frames(300, speech=True, level=QUIET)  # quieter than the echo: explained as echo
    assert call.log == []
    call.frames(200, speech=True, level=LOUD)
    assert call.actions()[:2] == INTERRUPT


def test_echo_arriving_late_after_the_bot_starts_is_not_taken_for_a_quiet_line() -> None:
    call = Call()
    call.bot_says("item_1", 4000)
    call.frames(280)  # a long echo path: nothing comes back for 280 ms
    call.frames(3000, speech=True, level=ECHO)
    assert call.log == []


def test_the_measured_gate_can_be_turned_off() -> None:
    call = Call(BargeInSettings(pause_after_ms=0, max_echo_return_loss_db=15.0))
    call.bot_says("item_1", 5000)
    call.frames(1500)
    call.frames(400, speech=True, level=QUIET)
    assert call.log == []


# ---------- the provider's VAD ----------


def test_provider_speech_started_with_no_local_speech_is_a_false_interruption() -> None:
    call = Call()
    call.bot_says("item_1", 4000)
    call.frames(1000)
    started = call.now
    call.provider_speech_started()
    call.frames(780)  # quiet caller side; the bot goes on playing
    assert call.log == []
    call.frames(40)
    assert call.actions() == [ResumeTurn()]
    assert started + 800 <= call.log[0][0] <= started + 800 + FRAME
    call.frames(1000)
    call.tick(call.now + 5000)
    assert call.actions() == [ResumeTurn()]  # once
    assert call.policy.false_interruptions == 1 and call.policy.interruptions == []


def test_false_interruption_fires_from_tick_alone() -> None:
    policy = TurnPolicy()
    policy.bot_audio("item_1", 4000, 0)
    policy.played(20, BOT_LEVEL, 20)
    assert policy.provider_speech_started(40) == []
    assert policy.tick(839) == []
    assert policy.tick(840) == [ResumeTurn()]
    assert policy.tick(2000) == []


def test_a_cough_does_not_make_the_provider_event_genuine() -> None:
    call = Call()
    call.bot_says("item_1", 4000)
    call.frames(1000)
    call.provider_speech_started()
    call.frames(60, speech=True, level=LOUD)
    call.frames(1000)
    assert call.actions() == [ResumeTurn()]


def test_provider_speech_started_then_caller_speech_is_one_interruption() -> None:
    call = Call()
    call.bot_says("item_1", 4000)
    call.frames(1000)
    call.provider_speech_started()  # the provider is first this time
    call.frames(300)
    onset = call.now
    call.frames(600, speech=True, level=LOUD)
    call.provider_speech_started()  # a second event for the same speech
    call.frames(1500)
    call.tick(call.now + 5000)
    at = call.log[0][0]
    assert call.actions() == INTERRUPT + [Truncate("item_1", at)]
    assert at == onset + 160
    assert call.policy.false_interruptions == 0


def test_provider_event_during_a_short_local_run_waits_for_it() -> None:
    call = Call()
    call.bot_says("item_1", 4000)
    call.frames(1000)
    call.frames(100, speech=True, level=LOUD)
    call.provider_speech_started()  # local run only 100 ms long: not yet
    assert call.log == []
    call.frames(100, speech=True, level=LOUD)
    assert len(call.log) == 3 and not call.policy.last_interruption.by_provider  # type: ignore[union-attr]


def test_provider_event_confirms_a_run_that_began_before_the_bot_spoke() -> None:
    call = Call()
    call.frames(400, speech=True, level=LOUD)  # the caller is talking, bot silent
    call.bot_says("item_1", 3000)  # the bot starts over the caller
    call.frame(speech=True, level=LOUD)
    call.provider_speech_started()
    assert call.actions() == INTERRUPT + [Truncate("item_1", 20)]
    assert call.policy.last_interruption.by_provider  # type: ignore[union-attr]


def test_bot_starting_over_a_talking_caller_needs_150ms_of_overlap() -> None:
    call = Call()
    call.frames(400, speech=True, level=LOUD)
    call.bot_says("item_1", 3000)
    bot_start = call.now
    call.frames(400, speech=True, level=LOUD)
    assert call.log[0][0] == bot_start + 160


# ---------- the bot is silent: a normal turn ----------


def test_caller_speech_while_the_bot_is_silent_is_just_a_turn() -> None:
    call = Call()
    call.frames(2000, speech=True, level=LOUD)
    call.provider_speech_started()
    call.frames(1000)
    call.tick(call.now + 5000)
    assert call.log == []
    assert not call.policy.bot_speaking


def test_caller_speaking_right_after_the_bot_finished_is_a_turn() -> None:
    call = Call()
    call.bot_says("item_1", 1000)
    call._take(call.policy.response_done(call.now))
    call.frames(1200)  # played out and 200 ms of silence
    assert not call.policy.bot_speaking
    call.frames(1000, speech=True, level=LOUD)
    call.provider_speech_started()
    call.tick(call.now + 2000)
    assert call.log == []


def test_disabled_never_interrupts() -> None:
    call = Call(BargeInSettings(enabled=False))
    call.bot_says("item_1", 4000)
    call.frames(500)
    call.provider_speech_started()
    call.frames(1000, speech=True, level=LOUD)
    call.provider_speech_started()
    call.frames(1000)
    call.tick(call.now + 5000)
    assert call.log == []
    assert call.policy.bot_speaking


# ---------- invariants ----------


@pytest.mark.parametrize("seed", range(40))
def test_truncate_never_exceeds_generated_nor_repeats(seed: int) -> None:
    rng = random.Random(seed)
    call = Call(BargeInSettings(min_interrupt_ms=rng.choice([60, 100, 150, 300])))
    generated: dict[str, int] = {}
    item = 0
    for _ in range(400):
        r = rng.random()
        if r < 0.05:
            item += 1
            call.policy.reset_item(f"item_{item}")
        elif r < 0.35:
            ms = rng.choice([5, 20, 40, 100, 333])
            iid = f"item_{item}"
            if not call.policy.interrupted(iid):
                generated[iid] = generated.get(iid, 0) + ms
            call.bot_says(iid, ms, queued=ms + rng.choice([0, 0, 0, 7]))
        elif r < 0.38:
            call.provider_speech_started()
        elif r < 0.40:
            call._take(call.policy.response_done(call.now))
        speech = rng.random() < 0.45
        call.frame(speech, rng.choice([LOUD, ECHO, -5.0, -120.0]))
    truncates = [a for a in call.actions() if isinstance(a, Truncate)]
    assert len({t.item_id for t in truncates}) == len(truncates)
    for t in truncates:
        assert 0 <= t.audio_end_ms <= generated[t.item_id]
    # Each interruption is StopPlayout first, at most one of each action per instant.
    by_time: dict[int, list[Action]] = {}
    for when, a in call.log:
        by_time.setdefault(when, []).append(a)
    for acts in by_time.values():
        assert len(acts) == len(set(acts))
        for i, a in enumerate(acts):
            if isinstance(a, Truncate | CancelResponse):
                assert StopPlayout() in acts[:i]


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError):
        BargeInSettings(min_interrupt_ms=-1)
    with pytest.raises(ValueError):
        BargeInSettings(frame_ms=0)


# ---------- first stage: pause fast, confirm later ----------


def test_bot_pauses_within_a_few_frames_and_is_cut_when_the_caller_keeps_talking() -> None:
    call = Call(BargeInSettings())  # pause after 40 ms, interrupt at 150 ms
    call.bot_says("item_1", 4000)
    call.frames(1000)
    onset = call.now
    call.frames(400, speech=True, level=LOUD)
    (t_pause, pause), *rest = call.log
    assert pause == PausePlayout()
    assert onset + 40 <= t_pause <= onset + 40 + FRAME  # the caller hears the bot stop here
    played_at_pause = 1000 + (t_pause - onset)
    assert [a for _, a in rest] == INTERRUPT + [Truncate("item_1", played_at_pause)]
    assert onset + 150 <= rest[0][0] <= onset + 150 + FRAME


def test_a_cough_only_holds_the_bot_for_a_moment_and_nothing_is_lost() -> None:
    call = Call(BargeInSettings())
    call.bot_says("item_1", 3000)
    call.frames(1000)
    call.frames(80, speech=True, level=LOUD)  # a cough
    call.frames(200)
    assert call.actions() == [PausePlayout(), ResumePlayout()]
    call.frames(3000)
    assert call.played == 3000  # the held audio played on: the whole answer was heard
    assert not call.policy.interruptions


def test_no_pause_stage_when_it_would_not_come_before_the_interruption() -> None:
    call = Call(BargeInSettings(min_interrupt_ms=60, pause_after_ms=60))
    call.bot_says("item_1", 2000)
    call.frames(500)
    call.frames(200, speech=True, level=LOUD)
    assert call.actions()[:2] == INTERRUPT
