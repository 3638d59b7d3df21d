"""Audio codecs for RTP payloads: G.711 mu-law/A-law (always) and Opus (if libopus is present)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


class CodecUnavailableError(RuntimeError):
    """A codec's native library or Python binding is missing; the message says what to install."""


@dataclass(frozen=True)
class CodecInfo:
    name: str
    sample_rate: int
    payload_type: int | None  # static RTP payload type; None for dynamic (negotiated in SDP)


CODECS: dict[str, CodecInfo] = {
    "g711_ulaw": CodecInfo("g711_ulaw", 8000, 0),
    "g711_alaw": CodecInfo("g711_alaw", 8000, 8),
    "opus": CodecInfo("opus", 48000, None),
}
_ALIASES = {"pcmu": "g711_ulaw", "pcma": "g711_alaw"}


class Codec:
    """One stream's encoder/decoder pair: `encode(pcm) -> payload`, `decode(payload) -> pcm`."""

    def __init__(
        self,
        info: CodecInfo,
        encode: Callable[[bytes], bytes],
        decode: Callable[[bytes], bytes],
    ) -> None:
        self.info = info
        self.sample_rate = info.sample_rate
        self.encode = encode
        self.decode = decode

    def __repr__(self) -> str:
        return f"Codec({self.info.name!r}, {self.sample_rate} Hz)"


def available_codecs() -> list[str]:
    """Names of the codecs that work on this machine."""
    from telephony_bot.media.codecs.opus import load_opuslib

    names = ["g711_ulaw", "g711_alaw"]
    try:
        load_opuslib()
    except CodecUnavailableError:
        return names
    return [*names, "opus"]


def get_codec(name: str) -> Codec:
    """A fresh codec by name ("g711_ulaw"/"pcmu", "g711_alaw"/"pcma", "opus")."""
    key = _ALIASES.get(name.lower(), name.lower())
    info = CODECS.get(key)
    if info is None:
        known = ", ".join([*CODECS, *_ALIASES])
        raise ValueError(f"unknown codec {name!r}; known: {known}")
    if key == "opus":
        from telephony_bot.media.codecs.opus import OpusDecoder, OpusEncoder

        enc, dec = OpusEncoder(info.sample_rate), OpusDecoder(info.sample_rate)
        return Codec(info, enc.encode, dec.decode)
    from telephony_bot.media.codecs import g711

    if key == "g711_ulaw":
        return Codec(info, g711.ulaw_encode, g711.ulaw_decode)
    return Codec(info, g711.alaw_encode, g711.alaw_decode)
