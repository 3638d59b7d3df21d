"""Realtime providers behind one port (`base.Provider`)."""

from __future__ import annotations

from telephony_bot.errors import ConfigError
from telephony_bot.providers.base import Provider
from telephony_bot.providers.echo import EchoProvider

KNOWN = ("echo",)


def create(name: str, *, echo_delay_ms: int = 0) -> Provider:
    """The provider called `name`; an unknown name is a ConfigError listing the known ones."""
    if name == "echo":
        return EchoProvider(delay_ms=echo_delay_ms)
    raise ConfigError(f"unknown provider {name!r}; available here: {', '.join(KNOWN)}")
