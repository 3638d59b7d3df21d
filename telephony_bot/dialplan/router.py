"""Which route a call gets, and what that route means once defaults are filled in. Pure.

Routes are tried in order. A route matches when every condition of its `match` holds:
the dialed number and the caller id against their patterns (exact, prefix, or regex
full match), the trunk the call came through (one of the names listed), and each listed
SIP header (name case-insensitive) against its regex (search). A matching route with
`hours` is open only inside its weekday windows, in its timezone, and never on a listed
holiday; when closed, the call goes to its
`after_hours_route` if it names one, else the next routes are tried. When nothing
matches, `default_route` takes the call (whatever its own match or hours say); without
one the call is refused (404).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Literal

from telephony_bot.dialplan import templates
from telephony_bot.dialplan.flow import Flow
from telephony_bot.dialplan.schema import (
    BUILTIN_TOOLS,
    WEEKDAYS,
    BargeIn,
    Defaults,
    Dialplan,
    Dtmf,
    Hours,
    Match,
    NumberPattern,
    OnError,
    ProviderDef,
    Route,
    Stall,
    ToolDef,
)

__all__ = [
    "CallInfo",
    "EffectiveRoute",
    "RouteDecision",
    "effective",
    "is_open",
    "match",
    "provider_def",
]

_OPENAI_URLS = ("wss://api.openai.com/v1", "https://api.openai.com/v1")


@dataclass(frozen=True)
class CallInfo:
    """What the router knows about a new call. `at` must be timezone-aware."""

    called: str
    caller: str
    headers: Mapping[str, str]
    at: datetime
    trunk: str = ""  # the trunk it came through (engine config `trunks:`); "": none known

    def __post_init__(self) -> None:
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError("CallInfo.at must be a timezone-aware datetime")


@dataclass(frozen=True)
class RouteDecision:
    route: Route | None  # None: refuse the call (404)
    reason: str  # in words, for logs and `dialplan test`
    after_hours: bool = False  # the route is the after_hours_route of a closed route


def match(plan: Dialplan, call: CallInfo) -> RouteDecision:
    """The route for `call`, and why."""
    notes: list[str] = []
    for route in plan.routes:
        why = _conditions(route.match, call)
        if why is None:
            continue
        because = "; ".join(why) if why else "it matches every call"
        if route.hours is not None:
            open_now, when = is_open(route.hours, call.at)
            if not open_now:
                target_name = route.hours.after_hours_route
                target = plan.route(target_name) if target_name else None
                if target is not None:
                    return RouteDecision(
                        target,
                        f"matched route {route.name!r}: {because}; outside hours ({when}) "
                        f"→ after_hours_route {target.name!r}",
                        after_hours=True,
                    )
                notes.append(f"route {route.name!r} matched but is closed ({when})")
                continue
            because += f"; within hours ({when})"
        return RouteDecision(route, f"matched route {route.name!r}: {because}")
    via = f" via trunk {call.trunk}" if call.trunk else ""
    tried = "; ".join(notes) if notes else f"no route matched {call.called} from {call.caller}{via}"
    if plan.default_route:
        fallback = plan.route(plan.default_route)
        if fallback is not None:
            return RouteDecision(fallback, f"{tried}; using default_route {fallback.name!r}")
    return RouteDecision(None, f"{tried}; no default_route: the call is refused (404)")


def is_open(hours: Hours, at: datetime) -> tuple[bool, str]:
    """Whether `hours` are open at `at`, and the local time in words ("Sat 23:10 Europe/Berlin")."""
    local = at.astimezone(hours.zone)
    when = f"{local:%a %H:%M} {hours.timezone}"
    if local.date() in hours.holidays:
        return False, f"holiday {local.date().isoformat()}, {when}"
    minute = local.hour * 60 + local.minute + local.second / 60
    windows = hours.open.get(WEEKDAYS[local.weekday()], [])  # type: ignore[call-overload]
    return any(w.start <= minute < w.end for w in windows), when


def _first(patterns: list[NumberPattern], value: str) -> NumberPattern | None:
    return next((p for p in patterns if p.matches(value)), None)


def _conditions(m: Match, call: CallInfo) -> list[str] | None:
    """Why the call matches (one phrase per condition), or None when it does not."""
    why: list[str] = []
    if m.number is not None:
        p = _first(m.number, call.called)
        if p is None:
            return None
        why.append(f"number {call.called} {p.describe()}")
    if m.caller is not None:
        p = _first(m.caller, call.caller)
        if p is None:
            return None
        why.append(f"caller {call.caller} {p.describe()}")
    if m.trunk is not None:
        if call.trunk not in m.trunk:
            return None
        why.append(f"trunk {call.trunk}")
    if m.headers:
        lowered = {k.lower(): v for k, v in call.headers.items()}
        for name, rx in m.headers.items():
            value = lowered.get(name.lower())
            if value is None or re.search(rx, value) is None:
                return None
            why.append(f"header {name} matches {rx!r}")
    return why


# ---------- a route with its defaults filled in ----------


@dataclass(frozen=True)
class EffectiveRoute:
    """Everything a call on this route needs; instructions are rendered per call."""

    name: str | None  # None: the plan's defaults alone (no routes)
    provider_name: str
    provider: ProviderDef
    model: str | None
    voice: str
    language: str | None
    instructions: str  # the template; render_instructions(call) fills it in
    greeting: str | None  # the template (None: no greeting)
    flow: Flow | None
    tools: Mapping[str, ToolDef]  # in the order listed; builtins as ToolDef(builtin=...)
    barge_in: BargeIn
    stall: Stall
    dtmf: Dtmf
    max_call_seconds: float
    idle_seconds: float
    recording: bool
    transfer_targets: Mapping[str, str]
    on_error: OnError | None
    redact: tuple[str, ...]  # transcript redaction patterns (redact.Redactor)
    audio_format: Literal["pcm16", "g711_ulaw", "g711_alaw"]
    filler_after_ms: int
    echo_delay_ms: int
    tool_window_ms: int = 5000
    prewarm: bool = True
    prewarm_max_wait_ms: int = 2000
    timezone: str | None = None  # the route's hours timezone: {date}/{time} are local to it
    # the providers that take over, in order, when the one before cannot go on
    fallbacks: tuple[tuple[str, ProviderDef], ...] = ()

    def _now(self, call: CallInfo) -> datetime:
        if self.timezone is None:
            return call.at
        from zoneinfo import ZoneInfo

        return call.at.astimezone(ZoneInfo(self.timezone))

    def render_instructions(self, call: CallInfo) -> str:
        """The instructions for this call, placeholders filled in."""
        return templates.render(
            self.instructions,
            caller=call.caller,
            called=call.called,
            headers=call.headers,
            now=self._now(call),
        )

    def render_greeting(self, call: CallInfo) -> str | None:
        if self.greeting is None:
            return None
        return templates.render(
            self.greeting,
            caller=call.caller,
            called=call.called,
            headers=call.headers,
            now=self._now(call),
        )


def _set(route: Route | None, name: str) -> bool:
    return (
        route is not None
        and name in route.model_fields_set
        and (getattr(route, name) is not None or name == "greeting")
    )


def _instructions(d: Defaults, route: Route | None) -> str:
    if route is not None and route.instructions is not None:
        return route.instructions
    if route is not None and route.instructions_file is not None:
        return route._instructions_text or ""
    if d.instructions_file is not None:
        return d._instructions_text or ""
    return d.instructions


def provider_def(plan: Dialplan, name: str) -> ProviderDef:
    """A named provider, or the built-in echo / local / openai (from defaults.openai)."""
    if name in plan.providers:
        return plan.providers[name]
    d = plan.defaults
    if name == "echo":
        return ProviderDef(type="echo", echo_delay_ms=d.echo_delay_ms)
    if name == "local":
        return ProviderDef(type="local")
    if name == "openai":
        o = d.openai
        key = {"api_key": o.api_key} if o.api_key is not None else {"api_key_env": o.api_key_env}
        if o.azure is not None:
            return ProviderDef(
                type="azure",
                model=o.model,
                resource=o.azure.resource,
                deployment=o.azure.deployment,
                api_version=o.azure.api_version,
                **key,
            )
        official = o.base_url.rstrip("/") in _OPENAI_URLS
        return ProviderDef(
            type="openai" if official else "compatible",
            model=o.model,
            dialect=o.dialect,
            base_url=o.base_url,
            **key,
        )
    raise KeyError(f"unknown provider {name!r}")


def effective(plan: Dialplan, route: Route | None) -> EffectiveRoute:
    """`route` over `plan.defaults` (route=None: the defaults alone).

    A route's field wins when the route sets it; `transfer_targets` add to the defaults';
    `tools` replace them; `greeting: null` on a route means no greeting even if the
    defaults have one.
    """
    d = plan.defaults

    def pick(name: str) -> object:
        return getattr(route, name) if _set(route, name) else getattr(d, name)

    chosen = pick("provider")
    if chosen is None:  # the loader refuses such plans; a plan built in code may lack it
        raise KeyError(f"route {route.name if route else '(defaults)'!r} names no provider")
    names = [str(p) for p in chosen] if isinstance(chosen, list) else [str(chosen)]
    provider_name, provider = names[0], provider_def(plan, names[0])
    fallbacks = tuple((n, provider_def(plan, n)) for n in names[1:])
    tool_names: list[str] = list(route.tools if route and route.tools is not None else d.tools)
    tools: dict[str, ToolDef] = {}
    for t in tool_names:
        if t in plan.tools:
            tools[t] = plan.tools[t]
        elif t in BUILTIN_TOOLS:
            tools[t] = ToolDef(builtin=t)  # type: ignore[arg-type]
        else:
            raise KeyError(f"unknown tool {t!r}")
    targets = dict(d.transfer_targets)
    if route is not None and route.transfer_targets:
        targets.update(route.transfer_targets)
    model = route.model if route and route.model else (d.model or provider.model)
    echo_delay = provider.echo_delay_ms if provider.echo_delay_ms is not None else d.echo_delay_ms
    return EffectiveRoute(
        name=route.name if route else None,
        provider_name=provider_name,
        provider=provider,
        fallbacks=fallbacks,
        model=model,
        voice=str(pick("voice") or ""),
        language=pick("language"),  # type: ignore[arg-type]
        instructions=_instructions(d, route),
        greeting=pick("greeting"),  # type: ignore[arg-type]
        flow=pick("flow"),  # type: ignore[arg-type]
        tools=MappingProxyType(tools),
        barge_in=pick("barge_in"),  # type: ignore[arg-type]
        stall=pick("stall"),  # type: ignore[arg-type]
        dtmf=pick("dtmf"),  # type: ignore[arg-type]
        max_call_seconds=float(pick("max_call_seconds")),  # type: ignore[arg-type]
        idle_seconds=float(pick("idle_seconds")),  # type: ignore[arg-type]
        recording=bool(pick("recording")),
        transfer_targets=MappingProxyType(targets),
        on_error=pick("on_error"),  # type: ignore[arg-type]
        redact=tuple(pick("redact")),  # type: ignore[arg-type]
        audio_format=d.audio_format,
        filler_after_ms=d.filler_after_ms,
        tool_window_ms=int(pick("tool_window_ms")),  # type: ignore[arg-type]
        echo_delay_ms=echo_delay,
        prewarm=bool(pick("prewarm")),
        prewarm_max_wait_ms=d.prewarm_max_wait_ms,
        timezone=route.hours.timezone if route and route.hours else None,
    )
