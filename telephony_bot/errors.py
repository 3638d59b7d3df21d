"""Typed errors. Each says what went wrong in words an operator can act on."""

from __future__ import annotations

from dataclasses import dataclass


class TelephonyBotError(Exception):
    """Base class of every error the engine raises on purpose."""


class ConfigError(TelephonyBotError):
    """Settings or command-line values that cannot work (bad port, unknown provider...)."""


class CarrierError(TelephonyBotError):
    """A carrier refused an action (cannot listen, cannot place a call, call gone...)."""


class SipError(CarrierError):
    """The SIP stack refused an action (transport bind failed, call already gone...)."""


class CallGoneError(SipError):
    """An action was asked of a call that has already ended."""


class ProviderError(TelephonyBotError):
    """A realtime provider failed. `retryable` says whether trying again can help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class DialplanIssue:
    """One problem in a dialplan file, located for the admin who edits it (1-based)."""

    file: str
    line: int
    column: int
    path: str  # field path, e.g. "routes[2].tools[1]"; "" for the file as a whole
    message: str
    # the environment variables whose absence this problem is (a `${VAR}` not set): a
    # machine without the production secrets can tell these from mistakes in the plan
    unset_env: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where} {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class DialplanError(ConfigError):
    """A dialplan cannot be used; `issues` lists every problem found, one per line in str()."""

    def __init__(self, issues: list[DialplanIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))
