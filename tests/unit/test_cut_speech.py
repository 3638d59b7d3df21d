"""What the bot resumes after a backchannel cut it off, and what counts as one."""

from __future__ import annotations

import pytest

from telephony_bot.local_engine.cut_speech import is_backchannel, resumes, unheard

CLAUSES = ["Hello and welcome.", "We open at eight,", "and close at six."]
STARTS = [0.0, 1200.0, 2600.0]


@pytest.mark.parametrize(
    "text", ["Mm-hmm.", "mm hmm", "Uh huh, yeah.", "Okay.", "I see.", "go on", "", "Hmm?"]
)
def test_listening_noises_are_backchannels(text: str) -> None:
    assert is_backchannel(text)


@pytest.mark.parametrize(
    "text",
    ["okay but what time", "no", "yes please book it for monday", "nurse", "stop", "wait what"],
)
def test_words_that_mean_something_are_not(text: str) -> None:
    assert not is_backchannel(text)


def test_resumes_from_the_clause_being_heard() -> None:
    assert unheard(CLAUSES, STARTS, heard_ms=1500, generated_ms=4000, complete=True) == (
        "We open at eight, and close at six."
    )
    assert unheard(CLAUSES, STARTS, heard_ms=300, generated_ms=4000, complete=True) == (
        " ".join(CLAUSES)
    )


def test_clauses_not_synthesised_yet_are_still_resumed() -> None:
    # cut while only the first clause had been made
    assert unheard(CLAUSES, [0.0], heard_ms=900, generated_ms=1100, complete=False) == (
        " ".join(CLAUSES)
    )


def test_a_cut_in_the_last_words_is_an_answer_not_an_interruption() -> None:
    assert unheard(CLAUSES, STARTS, heard_ms=3500, generated_ms=4000, complete=True) == ""
    # the same point of an item still being made is not its end
    assert unheard(CLAUSES, STARTS, heard_ms=3500, generated_ms=4000, complete=False) == (
        "and close at six."
    )


def test_a_short_turn_nothing_understood_resumes_a_long_one_or_a_meant_one_does_not() -> None:
    assert resumes("Amen, them.", 1020, understood=False)  # Whisper's "mm hmm"
    assert not resumes("Amen, them.", 1020, understood=True)
    assert not resumes("I would like to know about parking", 1400, understood=False)
    assert not resumes("what", 3000, understood=False)
