"""The port every realtime provider implements (grown by the session-core issue).

A provider `connect()`s a session for one call; the session accepts caller audio
(24 kHz PCM16) and yields typed events, of which audio deltas go to the caller.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class SessionConfig:
    """What a route asks of a provider session for one call."""

    provider: str = "echo"
    instructions: str = ""
    voice: str = ""
    echo_delay_ms: int = 0


@dataclass(frozen=True)
class AudioDelta:
    """Bot audio to play: 24 kHz PCM16 mono, any length."""

    pcm: bytes


ProviderEvent = AudioDelta


class ProviderSession(Protocol):
    async def send_audio(self, pcm: bytes) -> None: ...

    def events(self) -> AsyncIterator[ProviderEvent]: ...

    async def close(self) -> None: ...


class Provider(Protocol):
    name: str

    async def connect(self, config: SessionConfig) -> ProviderSession: ...
