"""The offline brain: caller conversations over the example plans' flows, with ASR-style
text (Whisper tiny.en: odd case, punctuation, numbers as words or digits), and the slot
extractors on their own. Pure: no I/O besides reading the plan files, no clock."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from telephony_bot import keypad
from telephony_bot.dialplan.flow import Flow
from telephony_bot.dialplan.loader import load
from telephony_bot.local_engine import slots as sx
from telephony_bot.local_engine.brain import (
    Action,
    CallTool,
    FlowRunner,
    Hangup,
    Say,
    Transfer,
)

DIALPLANS = Path(__file__).resolve().parents[2] / "dialplans"
NOW = datetime(2026, 3, 28, 21, 0)  # a Saturday evening: the hospital's after-hours line
CALLER = "+4917612345678"


@pytest.fixture
def plans(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    for var in ("HOSPITAL_API_TOKEN", "BANK_API_TOKEN", "FIELD_API_TOKEN"):
        monkeypatch.setenv(var, "test-token")
    return {
        name: load(DIALPLANS / f"{name}.yaml").plan
        for name in ("hospital", "bank", "public_service", "field_inspection")
    }


def flow_of(plan: Any, route: str | None = None) -> Flow:
    flow = plan.route(route).flow if route else plan.defaults.flow
    assert flow is not None
    return flow


def schemas(plan: Any) -> dict[str, dict[str, Any]]:
    return {name: tool.parameters for name, tool in plan.tools.items()}


class Call:
    """One caller on one flow; `said()` is the text the bot spoke in the last step."""

    def __init__(self, flow: Flow, *, tools: dict[str, Any] | None = None, now: datetime = NOW):
        self.runner = FlowRunner(flow, now=now, variables={"caller": CALLER}, tools=tools)
        self.last: list[Action] = self.runner.start()

    def hear(self, text: str) -> list[Action]:
        self.last = self.runner.hear(text)
        return self.last

    def tool(self, result: Any, ok: bool = True) -> list[Action]:
        call = self.call()
        self.last = self.runner.tool_result(call.call_id, ok, result)
        return self.last

    def call(self) -> CallTool:
        calls = [a for a in self.last if isinstance(a, CallTool)]
        assert len(calls) == 1, self.last
        return calls[0]

    def said(self) -> str:
        return " ".join(a.text for a in self.last if isinstance(a, Say))


# ---------- hospital ----------

FREE = [{"time": "09:30", "doctor": "Dr. Weber"}, {"time": "11:00", "doctor": "Dr. Brandt"}]


def test_hospital_books_an_appointment(plans: dict[str, Any]) -> None:
    call = Call(flow_of(plans["hospital"]), tools=schemas(plans["hospital"]))
    assert "Which department, and which day?" in call.said()

    call.hear("i'd like to book an appointment for monday at nine thirty")
    assert call.said() == "Which department: general, cardiology, radiology or orthopedics?"
    call.hear("Cardiology, please.")
    assert call.said() == "Cardiology on Monday 30 March, is that right?"  # the intent's confirm
    call.hear("Yeah.")
    assert call.call() == CallTool(
        "flow-1", "check_availability", {"department": "cardiology", "day": "2026-03-30"}
    )
    call.tool(FREE)
    assert call.said().startswith("The first free time is 09:30 with Dr. Weber. Shall I book it?")
    assert call.runner.state == "offer"

    call.hear("yes that's fine")
    assert call.said() == "What is the patient name?"
    call.hear("anna schmidt")
    assert call.said() == "What is the date of birth?"
    call.hear("the third of may nineteen eighty")
    assert call.said() == (
        "Booking cardiology on Monday 30 March at 09:30 for Anna Schmidt, born 3 May 1980. "
        "Shall I book it?"
    )
    call.hear("Yes, that's right.")
    book = call.call()
    assert book.name == "book_slot"
    assert book.arguments == {
        "department": "cardiology",
        "day": "2026-03-30",
        "time": "09:30",
        "patient_name": "Anna Schmidt",
        "date_of_birth": "1980-05-03",
        "phone": CALLER,
    }
    actions = call.tool({"reference": "HX-4821", "time": "09:30"})
    assert "Your reference is HX-4821." in call.said()
    assert "Monday 30 March at 09:30" in call.said()
    assert actions[-1] == Hangup("completed")
    assert call.runner.done
    assert call.runner.slots["day"] == "2026-03-30"
    assert call.hear("hello?") == []


def test_hospital_all_details_in_one_breath(plans: dict[str, Any]) -> None:
    call = Call(flow_of(plans["hospital"]))
    call.hear("Radiology next Tuesday, please.")
    assert call.said() == "Radiology on Tuesday 31 March, is that right?"
    call.hear("correct")
    assert call.call().arguments == {"department": "radiology", "day": "2026-03-31"}
    call.tool(FREE)
    call.hear("Yes please, my name is Jonas Weber, born 12.01.1975.")
    assert call.said().startswith("Booking radiology on Tuesday 31 March at 09:30 for Jonas Weber")
    call.hear("yep")
    args = call.call().arguments
    assert (args["patient_name"], args["date_of_birth"]) == ("Jonas Weber", "1975-01-12")


def test_hospital_chest_pain_goes_to_the_nurse(plans: dict[str, Any]) -> None:
    call = Call(flow_of(plans["hospital"]))
    assert call.hear("I have chest pain!") == [Transfer("nurse")]
    assert call.runner.done


def test_hospital_gibberish_falls_back_then_transfers(plans: dict[str, Any]) -> None:
    call = Call(flow_of(plans["hospital"]))  # fallback: max_retries 2, then transfer:nurse
    sorry = "Sorry, I didn't catch that. Which department and which day would you like?"
    assert call.hear("blorp fzzt") == [Say(sorry)]
    assert call.hear("hmm the weather is") == [Say(sorry)]
    assert call.hear("zzz") == [Transfer("nurse")]


def test_hospital_unsure_match_asks_first(plans: dict[str, Any]) -> None:
    call = Call(flow_of(plans["hospital"]))
    assert call.hear("my chest hurts") == [Say('Sorry, did you mean "I have chest pain"?')]
    assert call.hear("yes") == [Transfer("nurse")]

    call = Call(flow_of(plans["hospital"]))
    call.hear("my chest hurts")
    # "no" asks again (the fallback, counted as a retry)
    assert call.said().startswith("Sorry, did you mean")
    assert call.hear("no") == [
        Say("Sorry, I didn't catch that. Which department and which day would you like?")
    ]
    call.hear("chest")
    assert call.said() == 'Sorry, did you mean "I have chest pain"?'
    # not a yes/no answer: taken as a new request
    call.hear("orthopaedics tomorrow please")
    assert call.said() == "Orthopedics on Sunday 29 March, is that right?"


def test_hospital_no_to_the_confirmation_asks_again(plans: dict[str, Any]) -> None:
    call = Call(flow_of(plans["hospital"]))
    call.hear("cardiology on monday")
    call.hear("no")
    assert "Which department, and which day?" in call.said()  # the state's question again
    call.hear("general, the fifth of april")
    assert call.said() == "General on Sunday 5 April, is that right?"
    call.hear("No, radiology on friday.")  # a correction in the same breath
    assert call.said() == "Radiology on Friday 3 April, is that right?"


def test_hospital_other_day_and_tool_failure(plans: dict[str, Any]) -> None:
    call = Call(flow_of(plans["hospital"]))
    call.hear("cardiology tomorrow")
    call.hear("yes")
    # check_availability has no on_error: its failure is the state's fallback
    call.tool({"error": "timeout"}, ok=False)
    assert call.said().startswith("Sorry, I didn't catch that.")
    assert call.runner.state == "welcome"
    call.hear("cardiology tomorrow")
    call.hear("yes")
    call.tool(FREE)
    call.hear("another day please")
    assert call.runner.state == "welcome"
    assert "Which department, and which day?" in call.said()


def test_hospital_changing_mind_while_asked_for_a_slot(plans: dict[str, Any]) -> None:
    call = Call(flow_of(plans["hospital"]))
    call.hear("book an appointment")
    assert call.said() == "Which department: general, cardiology, radiology or orthopedics?"
    call.hear("cardiologie")  # ASR spelling
    assert call.said() == "Which day?"
    assert call.hear("actually i need to speak to a nurse") == [Transfer("nurse")]


# ---------- bank ----------

ACCOUNTS = [
    {
        "name": "current account",
        "amount": 1234.56,
        "currency": "EUR",
        "amount_words": "one thousand two hundred and thirty-four euros and fifty-six cents",
    }
]


def test_bank_balance(plans: dict[str, Any]) -> None:
    call = Call(flow_of(plans["bank"]), tools=schemas(plans["bank"]))
    # the caller is looked up before anything is said
    assert call.last == [CallTool("flow-1", "lookup_customer", {"phone": CALLER})]
    assert call.runner.hear("hello?") == []  # nothing is heard while a tool runs
    call.tool({"first_name": "Maria", "id": "C-1001", "pin_set": True})
    assert call.said().startswith("Welcome to Example Bank, Maria. For your security")

    call.hear("one two three four")
    # the tool declares the PIN a string: "1234", not 1234
    assert call.call() == CallTool("flow-2", "verify_pin", {"customer_id": "C-1001", "pin": "1234"})
    balance = call.tool({"ok": True})
    assert balance == [CallTool("flow-3", "get_balance", {"customer_id": "C-1001"})]
    call.tool(ACCOUNTS)
    assert call.said() == (
        "Your current account: one thousand two hundred and thirty-four euros and fifty-six "
        "cents. Again, that is 1234.56 EUR. Would you like to hear it again?"
    )
    call.hear("Yes please.")
    assert call.call().name == "get_balance"  # `repeat` goes back to the state: asked again
    call.tool(ACCOUNTS)
    actions = call.hear("No, thanks.")
    assert actions == [Say("Thank you for calling Example Bank. Goodbye!"), Hangup("completed")]


def test_bank_wrong_pin_then_right(plans: dict[str, Any]) -> None:
    call = Call(flow_of(plans["bank"]), tools=schemas(plans["bank"]))
    call.tool({"first_name": "Maria", "id": "C-1001"})
    call.hear("Uh, my PIN is 0 4 1 2.")
    assert call.call().arguments["pin"] == "0412"  # the leading zero is kept
    call.tool({"ok": False, "tries_left": 1}, ok=False)  # on_error: wrong_pin
    assert call.said() == "That PIN was not right. Please try once more, digit by digit."
    call.hear("oh four one three")
    assert call.call().arguments["pin"] == "0413"
    assert call.tool({"ok": True})[0] == CallTool(
        "flow-4", "get_balance", {"customer_id": "C-1001"}
    )


def test_bank_pin_is_a_string_of_digits_even_without_tool_schemas(plans: dict[str, Any]) -> None:
    call = Call(flow_of(plans["bank"]))
    call.tool({"first_name": "Maria", "id": "C-1001"})
    call.hear("It's 9 8 7 6.")
    assert call.call().arguments == {"customer_id": "C-1001", "pin": "9876"}  # a digits slot


def test_bank_pin_typed_on_the_keypad_and_zero_for_an_advisor(plans: dict[str, Any]) -> None:
    call = Call(flow_of(plans["bank"]), tools=schemas(plans["bank"]))
    call.tool({"first_name": "Maria", "id": "C-1001"})
    assert "or type it and press hash" in call.said()
    call.hear(keypad.pressed_text("0412", "#"))
    assert call.call() == CallTool("flow-2", "verify_pin", {"customer_id": "C-1001", "pin": "0412"})
    call = Call(flow_of(plans["bank"]))
    call.tool({"first_name": "Maria", "id": "C-1001"})
    assert call.hear(keypad.pressed_text("041", "#")) == [  # three digits are no PIN
        Say("Sorry, I need your four-digit telephone PIN, digit by digit.")
    ]
    assert call.hear(keypad.pressed_text("0")) == [Transfer("advisor")]


def test_bank_unknown_number_lost_card_and_retries(plans: dict[str, Any]) -> None:
    call = Call(flow_of(plans["bank"]))
    actions = call.tool({"error": "404"}, ok=False)  # on_error: unknown_number
    assert actions[-1] == Transfer("advisor")
    assert call.said().startswith("I'm sorry, the balance line works only from")

    call = Call(flow_of(plans["bank"]))
    call.tool({"first_name": "Maria", "id": "C-1001"})
    assert call.hear("i lost my card") == [Transfer("card_block")]

    call = Call(flow_of(plans["bank"]))
    call.tool({"first_name": "Maria", "id": "C-1001"})
    welcome = call.said()
    again = [Say("Sorry, I need your four-digit telephone PIN, digit by digit.")]
    assert call.hear("what?") == [Say(welcome)]  # `anywhere`: said again, not a retry
    assert call.hear("huh") == again
    assert call.hear("hello") == again
    assert call.hear("mmm") == [Transfer("advisor")]


def test_bank_missing_tool_values_render_empty(plans: dict[str, Any]) -> None:
    call = Call(flow_of(plans["bank"]))
    call.tool({})  # no first_name: "Welcome to Example Bank, ." is tidied up
    assert call.said().startswith("Welcome to Example Bank. For your security")


# ---------- field inspection ----------


def test_field_inspection_record(plans: dict[str, Any]) -> None:
    plan = plans["field_inspection"]
    call = Call(flow_of(plan, "field-inspection"), tools=schemas(plan))
    call.hear("Site S U B 0 4 1 2.")
    assert call.call().arguments == {"site_id": "SUB-0412"}
    call.tool({"name": "Substation Nord", "address": "Ringstr. 4"})
    assert call.said().startswith("Substation Nord. What was the result")
    call.hear("It passed with remarks.")
    call.hear("Transformer oil leak, major, seal is weeping.")
    assert call.said() == "Is a follow-up visit needed?"
    call.hear("yes")
    assert call.said() == "Site SUB-0412, result pass with remarks, follow-up yes. Shall I log it?"
    call.hear("Yes, log it.")
    assert call.call().arguments == {
        "site_id": "SUB-0412",
        "inspector_phone": CALLER,
        "result": "pass_with_remarks",
        "defects": [
            {"component": "Transformer oil leak", "severity": "major", "note": "seal is weeping"}
        ],
        "follow_up_required": True,
    }
    call.tool({"number": "INS-2026-00417"})
    assert call.said() == "Logged. Your record number is INS-2026-00417. Thank you, goodbye!"
    assert call.last[-1] == Hangup("completed")


def test_field_inspection_without_defects(plans: dict[str, Any]) -> None:
    plan = plans["field_inspection"]
    call = Call(flow_of(plan, "field-inspection"), tools=schemas(plan))
    call.hear("sub dash zero four one two")
    call.tool({"name": "Substation Nord"})
    call.hear("Failed.")
    call.hear("No defects.")
    call.hear("no follow-up")
    assert call.said() == "Site SUB-0412, result fail, follow-up no. Shall I log it?"
    call.hear("correct")
    args = call.call().arguments
    assert args["defects"] == []  # the defect template had no values at all: left out
    assert args["follow_up_required"] is False


def test_field_unknown_caller_is_refused(plans: dict[str, Any]) -> None:
    call = Call(flow_of(plans["field_inspection"], "field-unknown-caller"))
    assert call.last[-1] == Hangup("completed")
    assert call.said().startswith("This line is only for registered field inspectors")


# ---------- public service ----------


def test_public_service_english(plans: dict[str, Any]) -> None:
    plan = plans["public_service"]
    call = Call(flow_of(plan, "citizen-en"), tools=schemas(plan))
    call.hear("How do I get a new passport?")
    assert call.call().arguments == {"service": "passport", "lang": "en"}
    call.tool({"summary": "Bring a photo; the fee is 70 euros."})
    assert call.said() == "Bring a photo; the fee is 70 euros. Is there anything else?"
    call.hear("yes, another question")
    assert call.runner.state == "start"
    call.hear("when is the bin collected")  # the intent, but no service named
    assert call.said().startswith("Which service: id card, passport, registration")
    call.hear("waste collection")
    assert call.call().arguments == {"service": "waste_collection", "lang": "en"}


def test_public_service_german_person(plans: dict[str, Any]) -> None:
    call = Call(flow_of(plans["public_service"], "citizen-de"))
    assert call.hear("Mitarbeiter bitte.") == [Transfer("desk")]


# ---------- runner mechanics ----------


def small_flow(data: dict[str, Any]) -> Flow:
    return Flow.model_validate(data)


def test_templates_never_raise() -> None:
    flow = small_flow(
        {
            "start": "a",
            "states": {
                "a": {
                    "say": "Hi {nobody} {caller} {header.X-Tier} {{literal}} {weekday} {date} "
                    "{time} {x.y.0.z}.",
                    "then": "hangup",
                }
            },
        }
    )
    runner = FlowRunner(flow, now=NOW, variables={"caller": "+49301", "header.x-tier": "gold"})
    actions = runner.start()
    assert actions == [
        Say("Hi +49301 gold {literal} Saturday 2026-03-28 21:00."),
        Hangup("completed"),
    ]


def test_flow_loop_and_state_tool_failure() -> None:
    loop = small_flow(
        {"start": "a", "states": {"a": {"say": "A", "then": "b"}, "b": {"then": "a"}}}
    )
    actions = FlowRunner(loop, now=NOW).start()
    assert isinstance(actions[-1], Hangup) and "loop" in actions[-1].reason

    flow = small_flow(
        {
            "start": "a",
            "states": {
                "a": {
                    "tool": {"name": "look", "args": {"n": "{caller}"}, "result": "r"},
                    "say": "Got {r.v}.",
                    "fallback": {"then": "transfer:desk"},
                    "then": "hangup",
                }
            },
        }
    )
    runner = FlowRunner(flow, now=NOW, variables={"caller": "+1"})
    assert runner.start() == [CallTool("flow-1", "look", {"n": "+1"})]
    assert runner.tool_result("flow-9", True, {}) == []  # a stale id is ignored
    assert runner.tool_result("flow-1", False, None) == [Transfer("desk")]


def test_typed_arguments() -> None:
    flow = small_flow(
        {
            "start": "a",
            "states": {
                "a": {
                    "intents": [
                        {
                            "name": "order",
                            "examples": ["I want 3 boxes delivered on monday at noon"],
                            "slots": {"count": "number", "day": "date", "at": "time"},
                            "tool": {
                                "name": "order",
                                "args": {
                                    "count": "{count}",
                                    "day": "{day}",
                                    "at": "{at}",
                                    "note": "{count} boxes on {day}",
                                    "fixed": 7,
                                    "missing": "{nothing}",
                                },
                            },
                            "then": "hangup",
                        }
                    ]
                }
            },
        }
    )
    runner = FlowRunner(flow, now=NOW)
    runner.start()
    actions = runner.hear(
        "I want four thousand two hundred boxes delivered next Monday at half past two"
    )
    assert actions == [
        CallTool(
            "flow-1",
            "order",
            {
                "count": 4200,
                "day": "2026-03-30",
                "at": "14:30",
                "note": "4200 boxes on 2026-03-30",
                "fixed": 7,
            },
        )
    ]
    assert runner.slots == {"count": 4200, "day": "2026-03-30", "at": "14:30"}


def test_hear_before_start_is_an_error() -> None:
    runner = FlowRunner(small_flow({"start": "a", "states": {"a": {}}}), now=NOW)
    with pytest.raises(RuntimeError):
        runner.hear("hello")


# ---------- slot extraction ----------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("twelve", 12),
        ("1 2 3 4", 1234),
        ("One, two, three, four.", 1234),
        ("four thousand two hundred", 4200),
        ("two hundred and fifty", 250),
        ("a hundred", 100),
        ("twenty-one", 21),
        ("It's 9876.", 9876),
        ("4,200", 4200),
        ("double four one two", 4412),
        ("no numbers here", None),
    ],
)
def test_numbers(text: str, value: int | None) -> None:
    assert sx.parse_number(text) == value


def test_number_keeps_leading_zeros_in_text() -> None:
    found = sx.find_number(sx.tokenize("zero four one two"))
    assert found is not None and (found.value, found.text) == (412, "0412")


WEDNESDAY = date(2026, 4, 29)


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("monday", "2026-05-04"),
        ("Next Monday, please.", "2026-05-04"),  # across the month end
        ("this wednesday", "2026-04-29"),  # "this" may be today
        ("wednesday", "2026-05-06"),  # a bare weekday is never today
        ("friday next week", "2026-05-08"),
        ("tomorrow", "2026-04-30"),
        ("the day after tomorrow", "2026-05-01"),
        ("the third of december", "2026-12-03"),
        ("December 3rd", "2026-12-03"),
        ("on the 1st of May", "2026-05-01"),
        ("12/03", "2027-03-12"),  # day first; already past this year
        ("2026-05-10", "2026-05-10"),
        ("12.01.1975", "1975-01-12"),
        ("born 3 May 1980", "1980-05-03"),
        ("the third of may nineteen eighty", "1980-05-03"),
        ("the fifth", "2026-05-05"),
        ("in three days", "2026-05-02"),
        ("may i come in", None),
        ("I'd like to book an appointment for Monday at nine thirty.", "2026-05-04"),
    ],
)
def test_dates(text: str, iso: str | None) -> None:
    found = sx.parse_date(text, WEDNESDAY)
    assert (found.isoformat() if found else None) == iso


def test_next_weekday_across_year_end() -> None:
    assert sx.parse_date("next monday", date(2026, 12, 30)) == date(2027, 1, 4)


@pytest.mark.parametrize(
    ("text", "hhmm"),
    [
        ("nine thirty", "09:30"),
        ("9:30", "09:30"),
        ("9.30 am", "09:30"),
        ("half past nine", "09:30"),
        ("half nine", "09:30"),
        ("quarter to ten", "09:45"),
        ("a quarter past eleven", "11:15"),
        ("ten past two", "14:10"),  # 1-6 without am/pm: the afternoon
        ("2 pm", "14:00"),
        ("2pm", "14:00"),
        ("twelve p.m.", "12:00"),
        ("noon", "12:00"),
        ("midnight", "00:00"),
        ("nine o'clock in the evening", "21:00"),
        ("ten oh five", "10:05"),
        ("at 10", "10:00"),
        ("monday at nine thirty", "09:30"),
        ("book me in", None),
    ],
)
def test_times(text: str, hhmm: str | None) -> None:
    assert sx.parse_time(text) == hhmm


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("yes", True),
        ("Yeah.", True),
        ("correct", True),
        ("That's right.", True),
        ("sure", True),
        ("yes that's fine", True),
        ("no", False),
        ("Nope.", False),
        ("wrong", False),
        ("that's not right", False),
        ("no follow-up", False),
        ("a follow-up is needed", True),
        ("hmm", None),
    ],
)
def test_yes_no(text: str, answer: bool | None) -> None:
    assert sx.parse_yes_no(text) is answer


def test_yes_no_strict_ignores_weak_words() -> None:
    assert sx.parse_yes_no("radiology please") is True
    assert sx.parse_yes_no("radiology please", strict=True) is None


RESULTS = ["pass", "pass_with_remarks", "fail"]
DEPARTMENTS = ["general", "cardiology", "radiology", "orthopedics"]


@pytest.mark.parametrize(
    ("text", "values", "choice"),
    [
        ("It passed with remarks.", RESULTS, "pass_with_remarks"),
        ("Failed.", RESULTS, "fail"),
        ("pass", RESULTS, "pass"),
        ("Orthopaedics, please", DEPARTMENTS, "orthopedics"),
        ("cardio", DEPARTMENTS, "cardiology"),
        ("I'd like an appointment", DEPARTMENTS, None),
    ],
)
def test_enums(text: str, values: list[str], choice: str | None) -> None:
    assert sx.parse_enum(text, values) == choice


@pytest.mark.parametrize(
    "text", ["SUB-0412", "site S U B 0 4 1 2", "S-U-B-0-4-1-2.", "sub dash zero four one two"]
)
def test_codes(text: str) -> None:
    found = sx.find_code(sx.tokenize(text))
    assert found is not None and found.value == "SUB-0412"


def test_free_text_remainder() -> None:
    toks = sx.tokenize("Yes, for Anna Schmidt, born 3 May 1980.")
    span = sx.find_date(toks, WEDNESDAY)
    assert span is not None
    assert sx.remainder(toks, [(span.start, span.end)]) == ["Anna Schmidt"]
    toks = sx.tokenize("Transformer oil leak, major, seal is weeping.")
    major = sx.find_enum(toks, ["minor", "major", "critical"])
    assert major is not None
    assert sx.remainder(toks, [(major.start, major.end)], parts=2) == [
        "Transformer oil leak",
        "seal is weeping",
    ]
