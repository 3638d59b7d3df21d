"""The seam between whatever carries calls (SIP today) and the worker and session.

A `Carrier` is the listening side: it offers incoming calls to the worker through one
callback, places outbound calls (`originate`), drains, and says what it can do
(`CarrierCapabilities`). A `CallPort` is one call: events come in as frozen dataclasses on
`CallPort.events`; actions go out as async methods; audio flows as PCM16 frames through
`CallPort.media` (a `CallMedia`, which owns the played position). No pjsua2 type crosses
this seam.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable


@dataclass(frozen=True)
class CallOffered:
    call_id: str
    sip_call_id: str
    called: str  # user part of the request URI: the dialed number
    caller: str  # user part of From: the caller id
    from_uri: str
    to_uri: str
    source: str  # transport address the INVITE came from
    headers: dict[str, str] = field(default_factory=dict)
    transport: str = ""  # what it came over: udp, tcp, tls (SIP); "" for other carriers
    # the trunk (engine config `trunks:`) the call came in or goes out through: by a
    # registration's line token, or as admission attributed it (allow list, digest); "": none
    trunk: str = ""


@dataclass(frozen=True)
class CallAnswered:
    call_id: str
    codec: str  # e.g. "PCMU/8000"


@dataclass(frozen=True)
class MediaReady:
    """Audio is flowing: `CallPort.media` now carries the caller's frames."""

    call_id: str
    codec: str


@dataclass(frozen=True)
class DtmfReceived:
    call_id: str
    digit: str
    method: str  # "rfc2833", "sip-info"
    duration_ms: int


@dataclass(frozen=True)
class TransferOutcome:
    call_id: str
    target: str
    status_code: int  # from the NOTIFY sipfrag, e.g. 100, 180, 200, 486
    reason: str
    final: bool


@dataclass(frozen=True)
class CallEnded:
    call_id: str
    ended_by: Literal["local", "remote"]
    status_code: int
    reason: str
    media: dict[str, int] = field(default_factory=dict)  # RTP and bridge counters


CallEvent = CallOffered | CallAnswered | MediaReady | DtmfReceived | TransferOutcome | CallEnded


@runtime_checkable
class CallMedia(Protocol):
    """A call's audio, as the session sees it: PCM16 mono in 20 ms frames at `sample_rate`,
    caller audio in (`read_frame`), bot audio out (`write`, any chunk size).

    The carrier chooses `sample_rate`: the rate its audio already has (8 kHz for a G.711
    SIP call), so nothing is resampled that need not be. The session converts once, between
    this rate and the provider's (`ProviderSession.audio_rate`), only where they differ.

    The carrier owns the played position: `played_ms` is bot audio the caller can have
    heard, by the carrier's own measure (for SIP, frames taken by the 20 ms media clock; for
    a media stream, marks the far end echoed back), never what is merely queued.
    """

    @property
    def sample_rate(self) -> int: ...

    async def read_frame(self) -> bytes:
        """The caller's next frame; b"" once the media is closed."""
        ...

    def write(self, pcm: bytes) -> None:
        """Queue bot audio for playout."""

    def end_of_stream(self) -> None:
        """The bot finished a reply: the silence that follows is not an underrun."""

    def pause(self) -> None:
        """Hold the queued bot audio: silence from now on, nothing dropped."""

    def resume(self) -> None: ...

    def clear(self) -> int:
        """Drop all queued bot audio now (and end a pause); returns the ms dropped."""
        ...

    @property
    def played_ms(self) -> int:
        """Bot audio played towards the caller since the call began, in ms."""
        ...

    @property
    def queued_ms(self) -> int:
        """Bot audio queued and not yet played, in ms."""
        ...

    def close(self) -> None: ...


class CallPort(Protocol):
    """One call, as the session sees it."""

    call_id: str
    offer: CallOffered
    media: CallMedia
    events: asyncio.Queue[CallEvent]

    async def answer(self) -> None: ...

    async def reject(self, status_code: int, reason: str = "") -> None: ...

    async def hangup(self, reason: str = "normal") -> None: ...

    async def transfer(self, target: str) -> None: ...

    async def send_dtmf(self, digits: str) -> None: ...


@dataclass(frozen=True)
class CarrierCapabilities:
    """What a carrier can do; the worker and the admin side ask before they act."""

    # Carrier.originate() is configured (SIP: an outbound trunk). More flags come with the
    # carriers that need them asked (a media stream cannot REFER).
    originate: bool = False


IncomingCall = Callable[[CallPort], None]


class Carrier(Protocol):
    """The listening side of a carrier: where calls come from and go out, for one worker.

    `start(on_call)` begins taking calls and hands each accepted one to `on_call` (on the
    event loop, ringing, not yet answered); the carrier itself refuses what it cannot take
    (full, draining) before the worker sees it. `drain()` stops taking calls and waits for
    the active ones; `stop()` ends what is left and releases the carrier.
    """

    name: str  # "sip": names the carrier's health check and log fields
    capabilities: CarrierCapabilities

    async def start(self, on_call: IncomingCall) -> None: ...

    async def originate(self, to: str, *, caller: str, ring_timeout_s: float) -> CallPort:
        """Call `to` (a number or user) as `caller`; the port's `answer()` waits for the far
        end to pick up. Raises `errors.CarrierError` when the call cannot be placed."""
        ...

    async def drain(self, grace_s: float) -> None:
        """Stop taking calls (new ones are refused) and wait up to `grace_s` seconds for the
        active ones to end."""
        ...

    async def stop(self) -> None: ...

    @property
    def draining(self) -> bool: ...

    @property
    def active_calls(self) -> int: ...

    def health(self) -> tuple[bool, str]:
        """Whether the carrier can take calls now, and why (for readiness checks)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Log fields that say where and how it listens."""
        ...

    def outbound_caller(self) -> str | None:
        """The caller id every outbound call has (SIP: a registered trunk's user, which the
        trunk authenticates), or None: the one the command or config gives."""
        ...

    def registration_states(self) -> list[dict[str, Any]]:
        """Its registrations with trunks, one JSON object each (SIP: `trunk`, `state`,
        `ok`, `detail`, ... from `sip.registration.RegistrationState`); [] when none."""
        ...

    def watch_registrations(self, fn: Callable[[dict[str, Any]], None]) -> None:
        """Call `fn` (on the event loop) with a registration's new state at every change."""
        ...
