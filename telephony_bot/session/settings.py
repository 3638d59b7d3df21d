"""What one call is given: its limits, how the engine behaves around the model (from the
route), and where the call came from (for events and the call record)."""

from __future__ import annotations

from dataclasses import dataclass, field

from telephony_bot.providers.base import Provider, SessionConfig
from telephony_bot.redact import Privacy
from telephony_bot.session.dtmf import DtmfSettings
from telephony_bot.session.stall import StallSettings
from telephony_bot.session.turns import BargeInSettings
from telephony_bot.session.usage import CallPrices
from telephony_bot.tools.base import Tool
from telephony_bot.transfer_target import TransferRules


@dataclass(frozen=True)
class CallLimits:
    ring_ms: int = 0
    max_call_seconds: float = 0.0  # 0: none
    idle_seconds: float = 0.0  # 0: none; silence on both sides this long ends the call


@dataclass(frozen=True)
class Fallback:
    """A provider that takes over a call when the one before cannot go on."""

    name: str  # as the dialplan names it
    provider: Provider
    config: SessionConfig


@dataclass(frozen=True)
class SessionOptions:
    """How the engine behaves around the model on one call (from the route)."""

    greeting: str | None = None  # None: no greeting; "" : the model greets; text: say this
    barge_in: BargeInSettings = field(default_factory=BargeInSettings)
    stall: StallSettings = field(default_factory=StallSettings)
    tools: dict[str, Tool] = field(default_factory=dict)
    filler_after_ms: int = 700
    # A tool still running this long after the model called it (an async tool at once) is
    # answered "the result will follow", and its result given later (result_waits.py).
    tool_window_ms: int = 5000
    prices: CallPrices = field(default_factory=CallPrices)  # each provider's, from the table
    # When the model is gone for good (every provider failed): put the caller through here
    # (a SIP URI) instead of apologising and hanging up; and what they hear first, instead
    # of the engine's own phrase (24 kHz PCM16 mono, the plan's recorded `on_error.say`).
    on_error_transfer: str | None = None
    on_error_say: bytes | None = None
    # Pre-warm: while the call rings, open the provider session (instructions sent) and
    # start the greeting; answer once its first audio is queued, so the caller hears it at
    # once — or after prewarm_max_wait_ms more ringing at most (see session/prewarm.py).
    prewarm: bool = True
    prewarm_max_wait_ms: int = 2000
    # The route's other providers, in order: on a connect failure, a fatal error or
    # reconnects exhausted, the next takes over with the conversation so far.
    fallbacks: tuple[Fallback, ...] = ()
    # The caller's key presses: bursts given to the model (see session/dtmf.py).
    dtmf: DtmfSettings = field(default_factory=DtmfSettings)
    # Where the call may be transferred, whoever asks: the route's named targets, and
    # numbers the engine's outbound.allow matches (set by the worker).
    transfers: TransferRules = field(default_factory=TransferRules)
    # What leaves the call masked: sensitive tool parameters, DTMF, transcript patterns.
    privacy: Privacy = field(default_factory=Privacy)


@dataclass(frozen=True)
class CallMeta:
    """Where the call came from and which plan it runs (for events and the CDR)."""

    direction: str = "inbound"  # inbound | outbound
    route: str | None = None
    plan_version: str = ""
    provider: str = ""
