"""The caller's key presses: the item's text both sides share, the bursts (terminator,
inter-digit timeout, a full burst, keys pressed over the bot), the dialplan's `dtmf` option
and its checks, and a flow driven by keys. Pure: no sockets, no clock."""

from __future__ import annotations

import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from telephony_bot import app, keypad
from telephony_bot.dialplan.flow import Flow
from telephony_bot.dialplan.loader import load
from telephony_bot.dialplan.router import effective
from telephony_bot.dialplan.schema import Dtmf
from telephony_bot.errors import DialplanError
from telephony_bot.local_engine.brain import CallTool, FlowRunner, Hangup, Say, Transfer
from telephony_bot.session.dtmf import Burst, DtmfCollector, DtmfSettings

# ---------- the item's text: written by the session, read by the offline flow ----------


@pytest.mark.parametrize(
    ("digits", "terminator", "text"),
    [
        ("1234", "#", "The caller pressed the keys: 1234 (ended with #)"),
        ("1234", "", "The caller pressed the keys: 1234"),
        ("1", "", "The caller pressed the key: 1"),
        ("0*9", "#", "The caller pressed the keys: 0*9 (ended with #)"),
        ("", "#", "The caller pressed only # (the key that ends an input)"),
    ],
)
def test_a_burst_reads_as_plain_english_and_back(digits: str, terminator: str, text: str) -> None:
    assert keypad.pressed_text(digits, terminator) == text
    assert keypad.parse_pressed(text) == keypad.Pressed(digits, terminator)


def test_only_the_items_own_text_is_taken_for_keys() -> None:
    # what an ASR could make of a caller saying something alike stays words
    for said in (
        "the caller pressed the keys 1234",
        "The caller pressed the keys: one two",
        "I pressed 1234",
        "The caller pressed the keys: 1234 (ended with #) and more",
    ):
        assert keypad.parse_pressed(said) is None, said
    assert keypad.Pressed("", "#").keys == "#" and keypad.Pressed("12", "#").keys == "12"
    with pytest.raises(ValueError, match="not DTMF keys"):
        keypad.pressed_text("12x")
    with pytest.raises(ValueError, match="not a DTMF key"):
        keypad.pressed_text("12", "##")


# ---------- bursts ----------


def _press(c: DtmfCollector, keys: str, at_ms: int, step_ms: int = 200, speaking: bool = False):
    steps = []
    for i, k in enumerate(keys):
        steps.append(c.key(k, at_ms + i * step_ms, bot_speaking=speaking))
    return steps


def test_the_terminator_ends_a_burst_at_once_and_is_only_noted() -> None:
    c = DtmfCollector(DtmfSettings())
    steps = _press(c, "1234#", 1000)
    assert [s.burst for s in steps[:4]] == [None] * 4
    assert steps[4].burst == Burst("1234", "#", "terminator")
    assert steps[4].burst.text == "The caller pressed the keys: 1234 (ended with #)"
    assert c.due_ms is None and c.typing == ""  # nothing left waiting
    # the terminator alone is a burst too ("press # to skip")
    assert c.key("#", 5000, bot_speaking=False).burst == Burst("", "#", "terminator")


def test_a_burst_ends_inter_digit_ms_after_its_last_key() -> None:
    c = DtmfCollector(DtmfSettings(inter_digit_ms=1500))
    _press(c, "12", 1000, step_ms=1000)  # the second key restarts the wait
    assert c.due_ms == 2000 + 1500
    assert c.expire(3499) is None and c.typing == "12"
    assert c.expire(3500) == Burst("12", "", "timeout")
    assert c.expire(9000) is None  # once


def test_a_full_burst_ends_without_waiting() -> None:
    c = DtmfCollector(DtmfSettings(max_digits=1))  # a menu: one key is the whole answer
    assert c.key("3", 0, bot_speaking=False).burst == Burst("3", "", "max_digits")
    c = DtmfCollector(DtmfSettings(terminator=""))  # no terminator: # is a key like others
    _press(c, "1#", 0)
    assert c.expire(10_000) == Burst("1#", "", "timeout")


def test_a_key_pressed_while_the_bot_speaks_cuts_it_off_unless_told_not_to() -> None:
    c = DtmfCollector(DtmfSettings())
    steps = _press(c, "12#", 0, speaking=True)
    assert [s.interrupt for s in steps] == [True, True, True]
    assert steps[2].burst == Burst("12", "#", "terminator")  # the keys still count
    assert not c.key("1", 0, bot_speaking=False).interrupt  # nothing to cut
    quiet = DtmfCollector(DtmfSettings(interrupt=False))
    assert not quiet.key("1", 0, bot_speaking=True).interrupt
    # keys that do not go to the model never cut the bot off: nothing would answer them
    silent = DtmfCollector(DtmfSettings(to_model=False))
    assert not silent.key("1", 0, bot_speaking=True).interrupt


def test_what_is_not_a_key_is_ignored_and_settings_are_checked() -> None:
    c = DtmfCollector(DtmfSettings())
    assert c.key("R", 0, bot_speaking=True) == c.key("", 0, bot_speaking=True)
    assert c.typing == "" and c.due_ms is None
    for bad in ({"terminator": "x"}, {"terminator": "##"}, {"max_digits": 0}):
        with pytest.raises(ValueError):
            DtmfSettings(**bad)  # type: ignore[arg-type]


# ---------- the dialplan's `dtmf` ----------


def test_dtmf_option_values_and_their_errors() -> None:
    assert Dtmf.model_validate({"terminator": 5}).terminator == "5"  # YAML read a number
    assert Dtmf.model_validate({"terminator": ""}).settings().terminator == ""
    with pytest.raises(ValidationError, match=r'terminator in quotes, e.g. terminator: "#"'):
        Dtmf.model_validate({"terminator": None})  # `terminator: #` is a YAML comment
    with pytest.raises(ValidationError, match="expected one DTMF key"):
        Dtmf.model_validate({"terminator": "##"})
    with pytest.raises(ValidationError, match="greater than or equal to 300"):
        Dtmf.model_validate({"inter_digit_ms": 50})


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def test_a_route_sets_its_own_dtmf_and_the_call_gets_it(tmp_path: Path) -> None:
    plan = load(
        _write(
            tmp_path,
            """
            defaults:
              dtmf: {inter_digit_ms: 3000}
              provider: echo
            routes:
              - name: menu
                match: {number: "+4930100"}
                dtmf: {terminator: "*", max_digits: 1, interrupt: false}
              - name: other
            """,
        )
    ).plan
    menu = effective(plan, plan.route("menu"))
    assert menu.dtmf.settings() == DtmfSettings(
        terminator="*", max_digits=1, interrupt=False, inter_digit_ms=2000
    )  # a route's dtmf replaces the defaults' as a whole, like barge_in
    other = app.for_route(plan, effective(plan, plan.route("other")))
    assert other.options.dtmf == DtmfSettings(inter_digit_ms=3000)


def _problems(path: Path) -> list[str]:
    with pytest.raises(DialplanError) as info:
        load(path, env={})
    return [str(i) for i in info.value.issues]


def test_an_unquoted_terminator_is_pointed_at_with_the_fix(tmp_path: Path) -> None:
    f = _write(
        tmp_path,
        "defaults:\n  dtmf:\n    terminator: #\n    inter_digit_ms: 20\n  provider: echo\n",
    )
    assert _problems(f) == [
        f'{f}:3:16 defaults.dtmf.terminator: write the terminator in quotes, e.g. terminator: "#"'
        ' (a bare # starts a YAML comment); "" for none',
        f"{f}:4:21 defaults.dtmf.inter_digit_ms: expected greater than or equal to 300, got 20",
    ]


def test_keys_a_flow_waits_for_must_be_able_to_reach_it(tmp_path: Path) -> None:
    f = _write(
        tmp_path,
        """
        defaults:
          provider: local
          dtmf: {max_digits: 3}
          flow:
            start: menu
            states:
              menu:
                say: Press 1 for sales.
                intents:
                  - {name: sales, dtmf: "1#", then: hangup}
                  - {name: pin, examples: [my pin is 1234], slots: {pin: {type: digits, length: 4}}, then: hangup}
                  - {name: desk, dtmf: "1", examples: [a person], then: hangup}
                  - {name: more, dtmf: 1, then: hangup}
        routes:
          - name: quiet
            dtmf: {to_model: false}
          - name: main
        """,  # noqa: E501
    )
    msgs = _problems(f)
    at = f"{f}:10:33 defaults.flow.states.menu.intents[0].dtmf:"
    quiet, main = "(route 'quiet' uses the default flow)", "(route 'main' uses the default flow)"
    assert (
        f"{at} '1#' can never be pressed: '#' is the route's dtmf.terminator, which ends "
        f"the keys and is not part of them (write '1') {main}" in msgs
    )
    assert (
        f"{at} intent 'sales' waits for key '1#', but the route's dtmf.to_model is false: "
        f"no key press reaches the flow {quiet}" in msgs
    )
    assert (
        f"{f}:11:66 defaults.flow.states.menu.intents[1].slots.pin: a 4-digit slot cannot "
        f"be typed: the route's dtmf.max_digits ends the keys after 3 {main}" in msgs
    )
    assert (
        f"{f}:13:32 defaults.flow.states.menu.intents[3].dtmf: key '1' is already taken "
        f"by intent 'desk' in this state {main}" in msgs
    )
    assert len(msgs) == 7, msgs  # and the same for the other intents and routes


# ---------- a flow driven by keys ----------

FLOW = Flow.model_validate(
    {
        "start": "number",
        "states": {
            "number": {
                "say": "Please enter your 4-digit customer number, then press hash.",
                "intents": [
                    {
                        "name": "customer",
                        "examples": ["my customer number is 1234"],
                        "slots": {"customer": {"type": "digits", "length": 4}},
                        "tool": {"name": "lookup", "args": {"number": "{customer}"}},
                        "then": "menu",
                    }
                ],
                "fallback": {"say": "Sorry, I need your customer number.", "then": "hangup"},
            },
            "menu": {
                "say": "Thank you, customer {customer}. Press 1 for sales or 2 for a person.",
                "intents": [
                    {"name": "sales", "dtmf": "1", "examples": ["sales"], "then": "sales"},
                    {"name": "desk", "dtmf": "2", "then": "transfer:desk"},
                ],
            },
            "sales": {"say": "Sales it is. Goodbye.", "then": "hangup"},
        },
    }
)
SCHEMA = {"lookup": {"type": "object", "properties": {"number": {"type": "string"}}}}


def _runner() -> FlowRunner:
    runner = FlowRunner(FLOW, now=datetime(2026, 3, 30, 10, 0), tools=SCHEMA)
    assert runner.start() == [Say("Please enter your 4-digit customer number, then press hash.")]
    return runner


def _said(actions: list[Any]) -> str:
    return " ".join(a.text for a in actions if isinstance(a, Say))


def test_typed_digits_fill_a_digits_slot_and_a_key_picks_the_menu_intent() -> None:
    runner = _runner()
    acts = runner.hear(keypad.pressed_text("0412", "#"))
    assert acts == [CallTool("flow-1", "lookup", {"number": "0412"})]  # a string, zero kept
    acts = runner.tool_result("flow-1", True, {})
    assert runner.slots["customer"] == "0412"
    # read back digit by digit, not as "four hundred and twelve"
    assert _said(acts) == "Thank you, customer 0 4 1 2. Press 1 for sales or 2 for a person."
    assert runner.hear(keypad.pressed_text("2")) == [Transfer("desk")]


def test_keys_and_words_reach_the_same_intents() -> None:
    runner = _runner()
    assert runner.hear("My customer number is one two three four.")[0].arguments == {
        "number": "1234"
    }
    runner.tool_result("flow-1", True, {})
    acts = runner.hear(keypad.pressed_text("1", ""))  # a burst that timed out
    assert acts == [Say("Sales it is. Goodbye."), Hangup("completed")]


def test_keys_that_fit_nothing_are_not_understood_like_words() -> None:
    runner = _runner()
    assert _said(runner.hear(keypad.pressed_text("12", "#"))) == (
        "Sorry, I need your customer number."  # 2 digits: not a 4-digit customer number
    )
    runner = _runner()
    runner.hear("my customer number is")  # the intent, without its value: it is asked for
    again = runner.hear(keypad.pressed_text("99", "#"))
    assert again == [Say("Sorry, what is the customer?")]  # asked again, not dropped
    assert runner.hear(keypad.pressed_text("9999", "#"))[0] == CallTool(
        "flow-1", "lookup", {"number": "9999"}
    )
