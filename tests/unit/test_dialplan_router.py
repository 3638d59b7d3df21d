"""Routing a call: order, number/caller/header patterns, opening hours (across DST changes
and holidays), after-hours and default routes; and a route's effective settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from telephony_bot.dialplan.loader import load
from telephony_bot.dialplan.router import CallInfo, effective, is_open, match
from telephony_bot.dialplan.schema import Dialplan, Hours

DIALPLANS = Path(__file__).resolve().parents[2] / "dialplans"
MON_NOON = datetime(2026, 3, 23, 11, 0, tzinfo=UTC)  # Monday 12:00 in Berlin (CET)


def plan(**data: Any) -> Dialplan:
    return Dialplan.model_validate(data)


def call(
    called: str = "+4930123456",
    caller: str = "+4917000000",
    headers: dict[str, str] | None = None,
    at: datetime = MON_NOON,
) -> CallInfo:
    return CallInfo(called, caller, headers or {}, at)


def name(p: Dialplan, c: CallInfo) -> str | None:
    d = match(p, c)
    return d.route.name if d.route else None


def test_routes_are_tried_in_order() -> None:
    p = plan(
        routes=[
            {"name": "exact", "match": {"number": "+4930123456"}},
            {"name": "prefix", "match": {"number": {"prefix": "+4930"}}},
            {"name": "anything"},
        ]
    )
    assert name(p, call("+4930123456")) == "exact"
    assert name(p, call("+4930999")) == "prefix"
    assert name(p, call("+4989000")) == "anything"
    reordered = plan(routes=[p.routes[2].model_dump(), p.routes[0].model_dump()])
    assert name(reordered, call("+4930123456")) == "anything"


def test_exact_prefix_and_regex_number_patterns() -> None:
    p = plan(
        routes=[
            {"name": "exact", "match": {"number": {"exact": "+4940111"}}},
            {"name": "prefix", "match": {"number": {"prefix": "+4940"}}},
            {"name": "regex", "match": {"number": {"regex": r"\+49(89|30)\d{3}"}}},
            {"name": "list", "match": {"number": ["+4969111", {"prefix": "+4969"}]}},
        ]
    )
    assert name(p, call("+4940111")) == "exact"
    assert name(p, call("+40401110")) is None  # exact is whole-number equality
    assert name(p, call("+4940111222")) == "prefix"
    assert name(p, call("+4989123")) == "regex"
    assert name(p, call("+4989123999")) is None  # a regex must match the whole number
    assert name(p, call("+4969555")) == "list"


def test_caller_patterns() -> None:
    p = plan(
        routes=[
            {"name": "company", "match": {"caller": {"prefix": "+491512345"}}},
            {"name": "anonymous", "match": {"caller": {"regex": "(?i)anonymous|unknown"}}},
        ]
    )
    assert name(p, call(caller="+4915123456789")) == "company"
    assert name(p, call(caller="Anonymous")) == "anonymous"
    assert name(p, call(caller="+4917000")) is None


def test_headers_match_case_insensitive_names_and_regex_search() -> None:
    p = plan(
        routes=[
            {
                "name": "premier",
                "match": {"number": "+4969555", "headers": {"X-Customer-Tier": "^premier$"}},
            },
            {"name": "vip-any", "match": {"headers": {"x-vip": "yes"}}},
            {"name": "rest"},
        ]
    )
    assert name(p, call("+4969555", headers={"x-customer-tier": "premier"})) == "premier"
    assert name(p, call("+4969555", headers={"X-CUSTOMER-TIER": "premier-plus"})) == "rest"
    assert name(p, call("+4969555")) == "rest"  # a missing header does not match
    assert name(p, call(headers={"X-VIP": "oh yes please"})) == "vip-any"  # search, not full


BERLIN_DAILY = {
    "timezone": "Europe/Berlin",
    "open": {"mon-sun": "08:00-18:00"},
}


@pytest.mark.parametrize(
    ("utc", "expected", "local"),
    [
        # the day before the spring change (CET, UTC+1) ...
        (datetime(2026, 3, 28, 6, 30, tzinfo=UTC), False, "Sat 07:30"),
        (datetime(2026, 3, 28, 16, 30, tzinfo=UTC), True, "Sat 17:30"),
        # ... and the same UTC times on the day of the change (CEST, UTC+2)
        (datetime(2026, 3, 29, 6, 30, tzinfo=UTC), True, "Sun 08:30"),
        (datetime(2026, 3, 29, 16, 30, tzinfo=UTC), False, "Sun 18:30"),
        # autumn: back to CET on Sunday 25 October 2026
        (datetime(2026, 10, 24, 6, 30, tzinfo=UTC), True, "Sat 08:30"),
        (datetime(2026, 10, 25, 6, 30, tzinfo=UTC), False, "Sun 07:30"),
        # window edges: start included, end excluded
        (datetime(2026, 3, 23, 7, 0, tzinfo=UTC), True, "Mon 08:00"),
        (datetime(2026, 3, 23, 16, 59, 59, tzinfo=UTC), True, "Mon 17:59"),
        (datetime(2026, 3, 23, 17, 0, tzinfo=UTC), False, "Mon 18:00"),
    ],
)
def test_opening_hours_follow_the_route_timezone_across_dst(
    utc: datetime, expected: bool, local: str
) -> None:
    hours = Hours.model_validate(BERLIN_DAILY)
    assert is_open(hours, utc) == (expected, f"{local} Europe/Berlin")
    # the caller's own offset does not matter, only the instant
    assert is_open(hours, utc.astimezone(timezone(timedelta(hours=-7))))[0] is expected


def test_weekday_windows_several_per_day_and_closed_days() -> None:
    hours = Hours.model_validate(
        {
            "timezone": "America/New_York",
            "open": {"mon-fri": "09:00-12:00, 13:00-17:00", "sat": "10:00-24:00", "sun": "closed"},
        }
    )
    ny = ZoneInfo("America/New_York")

    def at(day: int, hour: int, minute: int = 0) -> datetime:
        return datetime(2026, 6, day, hour, minute, tzinfo=ny).astimezone(UTC)

    assert is_open(hours, at(1, 9))[0] and not is_open(hours, at(1, 12, 30))[0]  # Mon lunch
    assert is_open(hours, at(6, 23, 59))[0]  # Sat until midnight
    assert not is_open(hours, at(7, 11))[0]  # Sun closed


def test_holiday_is_closed_and_after_hours_route_takes_the_call() -> None:
    p = plan(
        routes=[
            {
                "name": "day",
                "match": {"number": {"prefix": "+4930"}},
                "hours": {**BERLIN_DAILY, "holidays": ["2026-12-25"], "after_hours_route": "night"},
            },
            {"name": "night", "match": {"number": "+4930999999"}},
        ]
    )
    xmas = datetime(2026, 12, 25, 10, 0, tzinfo=UTC)
    d = match(p, call("+4930123", at=xmas))
    assert d.route is not None and d.route.name == "night" and d.after_hours
    assert d.reason == (
        "matched route 'day': number +4930123 matches prefix +4930; outside hours "
        "(holiday 2026-12-25, Fri 11:00 Europe/Berlin) → after_hours_route 'night'"
    )
    saturday_night = datetime(2026, 3, 28, 22, 10, tzinfo=UTC)
    d = match(p, call("+4930123", at=saturday_night))
    assert d.route is not None and d.route.name == "night" and d.after_hours
    assert "outside hours (Sat 23:10 Europe/Berlin) → after_hours_route 'night'" in d.reason
    d = match(p, call("+4930123", at=MON_NOON))
    assert d.route is not None and d.route.name == "day" and not d.after_hours
    assert d.reason == (
        "matched route 'day': number +4930123 matches prefix +4930; "
        "within hours (Mon 12:00 Europe/Berlin)"
    )


def test_closed_route_without_after_hours_route_falls_through() -> None:
    p = plan(
        routes=[
            {"name": "day", "hours": BERLIN_DAILY},
            {"name": "voicemail"},
        ]
    )
    night = datetime(2026, 3, 23, 22, 0, tzinfo=UTC)
    assert name(p, call(at=night)) == "voicemail"
    assert name(p, call(at=MON_NOON)) == "day"


def test_default_route_and_no_match() -> None:
    routes = [{"name": "berlin", "match": {"number": {"prefix": "+4930"}}}, {"name": "other"}]
    routes[1]["match"] = {"number": "+4940000"}
    with_default = plan(routes=routes, default_route="other")
    d = match(with_default, call("+4989123", caller="+4917"))
    assert d.route is not None and d.route.name == "other" and not d.after_hours
    assert d.reason == "no route matched +4989123 from +4917; using default_route 'other'"

    without = plan(routes=routes)
    d = match(without, call("+4989123", caller="+4917"))
    assert d.route is None
    assert d.reason == (
        "no route matched +4989123 from +4917; no default_route: the call is refused (404)"
    )
    assert match(plan(), call()).route is None


def test_reason_for_a_closed_route_then_default() -> None:
    p = plan(routes=[{"name": "day", "hours": BERLIN_DAILY}], default_route="day")
    d = match(p, call(at=datetime(2026, 3, 23, 22, 0, tzinfo=UTC)))
    assert d.reason == (
        "route 'day' matched but is closed (Mon 23:00 Europe/Berlin); using default_route 'day'"
    )


def test_call_info_needs_an_aware_datetime() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        CallInfo("+4930", "+4940", {}, datetime(2026, 1, 1, 12, 0))


# ---------- effective settings ----------


def test_effective_merges_defaults_with_the_route() -> None:
    p = plan(
        defaults={
            "provider": "openai",
            "voice": "alloy",
            "greeting": "Hello!",
            "tools": ["hangup"],
            "transfer_targets": {"desk": "sip:desk@example.com"},
            "max_call_seconds": 600,
            "instructions": "Default instructions.",
            "openai": {"model": "gpt-realtime", "api_key_env": "MY_KEY"},
        },
        providers={"local-engine": {"type": "local", "model": "flow"}},
        tools={"lookup": {"mqtt": {"topic": "a/b"}, "description": "Look up"}},
        routes=[
            {
                "name": "night",
                "provider": "local-engine",
                "voice": "ash",
                "greeting": None,
                "tools": ["lookup", "transfer"],
                "transfer_targets": {"nurse": "sip:nurse@example.com"},
                "instructions": "Night for {caller} at {time} on {weekday}.",
                "hours": {**BERLIN_DAILY, "after_hours_route": "plain"},
            },
            {"name": "plain"},
        ],
    )
    night = effective(p, p.routes[0])
    assert night.provider_name == "local-engine" and night.provider.type == "local"
    assert night.model == "flow"
    assert night.voice == "ash" and night.greeting is None  # an explicit null wins
    assert list(night.tools) == ["lookup", "transfer"]
    assert night.tools["lookup"].mqtt is not None and night.tools["transfer"].builtin == "transfer"
    assert dict(night.transfer_targets) == {
        "desk": "sip:desk@example.com",
        "nurse": "sip:nurse@example.com",
    }
    assert night.max_call_seconds == 600
    c = call(caller="+4917111", at=datetime(2026, 3, 28, 22, 10, tzinfo=UTC))
    assert night.render_instructions(c) == "Night for +4917111 at 23:10 on Saturday."

    plain = effective(p, p.routes[1])
    assert plain.provider_name == "openai" and plain.provider.type == "openai"
    assert plain.provider.model == "gpt-realtime" and plain.model == "gpt-realtime"
    assert plain.provider.key({"MY_KEY": "k"}) == "k"
    assert plain.voice == "alloy" and plain.render_greeting(c) == "Hello!"
    assert list(plain.tools) == ["hangup"]
    assert plain.render_instructions(c) == "Default instructions."

    only_defaults = effective(p, None)
    assert only_defaults.name is None and only_defaults.voice == "alloy"


def test_effective_builtin_providers() -> None:
    p = plan(defaults={"provider": "echo", "echo_delay_ms": 300})
    echo = effective(p, None)
    assert echo.provider.type == "echo" and echo.echo_delay_ms == 300
    other = plan(defaults={"provider": "openai", "openai": {"base_url": "ws://127.0.0.1:9000/v1"}})
    compat = effective(other, None)
    assert compat.provider.type == "compatible"
    assert compat.provider.base_url == "ws://127.0.0.1:9000/v1"


# ---------- the shipped examples route as their comments say ----------


def test_hospital_day_and_night() -> None:
    p = load(DIALPLANS / "hospital.yaml", env={"HOSPITAL_API_TOKEN": "t"}).plan
    tuesday_10 = datetime(2026, 4, 14, 8, 0, tzinfo=UTC)
    d = match(p, call("+493012345600", at=tuesday_10))
    assert d.route is not None and d.route.name == "hospital-day" and not d.after_hours
    saturday_23 = datetime(2026, 4, 18, 21, 10, tzinfo=UTC)
    d = match(p, call("+493012345600", at=saturday_23))
    assert d.route is not None and d.route.name == "hospital-night" and d.after_hours
    eff = effective(p, d.route)
    assert eff.provider.type == "local" and eff.transfer_targets["nurse"].startswith("sip:")
    good_friday = datetime(2026, 4, 3, 9, 0, tzinfo=UTC)
    assert name(p, call("+493012345600", at=good_friday)) == "hospital-night"


def test_public_service_language_per_number() -> None:
    p = load(DIALPLANS / "public_service.yaml", env={}).plan
    langs = {}
    for number in ("+4940123450", "+4940123451", "+4940123452"):
        d = match(p, call(number))
        assert d.route is not None
        eff = effective(p, d.route)
        langs[number] = (eff.language, eff.voice, eff.transfer_targets["desk"])
    assert [v[0] for v in langs.values()] == ["de-DE", "en-GB", "tr-TR"]
    assert len({v[1] for v in langs.values()}) == 3 and len({v[2] for v in langs.values()}) == 3


def test_bank_premier_header_and_field_inspection_callers() -> None:
    bank = load(DIALPLANS / "bank.yaml", env={"BANK_API_TOKEN": "t"}).plan
    assert name(bank, call("+496955500100", headers={"x-customer-tier": "premier"})) == (
        "bank-premier"
    )
    assert name(bank, call("+496955500100")) == "bank-balance"
    field = load(DIALPLANS / "field_inspection.yaml", env={"FIELD_API_TOKEN": "t"}).plan
    assert name(field, call("+4989200300", caller="+4915123456789")) == "field-inspection"
    assert name(field, call("+4989200300", caller="+4917600000")) == "field-unknown-caller"


def test_a_route_can_match_the_trunk_a_call_came_through() -> None:
    p = plan(
        routes=[
            {"name": "pbx-line", "match": {"trunk": "pbx"}},
            {"name": "providers", "match": {"trunk": ["sip_a", "sip_b"], "number": "+4930123456"}},
        ],
    )
    via_pbx = CallInfo("+4930123456", "+4917", {}, MON_NOON, trunk="pbx")
    assert match(p, via_pbx).reason == "matched route 'pbx-line': trunk pbx"
    assert name(p, CallInfo("+4930123456", "+4917", {}, MON_NOON, trunk="sip_b")) == "providers"
    # the same number from no trunk (or another one) is not theirs
    assert name(p, call()) is None
    stranger = CallInfo("+4930123456", "+4917", {}, MON_NOON, trunk="other")
    assert match(p, stranger).reason == (
        "no route matched +4930123456 from +4917 via trunk other; "
        "no default_route: the call is refused (404)"
    )
    with pytest.raises(ValueError, match="trunk"):
        plan(routes=[{"name": "x", "match": {"trunk": "bad name"}}])
