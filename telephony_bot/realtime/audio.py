"""Audio formats on a Realtime server's wire: 24 kHz PCM16, or G.711 μ-law / A-law at 8 kHz.

Inside, a server works on 24 kHz PCM16 (the offline engine's detector, ASR and TTS); a
`WireInput` turns what a client appends into that, and a `WireOutput` what the server says
into the client's format (names: `dialect.canonical`).
Each direction keeps its own resampler state, so a stream cut into any chunk sizes gives the
same audio as one piece.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from telephony_bot.media.codecs.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from telephony_bot.media.resample import Resampler


@dataclass(frozen=True)
class _Codec:
    rate: int
    bytes_per_ms: int
    decode: Callable[[bytes], bytes] | None  # wire → PCM16 at `rate`; None: PCM16 already
    encode: Callable[[bytes], bytes] | None


_CODECS = {
    "pcm16": _Codec(24000, 48, None, None),
    "g711_ulaw": _Codec(8000, 8, ulaw_decode, ulaw_encode),
    "g711_alaw": _Codec(8000, 8, alaw_decode, alaw_encode),
}


class WireInput:
    """Client audio (one session's appends, in order) → 24 kHz PCM16."""

    def __init__(self, name: str = "pcm16") -> None:
        self.name = name
        self._codec = _CODECS[name]
        self._rs = Resampler(self._codec.rate, 24000) if self._codec.rate != 24000 else None

    @property
    def bytes_per_ms(self) -> int:
        return self._codec.bytes_per_ms

    def to_pcm24(self, wire: bytes) -> bytes:
        pcm = self._codec.decode(wire) if self._codec.decode else wire
        return self._rs.process(pcm[: len(pcm) // 2 * 2]) if self._rs else pcm


class WireOutput:
    """24 kHz PCM16 the engine speaks → the client's format (one instance per audio item)."""

    def __init__(self, name: str = "pcm16") -> None:
        self.name = name
        self._codec = _CODECS[name]
        self._rs = Resampler(24000, self._codec.rate) if self._codec.rate != 24000 else None

    def from_pcm24(self, pcm24: bytes) -> bytes:
        pcm = self._rs.process(pcm24) if self._rs else pcm24
        return self._codec.encode(pcm) if self._codec.encode else pcm
