"""The end-of-turn policy: a finished sentence ends the caller's turn after a short pause; words
that announce more keep the line open up to the session's silence_duration_ms, never longer."""

from __future__ import annotations

import pytest

from telephony_bot.local_engine.turn_end import TurnEndPolicy, completeness


@pytest.mark.parametrize(
    "text",
    [
        "What is your address?",
        "When are you open?",
        "Yes, that's right.",
        "No.",
        "Transfer me to a human agent, please.",
        "I'd like that.",
        "Can I speak to someone in cardiology?",
    ],
)
def test_a_finished_sentence_ends_after_a_short_pause(text: str) -> None:
    assert completeness(text) == "complete"
    assert TurnEndPolicy(max_ms=500, short_ms=250).silence_needed_ms(text) == 250


@pytest.mark.parametrize(
    "text",
    [
        "I would like to book an appointment and",
        "I would like to book an appointment and...",
        "I want to move my appointment to the",
        "Um.",
        "So...",
        "My number is",
        "My account number is 4127.",  # callers pause between digit groups
        "I need",
        "Well, I was thinking,",
        "It's about my, uh",
        "Let me",
    ],
)
def test_words_that_announce_more_wait_the_whole_silence(text: str) -> None:
    assert completeness(text) == "unfinished"
    assert TurnEndPolicy(max_ms=800, short_ms=250).silence_needed_ms(text) == 800


def test_words_without_a_sentence_end_wait_halfway() -> None:
    text = "I want to report a leak in the basement"
    assert completeness(text) == "open"
    assert TurnEndPolicy(max_ms=600, short_ms=200).silence_needed_ms(text) == 400


@pytest.mark.parametrize("text", [None, "", "  ", "..."])
def test_no_words_yet_waits_the_whole_silence(text: str | None) -> None:
    assert TurnEndPolicy(max_ms=500).silence_needed_ms(text) == 500


def test_the_session_silence_is_an_upper_bound_even_for_a_finished_sentence() -> None:
    policy = TurnEndPolicy(max_ms=200, short_ms=250)
    assert policy.silence_needed_ms("What is your address?") == 200
    assert policy.silence_needed_ms("and") == 200
