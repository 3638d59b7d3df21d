"""Composition root: turns a loaded dialplan and a routed call into the provider, session
config, options and limits that call runs with. Holds no policy of its own."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from telephony_bot import price_table
from telephony_bot.config import MqttSettings
from telephony_bot.dialplan.loader import LoadedPlan
from telephony_bot.dialplan.router import CallInfo, EffectiveRoute, effective, match
from telephony_bot.dialplan.schema import Dialplan, ProviderDef, ToolDef
from telephony_bot.errors import ConfigError
from telephony_bot.price_table import PriceTable
from telephony_bot.providers.base import Provider, SessionConfig, ToolSpec
from telephony_bot.providers.unconfigured import Unconfigured
from telephony_bot.redact import Privacy, Redactor
from telephony_bot.session.settings import CallLimits, Fallback, SessionOptions
from telephony_bot.session.usage import CallPrices
from telephony_bot.tools.base import Tool
from telephony_bot.tools.builtin import hangup_tool, send_dtmf_tool, transfer_tool
from telephony_bot.tools.python import python_tool
from telephony_bot.transfer_target import TransferRules

LOCAL_ENGINE_PORT = 8765
LOCAL_ENGINE_URL = f"ws://127.0.0.1:{LOCAL_ENGINE_PORT}/v1"
DEFAULT_MODEL = "gpt-4o-realtime-preview-2024-12-17"


@dataclass(frozen=True)
class CallSetup:
    provider: Provider
    config: SessionConfig
    options: SessionOptions
    limits: CallLimits | None = None
    route: str | None = None
    plan_version: str = ""


def model_of(pdef: ProviderDef, route: EffectiveRoute | None = None) -> str:
    """The model a provider serves a route with: the route's `model`, else the provider's,
    else the default; an Azure deployment's is its model, else its deployment's name; the
    offline engine and the echo name none."""
    named = (route.model if route else None) or pdef.model
    if pdef.type in ("local", "echo"):
        return named or ""
    if pdef.type == "azure":
        return named or pdef.deployment or ""
    return named or DEFAULT_MODEL


def missing_key(pdef: ProviderDef) -> str | None:
    """Why a provider cannot run here (a hosted model whose API key is not set), or None."""
    if pdef.type not in ("openai", "azure") or pdef.key():
        return None
    if pdef.type == "azure":
        return f"provider azure: set {pdef.api_key_env or 'its api_key'}"
    return f"provider openai: set the environment variable {pdef.api_key_env}"


def build_provider(pdef: ProviderDef, route: EffectiveRoute | None = None) -> Provider:
    if pdef.type == "echo":
        from telephony_bot.providers.echo import EchoProvider

        delay = pdef.echo_delay_ms if pdef.echo_delay_ms is not None else 0
        return EchoProvider(delay_ms=route.echo_delay_ms if route and not delay else delay)
    from telephony_bot.providers.openai.client import OpenAIRealtimeProvider
    from telephony_bot.providers.openai.endpoints import (
        azure_endpoint,
        compatible_endpoint,
        openai_endpoint,
    )

    key = pdef.key()
    model = model_of(pdef, route)
    if missing := missing_key(pdef):
        return Unconfigured(pdef.type, missing)
    if pdef.type == "azure":
        assert key is not None
        ep = azure_endpoint(
            pdef.resource or "",
            pdef.deployment or "",
            pdef.api_version or "2024-10-01-preview",
            key,
        )
    elif pdef.type == "openai":
        assert key is not None
        ep = openai_endpoint(model, key, pdef.dialect)
    elif pdef.type == "local":
        # The offline engine is a Realtime-compatible server of its own (one per machine).
        url = pdef.base_url or os.environ.get("TELEPHONY_BOT_LOCAL_ENGINE", LOCAL_ENGINE_URL)
        ep = compatible_endpoint(url, "local", None, "preview")
    else:
        ep = compatible_endpoint(pdef.base_url or "", model, key, pdef.dialect or "preview")
    return OpenAIRealtimeProvider(ep)


def build_tool(
    name: str, t: ToolDef, targets: dict[str, str], mqtt: MqttSettings | None = None
) -> Tool:
    """`mqtt`: the engine's broker (`--config`, TELEPHONY_BOT_MQTT_*), which MQTT tools use;
    None: a broker on 127.0.0.1:1883."""
    tool = _build_tool(name, t, targets, mqtt)
    tool.is_async = t.is_async
    return tool


def _build_tool(name: str, t: ToolDef, targets: dict[str, str], mqtt: MqttSettings | None) -> Tool:
    spec = ToolSpec(name, t.description, t.model_parameters)  # `sensitive` is ours alone
    if t.builtin is not None or name in ("hangup", "transfer", "send_dtmf", "end_call"):
        kind = t.builtin or name
        if kind in ("hangup", "end_call"):
            tool = hangup_tool()
        elif kind == "transfer":
            if not targets:
                raise ConfigError("tool transfer needs transfer_targets on the route")
            tool = transfer_tool(targets)
        else:
            tool = send_dtmf_tool()
        if kind == "end_call":
            tool.spec = ToolSpec("end_call", tool.spec.description, tool.spec.parameters)
        return tool
    if t.http is not None:
        from telephony_bot.tools.http import http_tool

        h = t.http
        return http_tool(
            spec,
            method=h.method,
            url=h.url,
            headers={k: v.get_secret_value() for k, v in h.headers.items()},
            body=h.body,
            retries=h.retries,
            response_path=h.response_path,
            max_bytes=h.max_bytes,
            timeout_s=t.timeout_s,
        )
    if t.mqtt is not None:
        from telephony_bot.tools.mqtt import MqttBroker, mqtt_tool

        return mqtt_tool(
            spec,
            broker=MqttBroker.from_settings(mqtt or MqttSettings()),
            topic=t.mqtt.topic,
            response_timeout_s=t.mqtt.response_timeout_s,
            timeout_s=t.timeout_s,
        )
    assert t.python is not None
    return python_tool(spec, t.python, t.timeout_s)


def _local_extra(pdef: ProviderDef, route: EffectiveRoute, call: CallInfo | None) -> dict[str, Any]:
    """What the local engine needs beyond the Realtime session: the brain (a chat LLM, or the
    route's scripted flow) and the caller's variables. Never sent to OpenAI."""
    if pdef.type != "local":
        return {}
    extra: dict[str, Any] = {}
    if pdef.llm is not None:
        extra["llm"] = pdef.llm.model_dump(mode="json", exclude_none=True)
    elif route.flow is not None:
        extra["flow"] = route.flow.model_dump(mode="json", exclude_none=True)
    if extra:
        extra["variables"] = _variables(call)
    return extra


def _greeting(route: EffectiveRoute, pdef: ProviderDef, call: CallInfo | None) -> str | None:
    """What the bot says first: the route's greeting; with none (`greeting: null`), a
    scripted flow on the offline engine whose start state acts (a lookup, words) opens the
    call itself ("": the provider speaks first, the engine runs the flow's start). A realtime
    model, an echo or a chat LLM without a greeting waits for the caller, as before."""
    greeting = route.render_greeting(call) if call else route.greeting
    if greeting is not None:
        return greeting
    flow = route.flow
    if pdef.type == "local" and pdef.llm is None and flow is not None and flow.speaks_first():
        return ""
    return None


def for_route(
    plan: Dialplan,
    route: EffectiveRoute,
    call: CallInfo | None = None,
    provider_override: str | None = None,
    plan_version: str = "",
    *,
    mqtt: MqttSettings | None = None,
    prices: PriceTable | None = None,
) -> CallSetup:
    """`prices`: the engine's price table (None: the shipped one)."""
    targets = dict(route.transfer_targets)
    tools = {name: build_tool(name, t, targets, mqtt) for name, t in route.tools.items()}
    provider_name = provider_override or route.provider_name
    pdef = route.provider if provider_override is None else _override(plan, provider_override)
    instructions = route.render_instructions(call) if call else route.instructions
    greeting = _greeting(route, pdef, call)

    def config_for(name: str, p: ProviderDef) -> SessionConfig:
        return SessionConfig(
            provider=name,
            instructions=instructions,
            voice=route.voice,
            tools=tuple(t.spec for t in tools.values()),
            audio_format=route.audio_format,
            echo_delay_ms=route.echo_delay_ms,
            extra=_local_extra(p, route, call),
        )

    config = config_for(provider_name, pdef)
    provider = build_provider(pdef, route)
    fallbacks = (
        ()
        if provider_override is not None
        else tuple(
            Fallback(name, build_provider(p), config_for(name, p)) for name, p in route.fallbacks
        )
    )
    # each provider is priced by the model it serves (fallbacks are built without the route)
    table = prices or price_table.shipped()
    served = [(provider_name, pdef, route)]
    served += [(name, p, None) for name, p in route.fallbacks] if fallbacks else []
    call_prices = CallPrices(
        table.version, {name: table.price(p.type, model_of(p, r)) for name, p, r in served}
    )
    options = SessionOptions(
        greeting=greeting,
        barge_in=route.barge_in.settings(interruptible=provider.capabilities.interruptible),
        stall=route.stall.settings(),
        dtmf=route.dtmf.settings(),
        tools=tools,
        filler_after_ms=route.filler_after_ms,
        tool_window_ms=route.tool_window_ms,
        on_error_transfer=_on_error_target(route),
        on_error_say=route.on_error._pcm if route.on_error else None,
        prewarm=route.prewarm,
        prewarm_max_wait_ms=route.prewarm_max_wait_ms,
        fallbacks=fallbacks,
        prices=call_prices,
        # the numbers outbound.allow permits come from the engine config (the worker's)
        transfers=TransferRules(MappingProxyType(targets), route=route.name),
        # whether transcripts are logged at info level comes from it too
        privacy=Privacy(
            redactor=Redactor(route.redact),
            sensitive=MappingProxyType(
                {name: t.sensitive for name, t in route.tools.items() if t.sensitive}
            ),
            mask_dtmf=route.dtmf.mask,
        ),
    )
    limits = CallLimits(max_call_seconds=route.max_call_seconds, idle_seconds=route.idle_seconds)
    return CallSetup(provider, config, options, limits, route.name, plan_version)


def _variables(call: CallInfo | None) -> dict[str, str]:
    if call is None:
        return {}
    out = {"caller": call.caller, "called": call.called}
    out.update({f"header.{k}": v for k, v in call.headers.items()})
    return out


def _on_error_target(route: EffectiveRoute) -> str | None:
    name = route.on_error.transfer if route.on_error else None
    if not name:
        return None
    if name not in route.transfer_targets:
        raise ConfigError(f"on_error.transfer names {name!r}, which is not a transfer target")
    return route.transfer_targets[name]


def _override(plan: Dialplan, name: str) -> ProviderDef:
    from telephony_bot.dialplan.router import provider_def

    try:
        return provider_def(plan, name)
    except KeyError:
        raise ConfigError(f"unknown provider {name!r}; available: echo, openai") from None


def for_call(
    loaded: LoadedPlan,
    call: CallInfo,
    provider_override: str | None = None,
    *,
    mqtt: MqttSettings | None = None,
    prices: PriceTable | None = None,
) -> tuple[CallSetup | None, str]:
    """Route a call: its setup, or None (refuse with 404), and the reason in words."""
    if not loaded.plan.routes:
        route = effective(loaded.plan, None)
        reason = "the plan has no routes: its defaults apply"
    else:
        decision = match(loaded.plan, call)
        if decision.route is None:
            return None, decision.reason
        route, reason = effective(loaded.plan, decision.route), decision.reason
    setup = for_route(
        loaded.plan, route, call, provider_override, loaded.version, mqtt=mqtt, prices=prices
    )
    return setup, reason


def check(loaded: LoadedPlan, provider_override: str | None = None) -> list[str]:
    """Fail at start-up on what would fail every call (providers, tools, or no route able
    to run). Returns what only some routes suffer: a route none of whose providers can run
    here (an API key not set) answers its calls with `on_error` until the key is set, while
    the other routes (the offline ones need no key) take calls as usual."""
    now = datetime.now(UTC)
    routes = loaded.plan.routes or [None]
    idle: list[str] = []
    for r in routes:
        eff = effective(loaded.plan, r)
        setup = for_route(
            loaded.plan, eff, CallInfo("", "", {}, now), provider_override, loaded.version
        )
        providers = [setup.provider, *(f.provider for f in setup.options.fallbacks)]
        if all(isinstance(p, Unconfigured) for p in providers):
            why = "; ".join(sorted({p.why for p in providers if isinstance(p, Unconfigured)}))
            name = f"route {eff.name!r}" if r is not None else "the plan's defaults"
            idle.append(f"{name} cannot take calls ({why}): its callers get on_error")
    if len(idle) == len(routes):
        raise ConfigError("no route can take calls: " + "; ".join(idle))
    return idle


def _provider_of(loaded: LoadedPlan, route: Any, provider_override: str | None) -> ProviderDef:
    if provider_override is None:
        return effective(loaded.plan, route).provider
    return _override(loaded.plan, provider_override)


def needs_local_engine(loaded: LoadedPlan, provider_override: str | None = None) -> bool:
    """Whether some route runs on the offline engine at its default address: decided by
    the provider's type (a plan may call it `offline`), also for `--provider NAME`."""
    for r in loaded.plan.routes or [None]:
        route = effective(loaded.plan, r)
        pdefs = [_provider_of(loaded, r, provider_override)]
        if provider_override is None:
            pdefs += [p for _name, p in route.fallbacks]
        if any(p.type == "local" and not p.base_url for p in pdefs):
            return True
    return False


def for_named_route(
    loaded: LoadedPlan,
    name: str | None,
    call: CallInfo,
    provider_override: str | None = None,
    *,
    mqtt: MqttSettings | None = None,
    prices: PriceTable | None = None,
) -> CallSetup:
    """An outbound call's setup: the route called `name`, or the plan's defaults (None)."""
    route = None
    if name is not None:
        route = next((r for r in loaded.plan.routes if r.name == name), None)
        if route is None:
            known = ", ".join(r.name for r in loaded.plan.routes) or "none"
            raise ConfigError(f"no route named {name!r} in the dialplan (routes: {known})")
    eff = effective(loaded.plan, route)
    return for_route(
        loaded.plan, eff, call, provider_override, loaded.version, mqtt=mqtt, prices=prices
    )
