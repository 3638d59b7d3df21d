"""Composition root: builds the provider, session config and options from a dialplan."""

from __future__ import annotations

import os
from dataclasses import dataclass

from telephony_bot.dialplan.schema import Dialplan
from telephony_bot.errors import ConfigError
from telephony_bot.providers.base import Provider, SessionConfig, ToolSpec
from telephony_bot.session.core import SessionOptions
from telephony_bot.session.turns import BargeInSettings
from telephony_bot.tools.base import Tool
from telephony_bot.tools.builtin import hangup_tool, send_dtmf_tool, transfer_tool
from telephony_bot.tools.python import python_tool


@dataclass(frozen=True)
class CallSetup:
    provider: Provider
    config: SessionConfig
    options: SessionOptions


def build_provider(plan: Dialplan, override: str | None) -> Provider:
    d = plan.defaults
    name = override or d.provider
    if name == "echo":
        from telephony_bot.providers.echo import EchoProvider

        return EchoProvider(delay_ms=d.echo_delay_ms)
    if name == "openai":
        from telephony_bot.providers.openai.client import OpenAIRealtimeProvider
        from telephony_bot.providers.openai.endpoints import (
            azure_endpoint,
            compatible_endpoint,
            openai_endpoint,
        )

        o = d.openai
        key = os.environ.get(o.api_key_env)
        if o.azure is not None:
            if not key:
                raise ConfigError(f"provider openai (Azure): set {o.api_key_env}")
            ep = azure_endpoint(o.azure.resource, o.azure.deployment, o.azure.api_version, key)
        elif o.base_url.rstrip("/") in ("wss://api.openai.com/v1", "https://api.openai.com/v1"):
            if not key:
                raise ConfigError(f"provider openai: set the environment variable {o.api_key_env}")
            ep = openai_endpoint(o.model, key, o.dialect)
        else:
            ep = compatible_endpoint(o.base_url, o.model, key, o.dialect or "preview")
        return OpenAIRealtimeProvider(ep)
    raise ConfigError(f"unknown provider {name!r}; available: echo, openai")


def build_tools(plan: Dialplan) -> dict[str, Tool]:
    d = plan.defaults
    tools: dict[str, Tool] = {}
    for name in d.tools:
        if name == "hangup":
            tools[name] = hangup_tool()
        elif name == "transfer":
            tools[name] = transfer_tool(d.transfer_targets)
        elif name == "send_dtmf":
            tools[name] = send_dtmf_tool()
        else:
            t = plan.tools[name]
            spec = ToolSpec(name, t.description, t.parameters)
            tools[name] = python_tool(spec, t.python, t.timeout_s)
    return tools


def build(plan: Dialplan, provider_override: str | None = None) -> CallSetup:
    d = plan.defaults
    tools = build_tools(plan)
    config = SessionConfig(
        provider=provider_override or d.provider,
        instructions=d.instructions,
        voice=d.voice,
        tools=tuple(t.spec for t in tools.values()),
        audio_format=d.audio_format,
        echo_delay_ms=d.echo_delay_ms,
    )
    options = SessionOptions(
        greeting=d.greeting,
        barge_in=BargeInSettings(
            # the echo's "bot audio" is the caller's own voice: it must never interrupt itself
            enabled=d.barge_in.enabled and (provider_override or d.provider) != "echo",
            min_interrupt_ms=d.barge_in.min_interrupt_ms,
        ),
        tools=tools,
        filler_after_ms=d.filler_after_ms,
    )
    return CallSetup(build_provider(plan, provider_override), config, options)
