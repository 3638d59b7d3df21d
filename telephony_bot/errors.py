"""Typed errors. Each says what went wrong in words an operator can act on."""

from __future__ import annotations


class TelephonyBotError(Exception):
    """Base class of every error the engine raises on purpose."""


class ConfigError(TelephonyBotError):
    """Settings or command-line values that cannot work (bad port, unknown provider...)."""


class SipError(TelephonyBotError):
    """The SIP stack refused an action (transport bind failed, call already gone...)."""


class CallGoneError(SipError):
    """An action was asked of a call that has already ended."""


class ProviderError(TelephonyBotError):
    """A realtime provider failed. `retryable` says whether trying again can help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable
