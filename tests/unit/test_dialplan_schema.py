"""The dialplan models on their own: the short forms admins write, what each refuses,
the offline flow's cross-checks, and instruction templating."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from telephony_bot.dialplan import templates
from telephony_bot.dialplan.flow import Flow, check_flow
from telephony_bot.dialplan.schema import (
    Defaults,
    Dialplan,
    EnvRef,
    Hours,
    Match,
    ProviderDef,
    Route,
    TimeWindow,
    ToolDef,
)


def errors(model: type, data: Any, **kw: Any) -> list[str]:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data, **kw)
    return [e["msg"] for e in info.value.errors()]


# ---------- backwards compatibility of the defaults slice ----------


def test_existing_defaults_fields_still_work() -> None:
    plan = Dialplan.model_validate(
        {
            "version": 1,
            "defaults": {
                "provider": "openai",
                "echo_delay_ms": 100,
                "instructions": "Hi",
                "voice": "alloy",
                "greeting": "",
                "audio_format": "g711_ulaw",
                "barge_in": {"enabled": False, "min_interrupt_ms": 300},
                "tools": ["lookup", "hangup"],
                "transfer_targets": {"nurse": "sip:nurse@127.0.0.1:5070"},
                "filler_after_ms": 500,
                "openai": {"model": "gpt-realtime", "dialect": "ga", "api_key_env": "K"},
            },
            "tools": {"lookup": {"python": "tests.support.tools:slow_lookup"}},
        }
    )
    d = plan.defaults
    assert d.provider == "openai" and d.openai.api_key_env == "K" and d.openai.azure is None
    assert plan.tools["lookup"].python == "tests.support.tools:slow_lookup"
    assert plan.tools["lookup"].kind == "python" and plan.tools["lookup"].timeout_s == 8.0
    # no provider unless the plan names one: never an implicit echo (the loader refuses)
    assert Defaults().provider is None and Dialplan().routes == []


# ---------- match patterns ----------


def test_number_pattern_short_forms() -> None:
    m = Match.model_validate(
        {"number": "+4930123", "caller": [{"prefix": "+49151"}, {"regex": "anon.*"}]}
    )
    assert m.number is not None and m.number[0].exact == "+4930123"
    assert m.caller is not None and [c.describe() for c in m.caller] == [
        "matches prefix +49151",
        "matches regex 'anon.*'",
    ]


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("030 123", "expected an E.164 number like +4930123456"),
        ({"prefix": "4930"}, "expected an E.164 prefix like +4930"),
        ({"regex": "[0-9"}, "invalid regular expression '[0-9'"),
        ({"exact": "+4930", "prefix": "+49"}, "give exactly one of exact, prefix or regex"),
        (4930123, "write phone numbers in quotes"),
    ],
)
def test_bad_number_patterns(number: Any, message: str) -> None:
    assert any(message in m for m in errors(Match, {"number": number}))


# ---------- hours ----------


def test_hours_short_forms() -> None:
    h = Hours.model_validate(
        {
            "timezone": "Europe/Berlin",
            "open": {"mon-wed": "08:00-12:00, 13:00-17:00", "sat": "09:30-24:00", "sun": "closed"},
            "holidays": ["2026-12-25"],
        }
    )
    assert h.open["tue"] == [TimeWindow(480, 720), TimeWindow(780, 1020)]
    assert h.open["sat"] == [TimeWindow(570, 1440)] and h.open["sun"] == []
    assert "thu" not in h.open and str(h.open["mon"][0]) == "08:00-12:00"
    assert h.model_dump()["open"]["sat"] == ["09:30-24:00"]


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ("25:00-18:00", "start 25:00 is not a time of day"),
        ("08:00-18:60", "end 18:60 is not a time of day"),
        ("18:00-08:00", "the end must come after the start"),
        ("09:00-09:00", "the end must come after the start"),
        ("nine to five", 'expected a time window like "08:00-18:00"'),
    ],
)
def test_bad_time_windows(window: str, message: str) -> None:
    msgs = errors(Hours, {"timezone": "UTC", "open": {"mon": window}})
    assert any(message in m for m in msgs), msgs


def test_unknown_weekday_and_timezone() -> None:
    assert any("'mon'" in m for m in errors(Hours, {"timezone": "UTC", "open": {"monday": []}}))
    assert any(
        "unknown timezone 'Mars/Olympus'" in m for m in errors(Hours, {"timezone": "Mars/Olympus"})
    )


# ---------- providers and secrets ----------


def test_env_reference_is_resolved_and_masked() -> None:
    p = ProviderDef.model_validate(
        {"type": "openai", "api_key": "${K}"}, context={"env": {"K": "sk-secret"}}
    )
    assert p.key() == "sk-secret"
    assert isinstance(p.api_key, EnvRef)
    assert "sk-secret" not in repr(p) and "sk-secret" not in str(p.api_key)
    assert p.model_dump()["api_key"] == "${K}"


def test_env_reference_rules() -> None:
    ctx = {"env": {}}
    assert (
        "environment variable K is not set"
        in errors(ProviderDef, {"type": "openai", "api_key": "${K}"}, context=ctx)[0]
    )
    assert (
        "never the value itself"
        in errors(ProviderDef, {"type": "openai", "api_key": "sk-123"}, context=ctx)[0]
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"type": "azure", "resource": "r"}, "type azure needs deployment"),
        ({"type": "openai", "deployment": "d"}, "deployment only apply to type azure"),
        ({"type": "compatible"}, "type compatible needs base_url"),
        ({"type": "local", "api_key_env": "K"}, "type local takes no api key"),
        ({"type": "openai", "api_key_env": "K", "api_key": "${HOME}"}, "not both"),
        ({"type": "ollama"}, "Input should be 'openai', 'azure', 'compatible', 'local' or 'echo'"),
        (
            {"type": "openai", "llm": {"base_url": "http://127.0.0.1:11434/v1", "model": "m"}},
            "llm only applies to type local",
        ),
        (
            {"type": "local", "llm": {"base_url": "127.0.0.1:11434", "model": "m"}},
            "llm base_url must start with http:// or https://",
        ),
        ({"type": "local", "llm": {"base_url": "http://h/v1"}}, "Field required"),
    ],
)
def test_provider_consistency(data: dict[str, Any], message: str) -> None:
    assert any(message in m for m in errors(ProviderDef, data)), errors(ProviderDef, data)


def test_local_provider_with_a_chat_llm() -> None:
    p = ProviderDef.model_validate(
        {"type": "local", "llm": {"base_url": "http://127.0.0.1:11434/v1/", "model": "llama3.2"}}
    )
    assert p.llm is not None and p.llm.base_url == "http://127.0.0.1:11434/v1"
    assert p.llm.first_token_timeout_s == 8.0


# ---------- tools ----------


def test_tool_kinds() -> None:
    http = ToolDef.model_validate(
        {
            "http": {
                "url": "http://127.0.0.1:8080/x/{id}",
                "method": "GET",
                "body": "none",
                "response_path": "data.items",
            },
            "parameters": {"type": "object", "properties": {"id": {"type": "string"}}},
        }
    )
    assert http.kind == "http" and http.http is not None and http.http.max_bytes == 65536
    assert ToolDef.model_validate({"builtin": "end_call"}).kind == "builtin"
    assert ToolDef.model_validate({"mqtt": {"topic": "a/b"}}).kind == "mqtt"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "exactly one of http, mqtt, python or builtin"),
        ({"python": "not a ref"}, 'expected "module:function"'),
        ({"builtin": "dance"}, "Input should be 'hangup', 'transfer', 'send_dtmf' or 'end_call'"),
        ({"builtin": "hangup", "parameters": {"type": "array"}}, "must be a JSON Schema object"),
        (
            {"builtin": "hangup", "parameters": {"type": "object", "required": ["x"]}},
            "parameters.required names 'x', which is not in properties",
        ),
        (
            {"builtin": "hangup", "parameters": {"type": "object", "minProperties": "two"}},
            "parameters.minProperties is not valid JSON Schema",
        ),
        ({"http": {"url": "ftp://x"}}, "String should match pattern '^https?://'"),
        ({"http": {"url": "http://x", "response_path": "a..b"}}, "String should match pattern"),
    ],
)
def test_bad_tools(data: dict[str, Any], message: str) -> None:
    msgs = errors(ToolDef, data)
    assert any(message in m for m in msgs), msgs


def test_route_refuses_both_instructions_and_a_file_and_bad_sip_uris() -> None:
    assert any(
        "not both" in m
        for m in errors(Route, {"name": "r", "instructions": "x", "instructions_file": "y"})
    )
    assert any(
        "expected a SIP URI" in m
        for m in errors(Route, {"name": "r", "transfer_targets": {"desk": "4930123"}})
    )
    assert any("should match pattern" in m for m in errors(Route, {"name": "has space"}))


# ---------- the offline flow ----------

FLOW: dict[str, Any] = {
    "start": "welcome",
    "states": {
        "welcome": {
            "tool": {"name": "lookup", "args": {"phone": "{caller}"}, "result": "customer"},
            "say": "Hello {customer.first_name}, which day?",
            "intents": [
                {
                    "name": "book",
                    "examples": ["monday please"],
                    "slots": {
                        "day": "date",
                        "ward": "enum:[cardiology, radiology]",
                        "urgent": {"enum": ["yes", "no"]},
                    },
                    "confirm": "Did you say {day}?",
                    "tool": {"name": "book", "args": {"day": "{day}"}, "result": "booking"},
                    "then": "done",
                }
            ],
            "fallback": {"then": "transfer:nurse"},
        },
        "done": {"say": "Booked at {booking.time}.", "then": "hangup"},
    },
}


def test_flow_short_forms_and_a_clean_check() -> None:
    flow = Flow.model_validate(FLOW)
    slots = flow.states["welcome"].intents[0].slots
    assert slots["day"].type == "date"
    assert slots["ward"].type == "enum" and slots["ward"].values == ["cardiology", "radiology"]
    assert slots["urgent"].values == ["yes", "no"]
    assert flow.states["welcome"].fallback.say == "Sorry, could you repeat that?"
    assert flow.states["welcome"].fallback.max_retries == 2
    assert check_flow(flow, tools=["lookup", "book"], transfer_targets=["nurse"]) == []


def test_flow_cross_checks() -> None:
    data = {
        "start": "welcom",
        "states": {
            "welcome": {
                "say": "Hi {nme}",
                "intents": [
                    {"name": "a", "examples": ["x"], "then": "transfer:desk"},
                    {"name": "a", "examples": ["y"], "tool": {"name": "zap"}, "then": "gone"},
                ],
                "then": "hangup",
            },
            "orphan": {"say": "never said"},
        },
    }
    problems = check_flow(Flow.model_validate(data), tools=["book"], transfer_targets=[])
    got = {(".".join(map(str, p.loc)), p.warning): p.message for p in problems}
    assert got[("start", False)] == "unknown state 'welcom' (did you mean 'welcome'?)"
    assert got[("states.welcome.say", False)].startswith("placeholder {nme} is not a slot")
    assert "remove `then`" in got[("states.welcome.then", False)]
    assert got[("states.welcome.intents.0.then", False)].startswith(
        "unknown transfer target 'desk'"
    )
    assert got[("states.welcome.intents.1.name", False)] == "intent 'a' appears twice here"
    assert got[("states.welcome.intents.1.tool.name", False)].startswith(
        "tool 'zap' is not one of this route's tools"
    )
    assert got[("states.welcome.intents.1.then", False)] == "unknown state 'gone'"
    assert got[("states.orphan", True)] == "state 'orphan' is never reached"


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"then": "transfer to nurse"}, "String should match pattern"),
        ({"slots": {"x": "colour"}}, "unknown slot type 'colour'"),
        ({"examples": []}, "an intent needs examples (what the caller says) or dtmf"),
        ({"dtmf": "9x"}, "expected DTMF keys (0-9, *, #, A-D)"),
        ({"slots": {"x": {"type": "number", "length": 4}}}, "length only applies to a digits"),
    ],
)
def test_bad_flow_values(patch: dict[str, Any], message: str) -> None:
    intent = {"name": "a", "examples": ["x"], "then": "hangup", **patch}
    data = {"start": "s", "states": {"s": {"intents": [intent]}}}
    msgs = errors(Flow, data)
    assert any(message in m for m in msgs), msgs


# ---------- templates ----------


def test_render_fills_call_values_and_leaves_unknown_placeholders() -> None:
    now = datetime(2026, 3, 28, 23, 10, tzinfo=ZoneInfo("Europe/Berlin"))
    text = (
        "From {caller} to {called} on {weekday} {date} at {time}; ticket {header.x-ticket}; "
        "missing '{header.X-None}'; {unknown} stays; JSON {\"a\": 1} stays; {{caller}} is literal"
    )
    out = templates.render(
        text, caller="+4917", called="+4930", headers={"X-Ticket": "T-9"}, now=now
    )
    assert out == (
        "From +4917 to +4930 on Saturday 2026-03-28 at 23:10; ticket T-9; missing ''; "
        '{unknown} stays; JSON {"a": 1} stays; {caller} is literal'
    )
    assert templates.unknown_placeholders(text) == ["unknown"]
    assert templates.placeholders("{a} {b.c} {{d}}") == ["a", "b.c"]


@pytest.mark.parametrize(
    ("target", "ok"),
    [
        ("sip:nurse@example.com", True),
        ("sips:desk@10.0.0.1:5061;transport=tls", True),
        ("tel:+49-30-123456", True),
        ("nurse", False),
        ("sip:", False),
        ("sip:a b@example.com", False),
        ('sip:x"@example.com', False),
        ("tel:call-me", False),
        ("sip:" + "a" * 251, False),
    ],
)
def test_one_rule_decides_a_transfer_target_for_plans_and_commands(target: str, ok: bool) -> None:
    from telephony_bot import transfer_target
    from telephony_bot.events.commands import CommandError, parse_payload

    try:
        Route.model_validate({"name": "r", "transfer_targets": {"desk": target}})
        plan_ok = True
    except ValidationError:
        plan_ok = False
    assert plan_ok is ok
    assert (transfer_target.problem(target) is None) is ok
    # a command naming it reaches it only when the call's route could name it
    rules = transfer_target.TransferRules({"desk": target} if plan_ok else {})
    try:
        cmd = parse_payload("transfer", json.dumps({"target": target}))
        command_ok = rules.resolve(cmd.target)[0] == target  # type: ignore[attr-defined]
    except CommandError:
        command_ok = False
    assert command_ok is ok
