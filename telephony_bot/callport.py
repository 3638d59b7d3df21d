"""The seam between whatever carries a call (SIP today) and the session.

Call events come in as frozen dataclasses on `CallPort.events`; actions go out as async
methods; audio flows as 24 kHz PCM16 frames through `CallPort.media` (a MediaBridge).
No pjsua2 type crosses this seam.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Literal, Protocol

from telephony_bot.media.bridge import MediaBridge


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


class CallPort(Protocol):
    """One call, as the session sees it."""

    call_id: str
    offer: CallOffered
    media: MediaBridge
    events: asyncio.Queue[CallEvent]

    async def answer(self) -> None: ...

    async def reject(self, status_code: int, reason: str = "") -> None: ...

    async def hangup(self, reason: str = "normal") -> None: ...

    async def transfer(self, target: str) -> None: ...

    async def send_dtmf(self, digits: str) -> None: ...
