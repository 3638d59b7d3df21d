"""The scripted conversation flow the offline (local) engine follows.

```yaml
flow:
  start: welcome
  states:
    welcome:
      say: "Hello, which day would you like?"
      intents:
        - name: book
          examples: ["I need an appointment on monday", "book me in"]
          slots: {day: date, urgent: yes_no, ward: "enum:[cardiology, radiology]",
                  note: {type: text, optional: true}}   # optional: never asked for
          confirm: "Did you say {day}?"
          tool: {name: book_slot, args: {day: "{day}"}, result: booking}
          then: booked                 # a state, `hangup` or `transfer:<target>`
        - name: desk
          examples: ["a person please"]
          dtmf: "0"                    # ... or the caller presses 0
          then: "transfer:desk"
      fallback: {say: "Sorry, could you repeat that?", max_retries: 2, then: "transfer:desk"}
    booked:
      say: "You are booked at {booking.time}. Goodbye."
      then: hangup                     # a state without intents moves on after speaking
```

`anywhere` lists intents understood in every state, after the state's own (a state's intent
wins a tie): the way out to a person, "say that again", "goodbye". The target `repeat`
says the last thing again and waits where the caller was:

```yaml
flow:
  anywhere:
    - {name: person, examples: ["let me talk to a real person"], dtmf: "0", then: "transfer:desk"}
    - {name: again, examples: ["sorry, can you say that again"], then: repeat}
```

Key presses (DTMF) drive a flow like words: an intent with `dtmf: "1"` is taken when the
caller presses 1 ("press 1 for sales"), and a `digits` slot (`{type: digits, length: 4}`:
a customer number, a PIN) takes the keys the caller typed, or the digits they said. The keys
reach the flow as the route's `dtmf` bursts (the terminator, default `#`, ends one).

A state may also call a tool as it is entered, before it speaks (`tool:` on the state, e.g.
to look the caller up); a tool call's `result` names its reply for later placeholders
(`{booking.time}`), and its `on_error` says where to go when the tool fails (default: the
state's fallback). Placeholders are the intents' slots, tool results and the call values of
templates.py (`{caller}`, `{called}`, `{date}`, `{time}`, `{weekday}`, `{header.X}`).

Declarative only: the runtime that executes a flow lives elsewhere. `check_flow` lists the
cross-references pydantic cannot see (states, tools, transfer targets, placeholders) with
the field path of each problem, so the loader can point at the line.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from telephony_bot import keypad
from telephony_bot.dialplan import templates

SLOT_TYPES = ("number", "digits", "date", "time", "yes_no", "text", "enum")
MAX_DIGITS_LENGTH = 32
HANGUP = "hangup"
REPEAT = "repeat"  # say the last thing again and wait in the same place
TRANSFER_PREFIX = "transfer:"
RESERVED_STATES = (HANGUP, REPEAT)

_NAME = r"[A-Za-z_][A-Za-z0-9_\-]*"
_TARGET_RE = rf"^(hangup|repeat|transfer:[A-Za-z0-9_.\-]+|{_NAME})$"
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_.\-]*)\}")
_ENUM_TEXT = re.compile(r"^\s*enum\s*:\s*\[(.*)\]\s*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _slot_input(value: Any) -> Any:
    """`number` | `enum:[a, b]` | {enum: [a, b]} | {type: ..., values: [...]} -> mapping."""
    if isinstance(value, str):
        m = _ENUM_TEXT.match(value)
        if m:
            values = [v.strip().strip("'\"") for v in m.group(1).split(",") if v.strip()]
            return {"type": "enum", "values": values}
        if value not in SLOT_TYPES or value == "enum":
            raise ValueError(
                f"unknown slot type {value!r}; expected one of number, digits, date, time, "
                "yes_no, text or enum:[choice, ...]"
            )
        return {"type": value}
    if isinstance(value, dict) and set(value) == {"enum"}:
        return {"type": "enum", "values": value["enum"]}
    return value


_SLOT_JSON = {
    "anyOf": [
        {"type": "string", "enum": [t for t in SLOT_TYPES if t != "enum"]},
        {"type": "string", "pattern": r"^\s*enum\s*:\s*\[.*\]\s*$"},
        {
            "type": "object",
            "properties": {"enum": {"type": "array", "items": {"type": "string"}}},
            "required": ["enum"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {
                "type": {"type": "string", "enum": list(SLOT_TYPES)},
                "values": {"type": "array", "items": {"type": "string"}},
                "length": {"type": "integer", "minimum": 1, "maximum": MAX_DIGITS_LENGTH},
                "optional": {"type": "boolean"},
            },
            "required": ["type"],
            "additionalProperties": False,
        },
    ]
}


class Slot(_Strict):
    type: Literal["number", "digits", "date", "time", "yes_no", "text", "enum"]
    values: list[str] = Field(default_factory=list)  # the choices of an enum slot
    # a digits slot: exactly this many digits (a 4-digit PIN); none: any number of them
    length: int | None = Field(default=None, ge=1, le=MAX_DIGITS_LENGTH)
    # taken when the caller says it, never asked for (a note); its placeholder is then ""
    optional: bool = False

    @model_validator(mode="after")
    def _length_for_digits(self) -> Slot:
        if self.length is not None and self.type != "digits":
            raise ValueError(f"length only applies to a digits slot, not to type {self.type}")
        return self


SlotInput = Annotated[Slot, BeforeValidator(_slot_input), WithJsonSchema(_SLOT_JSON)]
Target = Annotated[str, Field(pattern=_TARGET_RE)]
"""Where to go next: a state name, `hangup`, or `transfer:<transfer target name>`."""


class ToolCall(_Strict):
    name: str
    args: dict[str, Any] = Field(default_factory=dict)  # string values may use {slot}
    result: Annotated[str, Field(pattern=rf"^{_NAME}$")] | None = None  # keep reply as {result}
    on_error: Target | None = None  # where to go when the tool fails; default: the fallback


def _dtmf_input(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # dtmf: 1 (YAML reads a number)
    return value


def _check_dtmf(value: str) -> str:
    if not keypad.are_keys(value):
        raise ValueError(f'expected DTMF keys (0-9, *, #, A-D), like "1", got {value!r}')
    return value


DtmfKeys = Annotated[
    str,
    BeforeValidator(_dtmf_input),
    AfterValidator(_check_dtmf),
    Field(max_length=MAX_DIGITS_LENGTH),
    WithJsonSchema({"type": "string", "pattern": r"^[0-9*#A-D]{1,32}$"}),
]


class Intent(_Strict):
    name: str
    examples: list[str] = Field(default_factory=list)  # what the caller may say
    dtmf: DtmfKeys | None = None  # ... or the keys they may press for it, e.g. "1"
    slots: dict[str, SlotInput] = Field(default_factory=dict)
    confirm: str | None = None  # asked (yes/no) before acting, e.g. "Did you say {day}?"
    tool: ToolCall | None = None
    then: Target

    @model_validator(mode="after")
    def _said_or_pressed(self) -> Intent:
        if not self.examples and self.dtmf is None:
            raise ValueError(
                "an intent needs examples (what the caller says) or dtmf (a key they press)"
            )
        return self


class Fallback(_Strict):
    say: str = "Sorry, could you repeat that?"
    max_retries: int = Field(default=2, ge=0, le=10)
    then: Target = HANGUP


class State(_Strict):
    tool: ToolCall | None = None  # called on entering the state, before `say`
    say: str = ""
    intents: list[Intent] = Field(default_factory=list)
    fallback: Fallback = Field(default_factory=Fallback)
    then: Target | None = None  # only for a state without intents: where to go after `say`


class Flow(_Strict):
    start: str
    # intents understood in every state ("a real person", "say that again", "goodbye"),
    # after the state's own: a state's intent wins a tie
    anywhere: list[Intent] = Field(default_factory=list)
    states: dict[str, State] = Field(min_length=1)

    def speaks_first(self) -> bool:
        """Whether the start state acts before the caller says anything: it calls a tool,
        says something, or moves on (a state without intents). Such a flow opens the call
        itself when its route has no greeting."""
        state = self.states.get(self.start)
        if state is None:
            return False
        return bool(state.tool or state.say.strip() or (not state.intents and state.then))


def _sentences(text: str) -> list[tuple[str, ...]]:
    return [
        words
        for part in re.split(r"[.?!;]+", text)
        if (words := tuple(re.findall(r"[a-z0-9{}_.]+", part.lower())))
    ]


def repeated_opening(greeting: str | None, flow: Flow) -> str | None:
    """A sentence the route's greeting and its flow's start state both say, or None. The
    offline engine says the greeting and then enters the start state (its tool, its say),
    so such a sentence would be heard twice in a row."""
    state = flow.states.get(flow.start)
    if not greeting or state is None or not state.say:
        return None
    said = set(_sentences(greeting))
    for sentence in _sentences(state.say):
        if sentence in said:
            return " ".join(sentence)
    return None


@dataclass(frozen=True)
class FlowProblem:
    """A cross-reference problem; `loc` is relative to the flow mapping."""

    loc: tuple[str | int, ...]
    message: str
    warning: bool = False


def _names(template: str) -> list[str]:
    return [m.group(1) for m in _PLACEHOLDER.finditer(template) if m.group(1)]


def check_flow(
    flow: Flow,
    *,
    tools: Collection[str],
    transfer_targets: Collection[str],
) -> list[FlowProblem]:
    """States referenced exist, tools are the route's, placeholders are defined."""
    problems: list[FlowProblem] = []
    states = flow.states
    known: set[str] = set()
    for intent in flow.anywhere:
        known.update(intent.slots)
        if intent.tool and intent.tool.result:
            known.add(intent.tool.result)
    for state in states.values():
        if state.tool and state.tool.result:
            known.add(state.tool.result)
        for intent in state.intents:
            known.update(intent.slots)
            if intent.tool and intent.tool.result:
                known.add(intent.tool.result)

    def target(loc: tuple[str | int, ...], value: str) -> None:
        if value in RESERVED_STATES:
            return
        if value.startswith(TRANSFER_PREFIX):
            name = value[len(TRANSFER_PREFIX) :]
            if name not in transfer_targets:
                have = ", ".join(sorted(transfer_targets)) or "none are defined"
                problems.append(
                    FlowProblem(loc, f"unknown transfer target {name!r} (transfer_targets: {have})")
                )
            return
        if value not in states:
            problems.append(
                FlowProblem(loc, f"unknown state {value!r}{_did_you_mean(value, states)}")
            )

    def text(loc: tuple[str | int, ...], value: str) -> None:
        for name in _names(value):
            head = name.split(".", 1)[0]
            if head in known or templates.is_known(name):
                continue
            hint = _did_you_mean(head, known | set(templates.KNOWN))
            problems.append(
                FlowProblem(
                    loc,
                    f"placeholder {{{name}}} is not a slot, a tool result or a call value{hint}",
                )
            )

    def tool_call(loc: tuple[str | int, ...], call: ToolCall) -> None:
        if call.name not in tools:
            have = ", ".join(sorted(tools)) or "none"
            problems.append(
                FlowProblem(
                    (*loc, "name"),
                    f"tool {call.name!r} is not one of this route's tools"
                    f"{_did_you_mean(call.name, tools)} (route tools: {have})",
                )
            )
        for key, value in call.args.items():
            if isinstance(value, str):
                text((*loc, "args", key), value)
        if call.on_error is not None:
            target((*loc, "on_error"), call.on_error)
            reachable.add(call.on_error)

    def intents(base: tuple[str | int, ...], field: str, listed: list[Intent]) -> None:
        """One list of intents: a state's, or the flow's `anywhere`."""
        seen: set[str] = set()
        keys: dict[str, str] = {}
        for i, intent in enumerate(listed):
            iloc = (*base, field, i)
            if intent.name in seen:
                problems.append(
                    FlowProblem((*iloc, "name"), f"intent {intent.name!r} appears twice here")
                )
            seen.add(intent.name)
            if intent.dtmf is not None:
                if intent.dtmf in keys:
                    problems.append(
                        FlowProblem(
                            (*iloc, "dtmf"),
                            f"key {intent.dtmf!r} is already taken by intent "
                            f"{keys[intent.dtmf]!r} in this state",
                        )
                    )
                keys.setdefault(intent.dtmf, intent.name)
            for slot_name, slot in intent.slots.items():
                if slot.type == "enum" and not slot.values:
                    problems.append(
                        FlowProblem((*iloc, "slots", slot_name), "an enum slot needs choices")
                    )
            if intent.confirm:
                text((*iloc, "confirm"), intent.confirm)
            if intent.tool is not None:
                tool_call((*iloc, "tool"), intent.tool)
            target((*iloc, "then"), intent.then)
            reachable.add(intent.then)

    if flow.start not in states:
        problems.append(
            FlowProblem(
                ("start",), f"unknown state {flow.start!r}{_did_you_mean(flow.start, states)}"
            )
        )
    reachable = {flow.start}
    for sname, state in states.items():
        base: tuple[str | int, ...] = ("states", sname)
        if state.tool is not None:
            tool_call((*base, "tool"), state.tool)
        text((*base, "say"), state.say)
        text((*base, "fallback", "say"), state.fallback.say)
        target((*base, "fallback", "then"), state.fallback.then)
        reachable.add(state.fallback.then)
        if state.then is not None:
            if state.intents:
                problems.append(
                    FlowProblem(
                        (*base, "then"),
                        "a state with intents moves on through its intents; remove `then` "
                        "or the intents",
                    )
                )
            target((*base, "then"), state.then)
            reachable.add(state.then)
        if sname in RESERVED_STATES:
            problems.append(
                FlowProblem(base, f"{sname!r} is a reserved target, not a name for a state")
            )
        intents(base, "intents", state.intents)
    intents((), "anywhere", flow.anywhere)
    for sname in states:
        if sname not in reachable:
            problems.append(
                FlowProblem(("states", sname), f"state {sname!r} is never reached", warning=True)
            )
    return problems


def check_keys(
    flow: Flow, *, to_model: bool, terminator: str, max_digits: int
) -> list[FlowProblem]:
    """The flow's key presses against the route's `dtmf` settings: keys an intent waits for
    must be able to reach it (`to_model`, the terminator ends a burst and is not part of
    it, a burst holds at most `max_digits` keys), and so must a digits slot's length."""
    problems: list[FlowProblem] = []
    lists: list[tuple[tuple[str | int, ...], list[Intent]]] = [
        (("states", sname, "intents"), state.intents) for sname, state in flow.states.items()
    ]
    lists.append((("anywhere",), flow.anywhere))
    for base, listed in lists:
        for i, intent in enumerate(listed):
            iloc: tuple[str | int, ...] = (*base, i)
            keys = intent.dtmf
            if keys is not None:
                if not to_model:
                    problems.append(
                        FlowProblem(
                            (*iloc, "dtmf"),
                            f"intent {intent.name!r} waits for key {keys!r}, but the route's "
                            "dtmf.to_model is false: no key press reaches the flow",
                        )
                    )
                elif terminator and terminator in keys and keys != terminator:
                    problems.append(
                        FlowProblem(
                            (*iloc, "dtmf"),
                            f"{keys!r} can never be pressed: {terminator!r} is the route's "
                            f"dtmf.terminator, which ends the keys and is not part of them "
                            f"(write {keys.replace(terminator, '')!r})",
                        )
                    )
                elif len(keys) > max_digits:
                    problems.append(
                        FlowProblem(
                            (*iloc, "dtmf"),
                            f"{keys!r} can never be pressed: the route's dtmf.max_digits "
                            f"ends the keys after {max_digits}",
                        )
                    )
            for slot_name, slot in intent.slots.items():
                if slot.type == "digits" and slot.length and to_model and slot.length > max_digits:
                    problems.append(
                        FlowProblem(
                            (*iloc, "slots", slot_name),
                            f"a {slot.length}-digit slot cannot be typed: the route's "
                            f"dtmf.max_digits ends the keys after {max_digits}",
                        )
                    )
    return problems


def _did_you_mean(word: str, choices: Collection[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
