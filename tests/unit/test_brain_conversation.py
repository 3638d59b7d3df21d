"""The offline brain holding a conversation: what a caller says while a tool runs is not
lost, the way out to a person works in every state (`anywhere`), "say that again" repeats,
and a guessed intent asks for what is missing and reads the caller's own values back
instead of quoting the plan's example."""

from __future__ import annotations

from typing import Any

import pytest

from telephony_bot.dialplan.flow import Flow, check_flow
from telephony_bot.local_engine.brain import CallTool, Say, Transfer

from . import test_brain
from .test_brain import Call, flow_of, schemas

plans = test_brain.plans  # the example plans, as a fixture here too

CUSTOMER = {"first_name": "Maria", "id": "C-1001", "pin_set": True}


def test_a_person_asked_for_during_the_lookup_is_put_through(plans: dict[str, Any]) -> None:
    call = Call(flow_of(plans["bank"]), tools=schemas(plans["bank"]))
    assert call.call().name == "lookup_customer"
    assert call.runner.hear("I want to talk to a person") == []  # kept while the tool runs
    assert call.tool(CUSTOMER) == [Transfer("advisor")]  # not asked for a PIN first


def test_a_pin_said_during_the_lookup_is_checked_at_once(plans: dict[str, Any]) -> None:
    call = Call(flow_of(plans["bank"]), tools=schemas(plans["bank"]))
    call.runner.hear("my pin is four three two one")
    assert call.tool(CUSTOMER) == [
        CallTool("flow-2", "verify_pin", {"customer_id": "C-1001", "pin": "4321"})
    ]


def test_words_not_understood_during_the_lookup_leave_the_question_asked(
    plans: dict[str, Any],
) -> None:
    call = Call(flow_of(plans["bank"]), tools=schemas(plans["bank"]))
    call.runner.hear("hello?")
    call.tool(CUSTOMER)
    assert call.said().startswith("Welcome to Example Bank, Maria. For your security")
    assert call.runner.state == "identify"
    call.hear("1234")  # the next answer is the PIN's, not a retry
    assert call.call().name == "verify_pin"


def test_a_real_person_from_the_pin_prompt_and_every_later_state(plans: dict[str, Any]) -> None:
    call = Call(flow_of(plans["bank"]), tools=schemas(plans["bank"]))
    call.tool(CUSTOMER)
    assert call.hear("let me talk to a real person please") == [Transfer("advisor")]

    call = Call(flow_of(plans["bank"]), tools=schemas(plans["bank"]))
    call.tool(CUSTOMER)
    call.hear("1234")
    call.tool({"ok": False}, ok=False)  # wrong_pin: a state without a person intent of its own
    assert call.runner.state == "wrong_pin"
    assert call.hear("can I speak to somebody") == [Transfer("advisor")]


def test_say_that_again_repeats_and_keeps_the_open_question(plans: dict[str, Any]) -> None:
    call = Call(flow_of(plans["hospital"]), tools=schemas(plans["hospital"]))
    call.hear("cardiology")
    question = call.said()
    assert question == "Which day?"
    assert call.hear("sorry, can you say that again?") == [Say(question)]
    call.hear("on Tuesday")  # still the answer to "Which day?"
    assert call.said() == "Cardiology on Tuesday 31 March, is that right?"
    assert call.hear("what was that") == [Say("Cardiology on Tuesday 31 March, is that right?")]
    call.hear("yes")
    assert call.call().arguments == {"department": "cardiology", "day": "2026-03-31"}


def test_a_guess_asks_for_the_missing_slot_and_reads_back_the_callers_values(
    plans: dict[str, Any],
) -> None:
    call = Call(flow_of(plans["hospital"]), tools=schemas(plans["hospital"]))
    call.hear("could I come in on Tuesday")  # a guess: not the plan's words
    said = call.said()
    assert "did you mean" not in said and "Monday" not in said, said
    assert said == "Which department: general, cardiology, radiology or orthopedics?"
    call.hear("radiology")
    assert call.said() == "Radiology on Tuesday 31 March, is that right?"  # the caller's values


def test_a_guess_without_a_confirm_text_reads_the_values_back() -> None:
    flow = Flow.model_validate(
        {
            "start": "ask",
            "states": {
                "ask": {
                    "say": "What can I do?",
                    "intents": [
                        {
                            "name": "order",
                            "examples": ["I would like to order three pizzas for delivery"],
                            "slots": {"count": "number"},
                            "then": "hangup",
                        }
                    ],
                }
            },
        }
    )
    call = Call(flow)
    call.hear("three for delivery")
    assert call.said() == "3: is that right?"
    assert call.hear("no") == [Say("What can I do?")]


@pytest.mark.parametrize("name", ["repeat", "hangup"])
def test_reserved_targets_are_no_state_names(name: str) -> None:
    flow = Flow.model_validate({"start": name, "states": {name: {"say": "Hi.", "then": "hangup"}}})
    problems = check_flow(flow, tools=[], transfer_targets=[])
    assert any("reserved" in p.message and p.loc == ("states", name) for p in problems)


def test_anywhere_targets_and_tools_are_checked() -> None:
    flow = Flow.model_validate(
        {
            "start": "a",
            "anywhere": [
                {"name": "person", "examples": ["a person"], "then": "transfer:desk"},
                {"name": "x", "examples": ["x"], "tool": {"name": "nope"}, "then": "gone"},
            ],
            "states": {
                "a": {"say": "Hi.", "intents": [{"name": "y", "examples": ["y"], "then": "a"}]}
            },
        }
    )
    problems = {p.loc: p.message for p in check_flow(flow, tools=[], transfer_targets=[])}
    assert "unknown transfer target 'desk'" in problems[("anywhere", 0, "then")]
    assert "'nope' is not one of this route's tools" in problems[("anywhere", 1, "tool", "name")]
    assert "unknown state 'gone'" in problems[("anywhere", 1, "then")]


def test_understands_changes_nothing_and_knows_the_open_question(plans: dict[str, Any]) -> None:
    call = Call(flow_of(plans["hospital"]), tools=schemas(plans["hospital"]))
    assert not call.runner.understands("Amen, them.")
    assert call.runner.understands("I have chest pain")
    call.hear("cardiology")  # "Which day?"
    assert call.runner.understands("friday")
    assert call.said() == "Which day?"  # nothing was said or changed by asking
    call.hear("friday")
    assert call.said() == "Cardiology on Friday 3 April, is that right?"


# ---------- callers' own words, matched by meaning (the packaged embedding model) ----------


@pytest.fixture(scope="module")
def meaning() -> Any:
    from telephony_bot.local_engine.meaning import shared

    return shared()


def by_meaning(flow: Flow, meaning: Any, tools: Any = None) -> Call:
    call = Call(flow, tools=tools)
    call.runner.meaning = meaning
    return call


@pytest.mark.parametrize(
    "words",
    [
        "yeah hi, um, I was hoping to get my knee looked at sometime next week",
        "could I come in to see someone on Tuesday",
        "I'd like to make a booking with the heart clinic please",
    ],
)
def test_a_booking_in_the_callers_own_words_goes_on_to_the_booking(
    plans: dict[str, Any], meaning: Any, words: str
) -> None:
    call = by_meaning(flow_of(plans["hospital"]), meaning)
    call.hear(words)
    said = call.said()
    assert said.startswith(("Which department", "Which day")), said
    assert call.runner._pending is not None and call.runner._pending.intent.name == "book"


@pytest.mark.parametrize(
    ("plan", "words", "to"),
    [
        ("hospital", "my heart's been racing all night and I feel really dizzy", "nurse"),
        ("hospital", "can I speak with one of the nurses on duty", "nurse"),
        ("bank", "I think someone took my wallet, my debit card is gone", "card_block"),
        ("bank", "I can't find my bank card anywhere, can you cancel it", "card_block"),
        ("bank", "I'd rather speak to someone in person about this", "advisor"),
        ("bank", "can you put me through to an actual human", "advisor"),
    ],
)
def test_own_words_reach_the_right_person(
    plans: dict[str, Any], meaning: Any, plan: str, words: str, to: str
) -> None:
    call = by_meaning(flow_of(plans[plan]), meaning)
    if plan == "bank":
        call.tool(CUSTOMER)
    assert call.hear(words) == [Transfer(to)], call.said()


def test_words_about_something_else_are_not_forced_into_an_intent(
    plans: dict[str, Any], meaning: Any
) -> None:
    call = by_meaning(flow_of(plans["hospital"]), meaning)
    call.hear("what's the weather going to be like in Berlin")
    assert call.said().startswith("Sorry, I didn't catch that."), call.said()


def test_a_yes_in_other_words_is_not_taken_for_the_patients_name(
    plans: dict[str, Any], meaning: Any
) -> None:
    call = by_meaning(flow_of(plans["hospital"]), meaning)
    call.hear("cardiology on monday")
    call.hear("yes")
    call.tool([{"time": "09:30", "doctor": "Dr. Weber"}])
    call.hear("perfect, go ahead and put me down for that one")
    assert call.said() == "What is the patient name?"  # asked, not "Perfect Go Ahead..."
    call.hear("maria lopez")
    assert call.said() == "What is the date of birth?"
    call.hear("the fourth of July nineteen ninety")
    assert "for Maria Lopez, born 4 July 1990" in call.said()


def test_a_choice_meant_but_not_named_is_read_back(plans: dict[str, Any], meaning: Any) -> None:
    call = by_meaning(flow_of(plans["hospital"]), meaning)
    call.hear("I need an x-ray on Friday")
    assert call.said() == "Radiology on Friday 3 April, is that right?"
    call = by_meaning(flow_of(plans["hospital"]), meaning)
    call.hear("can I book something for Monday")
    assert call.said().startswith("Which department")
    call.hear("it's for my knee")
    assert call.said() == "Orthopedics on Monday 30 March, is that right?"
    call.hear("no")  # a wrong guess is caught by the read-back: asked again
    assert "Which department" in call.said()


def test_a_vague_choice_is_asked_for_not_guessed(plans: dict[str, Any], meaning: Any) -> None:
    call = by_meaning(flow_of(plans["hospital"]), meaning)
    call.hear("can I book something for Monday")
    call.hear("just a normal doctor I suppose")
    assert call.said().startswith(("Sorry, which department", "Which department")), call.said()


def test_an_optional_slot_is_taken_when_said_and_never_asked_for(plans: dict[str, Any]) -> None:
    call = Call(flow_of(plans["field_inspection"], "field-inspection"))
    call.hear("SUB-0412")
    call.tool({"name": "Substation North"})
    call.hear("Yeah, it passed, but with a couple of remarks.")  # every word, in order
    call.hear("Transformer is leaking oil, that's critical.")  # no note: not asked for one
    assert call.said() == "Is a follow-up visit needed?"
    call.hear("yes")
    assert call.said() == "Site SUB-0412, result pass with remarks, follow-up yes. Shall I log it?"


def test_a_name_is_found_in_a_sentence_that_says_more(plans: dict[str, Any], meaning: Any) -> None:
    call = by_meaning(flow_of(plans["hospital"]), meaning)
    call.hear("orthopedics on Thursday")
    call.hear("yes")
    call.tool([{"time": "09:30", "doctor": "Dr. Weber"}])
    call.hear(
        "That works. The patient is Peter Brown, date of birth fourth of July nineteen sixty."
    )
    assert "for Peter Brown, born 4 July 1960" in call.said(), call.said()


@pytest.mark.parametrize(
    ("words", "pin"),
    [("Okay, my pin is for 3 2 1.", "4321"), ("hmm, then try for 3 to 1", "4321")],
)
def test_digits_the_recogniser_wrote_as_words_still_make_the_pin(
    plans: dict[str, Any], words: str, pin: str
) -> None:
    call = Call(flow_of(plans["bank"]), tools=schemas(plans["bank"]))
    call.tool(CUSTOMER)
    call.hear(words)
    assert call.call().arguments["pin"] == pin


def test_a_guessed_pin_is_never_read_back(plans: dict[str, Any], meaning: Any) -> None:
    call = by_meaning(flow_of(plans["bank"]), meaning, tools=schemas(plans["bank"]))
    call.tool(CUSTOMER)
    call.hear("Right, yes, 4 3 2 1. That's my code.")
    assert "4 3 2 1" not in call.said() and "4321" not in call.said(), call.said()
    assert call.call().name == "verify_pin"


def test_a_pin_said_as_the_number_is_not_taken_for_a_goodbye(
    plans: dict[str, Any], meaning: Any
) -> None:
    call = by_meaning(flow_of(plans["bank"]), meaning, tools=schemas(plans["bank"]))
    call.tool(CUSTOMER)
    call.hear("The number is 4 3 2 1.")
    assert call.call().arguments["pin"] == "4321"
    call.tool({"ok": False}, ok=False)
    call.hear("Sorry, I mean 4 3 2 2")
    assert call.call().arguments["pin"] == "4322"


def test_a_vague_likeness_is_not_understanding(plans: dict[str, Any], meaning: Any) -> None:
    call = by_meaning(flow_of(plans["bank"]), meaning, tools=schemas(plans["bank"]))
    call.tool(CUSTOMER)
    assert not call.runner.understands("remember")  # a backchannel misheard: resume
    assert call.runner.understands("let me talk to a real person")
