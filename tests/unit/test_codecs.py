"""G.711 (bit-exact vs audioop, speech-level SNR) and Opus (size, pitch, level, PLC, errors)."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

from telephony_bot.media.codecs import (
    CodecUnavailableError,
    available_codecs,
    g711,
    get_codec,
)
from telephony_bot.media.codecs.opus import OpusDecoder, OpusEncoder

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import audioop  # stdlib up to 3.12, the audioop-lts package on 3.13+
    except ImportError:
        audioop = None

ALL_PCM = np.arange(65536, dtype=np.uint32).astype("<u2").tobytes()  # every int16 value
ALL_CODES = bytes(range(256))
LAWS = {
    "ulaw": (g711.ulaw_encode, g711.ulaw_decode),
    "alaw": (g711.alaw_encode, g711.alaw_decode),
}


def multitone(rate: int, seconds: float, dbfs: float) -> np.ndarray:
    rng = np.random.default_rng(7)
    t = np.arange(int(rate * seconds)) / rate
    x = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) for f in (300, 700, 1100, 1900))
    x *= 32768 * 10 ** (dbfs / 20) / np.sqrt(np.mean(x**2))
    return np.round(x).astype(np.int16)


def snr_db(ref: np.ndarray, out: np.ndarray) -> float:
    ref, out = ref.astype(np.float64), out.astype(np.float64)
    return 10 * np.log10(np.sum(ref**2) / np.sum((out - ref) ** 2))


def pcm_of(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2")


@pytest.mark.skipif(audioop is None, reason="reference audioop not installed (audioop-lts)")
def test_g711_bit_exact_with_audioop() -> None:
    assert g711.ulaw_encode(ALL_PCM) == audioop.lin2ulaw(ALL_PCM, 2)
    assert g711.alaw_encode(ALL_PCM) == audioop.lin2alaw(ALL_PCM, 2)
    assert g711.ulaw_decode(ALL_CODES) == audioop.ulaw2lin(ALL_CODES, 2)
    assert g711.alaw_decode(ALL_CODES) == audioop.alaw2lin(ALL_CODES, 2)


@pytest.mark.parametrize("law", LAWS)
def test_g711_speech_level_round_trip_snr(law: str) -> None:
    encode, decode = LAWS[law]
    x = multitone(8000, 1.0, -20)
    coded = encode(x.tobytes())
    assert len(coded) == len(x)  # one byte per sample: 64 kbit/s at 8 kHz
    assert snr_db(x, pcm_of(decode(coded))) >= 35


def test_g711_rejects_odd_byte_count() -> None:
    with pytest.raises(ValueError, match="even byte length"):
        g711.ulaw_encode(b"\x00\x00\x00")


def test_registry_names_aliases_and_unknown() -> None:
    assert {"g711_ulaw", "g711_alaw", "opus"} <= set(available_codecs())
    pcmu, pcma = get_codec("PCMU"), get_codec("pcma")
    assert (pcmu.info.payload_type, pcma.info.payload_type) == (0, 8)
    assert pcmu.sample_rate == pcma.sample_rate == 8000
    x = multitone(8000, 0.02, -20).tobytes()
    assert pcmu.encode(x) == g711.ulaw_encode(x)
    assert pcma.decode(pcma.encode(x)) == g711.alaw_decode(g711.alaw_encode(x))
    assert get_codec("opus").sample_rate == 48000
    with pytest.raises(ValueError, match="known: g711_ulaw, g711_alaw, opus, pcmu, pcma"):
        get_codec("g729")


def test_missing_opuslib_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opuslib", None)  # makes `import opuslib` fail
    with pytest.raises(CodecUnavailableError, match=r"apt-get install libopus0.*opuslib"):
        OpusEncoder()
    with pytest.raises(CodecUnavailableError):
        get_codec("opus")
    assert available_codecs() == ["g711_ulaw", "g711_alaw"]
    assert issubclass(CodecUnavailableError, RuntimeError)


def test_opus_packet_is_much_smaller_than_pcm() -> None:
    frame = multitone(48000, 0.02, -20).tobytes()
    assert len(frame) == 1920
    packet = OpusEncoder(bitrate=24000).encode(frame)
    assert 0 < len(packet) <= len(frame) // 10


def test_opus_tone_keeps_frequency_and_level() -> None:
    rate, freq = 48000, 440.0
    t = np.arange(rate) / rate
    x = np.round(8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    enc, dec = OpusEncoder(), OpusDecoder()
    frames = [x[i : i + 960].tobytes() for i in range(0, rate, 960)]
    y = np.concatenate([pcm_of(dec.decode(enc.encode(f))) for f in frames]).astype(np.float64)
    assert len(y) == len(x)
    start = 10 * 960  # skip the encoder's start-up frames
    out = y[start:]
    errs = [np.sum((out - x[start - d : len(x) - d]) ** 2) for d in range(700)]
    delay = int(np.argmin(errs))  # Opus' algorithmic delay, modulo the tone's period
    ref = x[start - delay : len(x) - delay].astype(np.float64)
    spec = np.abs(np.fft.rfft(out * np.hanning(len(out)), 8 * len(out)))
    assert abs(np.argmax(spec) * rate / (8 * len(out)) - freq) <= 2
    level = 10 * np.log10(np.mean(out**2) / np.mean(ref**2))
    assert abs(level) <= 0.5
    assert 10 * np.log10(np.sum(ref**2) / errs[delay]) >= 20  # the waveform itself survives


def test_opus_plc_returns_one_frame() -> None:
    enc, dec = OpusEncoder(), OpusDecoder()
    frame = multitone(48000, 0.02, -20).tobytes()
    assert len(dec.decode(enc.encode(frame))) == 1920
    assert len(dec.decode(None)) == 1920  # 20 ms of concealment
    assert len(dec.decode(b"")) == 1920
    assert len(dec.decode(enc.encode(frame))) == 1920  # and decoding carries on
    assert len(OpusDecoder(16000).decode(None)) == 640


def test_opus_wrong_frame_size_is_a_clear_error() -> None:
    enc = OpusEncoder()
    with pytest.raises(ValueError, match=r"one frame .*1920 bytes \(20 ms\).*got 1918 bytes"):
        enc.encode(b"\x00" * 1918)
    assert len(enc.encode(b"\x00" * 960)) > 0  # 10 ms is a valid Opus frame too
    with pytest.raises(ValueError, match="sample rate"):
        OpusDecoder(44100)


def test_opus_corrupt_packet_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="cannot decode Opus packet"):
        OpusDecoder().decode(b"\xff\xff\xff")
