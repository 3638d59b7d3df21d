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
          slots: {day: date, urgent: yes_no, ward: "enum:[cardiology, radiology]"}
          confirm: "Did you say {day}?"
          tool: {name: book_slot, args: {day: "{day}"}, result: booking}
          then: booked                 # a state, `hangup` or `transfer:<target>`
      fallback: {say: "Sorry, could you repeat that?", max_retries: 2, then: "transfer:desk"}
    booked:
      say: "You are booked at {booking.time}. Goodbye."
      then: hangup                     # a state without intents moves on after speaking
```

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

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from telephony_bot.dialplan import templates

SLOT_TYPES = ("number", "date", "time", "yes_no", "text", "enum")
HANGUP = "hangup"
TRANSFER_PREFIX = "transfer:"

_NAME = r"[A-Za-z_][A-Za-z0-9_\-]*"
_TARGET_RE = rf"^(hangup|transfer:[A-Za-z0-9_.\-]+|{_NAME})$"
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
                f"unknown slot type {value!r}; expected one of number, date, time, yes_no, "
                "text or enum:[choice, ...]"
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
    ]
}


class Slot(_Strict):
    type: Literal["number", "date", "time", "yes_no", "text", "enum"]
    values: list[str] = Field(default_factory=list)  # the choices of an enum slot


SlotInput = Annotated[Slot, BeforeValidator(_slot_input), WithJsonSchema(_SLOT_JSON)]
Target = Annotated[str, Field(pattern=_TARGET_RE)]
"""Where to go next: a state name, `hangup`, or `transfer:<transfer target name>`."""


class ToolCall(_Strict):
    name: str
    args: dict[str, Any] = Field(default_factory=dict)  # string values may use {slot}
    result: Annotated[str, Field(pattern=rf"^{_NAME}$")] | None = None  # keep reply as {result}
    on_error: Target | None = None  # where to go when the tool fails; default: the fallback


class Intent(_Strict):
    name: str
    examples: list[str] = Field(min_length=1)
    slots: dict[str, SlotInput] = Field(default_factory=dict)
    confirm: str | None = None  # asked (yes/no) before acting, e.g. "Did you say {day}?"
    tool: ToolCall | None = None
    then: Target


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
    states: dict[str, State] = Field(min_length=1)


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
    for state in states.values():
        if state.tool and state.tool.result:
            known.add(state.tool.result)
        for intent in state.intents:
            known.update(intent.slots)
            if intent.tool and intent.tool.result:
                known.add(intent.tool.result)

    def target(loc: tuple[str | int, ...], value: str) -> None:
        if value == HANGUP:
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
        seen: set[str] = set()
        for i, intent in enumerate(state.intents):
            iloc = (*base, "intents", i)
            if intent.name in seen:
                problems.append(
                    FlowProblem((*iloc, "name"), f"intent {intent.name!r} appears twice here")
                )
            seen.add(intent.name)
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
    for sname in states:
        if sname not in reachable:
            problems.append(
                FlowProblem(("states", sname), f"state {sname!r} is never reached", warning=True)
            )
    return problems


def _did_you_mean(word: str, choices: Collection[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
