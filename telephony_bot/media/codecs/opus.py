"""Opus encoder/decoder for int16 LE PCM via `opuslib` (loaded lazily, needs libopus)."""

from __future__ import annotations

import ctypes
from types import ModuleType

from telephony_bot.media.codecs import CodecUnavailableError

OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
FRAME_MS = (10, 20, 40, 60)
_APPLICATIONS = ("voip", "audio", "restricted_lowdelay")
_MAX_FRAME_MS = 120
OPUS_HINT = "Opus needs libopus (Debian: apt-get install libopus0) and the Python package opuslib"


def load_opuslib() -> ModuleType:
    """Import opuslib, or raise CodecUnavailableError saying what to install."""
    try:
        import opuslib
        import opuslib.api.decoder
        import opuslib.api.info
    except Exception as exc:  # opuslib raises a bare Exception when libopus is not found
        raise CodecUnavailableError(f"{OPUS_HINT} ({exc})") from exc
    return opuslib


def _check_format(sample_rate: int, channels: int) -> None:
    if sample_rate not in OPUS_RATES:
        raise ValueError(f"Opus sample rate must be one of {OPUS_RATES}, got {sample_rate}")
    if channels not in (1, 2):
        raise ValueError(f"Opus channels must be 1 or 2, got {channels}")


class OpusEncoder:
    """Encodes one 10/20/40/60 ms int16 frame per call into one Opus packet."""

    def __init__(
        self,
        sample_rate: int = 48000,
        channels: int = 1,
        application: str = "voip",
        bitrate: int | None = None,
    ) -> None:
        _check_format(sample_rate, channels)
        if application not in _APPLICATIONS:
            raise ValueError(
                f"Opus application must be one of {_APPLICATIONS}, got {application!r}"
            )
        opuslib = load_opuslib()
        self.sample_rate = sample_rate
        self.channels = channels
        self._enc = opuslib.Encoder(sample_rate, channels, application)
        if bitrate is not None:
            if bitrate <= 0:
                raise ValueError(f"Opus bitrate must be positive bits/s, got {bitrate}")
            self._enc.bitrate = bitrate
        self._frame_bytes = {
            sample_rate * ms // 1000 * channels * 2: sample_rate * ms // 1000 for ms in FRAME_MS
        }

    def encode(self, pcm: bytes) -> bytes:
        """Encode exactly one frame of int16 LE PCM (20 ms = 1920 bytes at 48 kHz mono)."""
        samples = self._frame_bytes.get(len(pcm))
        if samples is None:
            want = ", ".join(
                f"{n} bytes ({ms} ms)" for n, ms in zip(self._frame_bytes, FRAME_MS, strict=True)
            )
            raise ValueError(
                f"Opus encode needs one frame of {self.sample_rate} Hz x{self.channels} int16 PCM: "
                f"{want}; got {len(pcm)} bytes"
            )
        return bytes(self._enc.encode(pcm, samples))


class OpusDecoder:
    """Decodes Opus packets to int16 LE PCM; `decode(None)` conceals one lost 20 ms frame."""

    def __init__(self, sample_rate: int = 48000, channels: int = 1) -> None:
        _check_format(sample_rate, channels)
        opuslib = load_opuslib()
        self.sample_rate = sample_rate
        self.channels = channels
        self._opuslib = opuslib
        self._dec = opuslib.Decoder(sample_rate, channels)
        self._decode_fn = opuslib.api.decoder.libopus_decode
        self._max_samples = sample_rate * _MAX_FRAME_MS // 1000
        self._plc_samples = sample_rate * 20 // 1000
        self._buf = (ctypes.c_int16 * (self._max_samples * channels))()
        self._ptr = ctypes.cast(self._buf, ctypes.POINTER(ctypes.c_int16))

    def decode(self, packet: bytes | None) -> bytes:
        """Decode one packet (all the frames it holds); None or b"" -> 20 ms of concealment."""
        if packet:
            state, cap = self._dec.decoder_state, self._max_samples
            n = self._decode_fn(state, packet, len(packet), self._ptr, cap, 0)
        else:
            n = self._decode_fn(self._dec.decoder_state, None, 0, self._ptr, self._plc_samples, 0)
        if n < 0:
            reason = self._opuslib.api.info.strerror(n)
            if isinstance(reason, bytes):
                reason = reason.decode(errors="replace")
            raise ValueError(f"cannot decode Opus packet of {len(packet or b'')} bytes: {reason}")
        return ctypes.string_at(self._buf, n * self.channels * 2)

    def reset(self) -> None:
        """Forget decoder state (new stream)."""
        self._dec.reset_state()
