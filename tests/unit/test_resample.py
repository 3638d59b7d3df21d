"""Resampler: pitch, level, anti-aliasing, streaming == one-shot, zero held-back samples."""

from __future__ import annotations

import numpy as np
import pytest

from telephony_bot.media.resample import Resampler, resample_once

RATE_PAIRS = [
    (8000, 24000),
    (24000, 8000),
    (16000, 24000),
    (24000, 16000),
    (48000, 24000),
    (24000, 48000),
]


def tone(freq: float, rate: int, seconds: float = 1.0, amp: float = 16000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.round(amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def band_noise(rate: int, seconds: float, lo: float, hi: float, rms: float, seed: int = 1):
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / rate)
    spec[(f < lo) | (f > hi)] = 0
    x = np.fft.irfft(spec, n)
    return np.round(x * rms / np.sqrt(np.mean(x**2))).astype(np.int16)


def peak_hz(x: np.ndarray, rate: int) -> float:
    """FFT peak with parabolic interpolation (accurate to well under 1 Hz for 1 s of tone)."""
    x = x.astype(np.float64)
    mag = np.abs(np.fft.rfft(x * np.hanning(len(x)), 4 * len(x)))
    k = int(np.argmax(mag[1:-1])) + 1
    a, b, c = np.log(mag[k - 1 : k + 2])
    shift = 0.5 * (a - c) / (a - 2 * b + c)
    return (k + shift) * rate / (4 * len(x))


def rms_db(x: np.ndarray) -> float:
    return 10 * np.log10(max(np.mean(x.astype(np.float64) ** 2), 1e-12))  # silence: -120 dB


def stream(r: Resampler, x: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    out, i, k = [], 0, 0
    while i < len(x):
        n = sizes[k % len(sizes)]
        out.append(r.process_array(x[i : i + n]))
        i, k = i + n, k + 1
    return out


def steady(y: np.ndarray, rate: int) -> np.ndarray:
    """Drop the first and last 50 ms (filter start-up and the tone's abrupt end)."""
    skip = rate // 20
    return y[skip:-skip]


@pytest.mark.parametrize(("in_rate", "out_rate"), RATE_PAIRS)
def test_tone_keeps_frequency_and_level(in_rate: int, out_rate: int) -> None:
    x = tone(1000, in_rate)
    y = Resampler(in_rate, out_rate).process_array(x)
    assert len(y) == out_rate
    assert abs(peak_hz(steady(y, out_rate), out_rate) - 1000) <= 2
    assert abs(rms_db(steady(y, out_rate)) - rms_db(steady(x, in_rate))) <= 0.5


@pytest.mark.parametrize(("in_rate", "out_rate"), RATE_PAIRS)
@pytest.mark.parametrize("sizes", ["20ms", [1, 7, 13, 161, 333, 2, 480, 959]])
def test_streaming_equals_one_shot(in_rate: int, out_rate: int, sizes: str | list[int]) -> None:
    x = band_noise(in_rate, 0.5, 50, 0.45 * in_rate, 6000)
    chunk_sizes = [in_rate // 50] if sizes == "20ms" else sizes
    one_shot = Resampler(in_rate, out_rate).process_array(x)
    streamed = np.concatenate(stream(Resampler(in_rate, out_rate), x, chunk_sizes))
    assert len(streamed) == len(one_shot) == len(x) * out_rate // in_rate
    assert np.max(np.abs(streamed.astype(np.int32) - one_shot)) <= 1


@pytest.mark.parametrize(("in_rate", "out_rate"), RATE_PAIRS)
def test_no_samples_held_back(in_rate: int, out_rate: int) -> None:
    r = Resampler(in_rate, out_rate)
    chunk = in_rate // 50
    for piece in stream(r, tone(440, in_rate, 0.2), [chunk]):
        assert len(piece) == chunk * out_rate // in_rate
    # odd sizes: the running total is always ceil(total_in * out / in), never behind
    r, total_in, total_out = Resampler(in_rate, out_rate), 0, 0
    for n in [1, 2, 3, 5, 7, 11, 160, 1, 479]:
        total_in += n
        total_out += len(r.process(b"\x01\x00" * n)) // 2
        assert total_out == -(-total_in * out_rate // in_rate)


@pytest.mark.parametrize(("in_rate", "out_rate"), [(8000, 24000), (24000, 8000), (16000, 24000)])
@pytest.mark.parametrize("sizes", ["20ms", [37, 101, 5]])
def test_no_clicks_at_chunk_edges(in_rate: int, out_rate: int, sizes: str | list[int]) -> None:
    amp, freq = 16000.0, 1000.0
    chunk_sizes = [in_rate // 50] if sizes == "20ms" else sizes
    x = tone(freq, in_rate, amp=amp)
    y = np.concatenate(stream(Resampler(in_rate, out_rate), x, chunk_sizes))
    step = np.abs(np.diff(steady(y, out_rate).astype(np.float64)))
    max_step = 2 * amp * np.sin(np.pi * freq / out_rate)  # largest step a clean sine can take
    assert step.max() <= 1.1 * max_step


@pytest.mark.parametrize("freq", [4600, 6000, 9000])
def test_antialias_24k_to_8k(freq: int) -> None:
    x = tone(freq, 24000)  # above the 4 kHz Nyquist of 8 kHz: would alias to 3.4/2/1 kHz
    y = Resampler(24000, 8000).process_array(x)
    attenuation = rms_db(steady(x, 24000)) - rms_db(steady(y, 8000))  # int16 output: ~all 0
    assert attenuation >= 60


def test_round_trip_8k_24k_8k_is_transparent_in_the_phone_band() -> None:
    x = band_noise(8000, 2.0, 300, 3400, 3000)
    up, down = Resampler(8000, 24000), Resampler(24000, 8000)
    y = np.concatenate(stream(down, np.concatenate(stream(up, x, [160])), [480]))
    assert len(y) == len(x)
    xf, yf = x.astype(np.float64), y.astype(np.float64)
    core = slice(800, len(x) - 800)
    lags = range(0, 200)
    errs = [np.sum((yf[core] - xf[core.start - d : core.stop - d]) ** 2) for d in lags]
    delay = int(np.argmin(errs))
    assert delay == round((up.group_delay + down.group_delay) * 8000)
    assert delay / 8000 <= 0.008  # a few ms, the linear-phase filters' delay and nothing else
    snr = 10 * np.log10(np.sum(xf[core] ** 2) / errs[delay])
    assert snr >= 50


def test_same_rate_is_identity() -> None:
    pcm = band_noise(16000, 0.1, 0, 8000, 8000).tobytes()
    assert Resampler(16000, 16000).process(pcm) == pcm
    assert resample_once(pcm, 24000, 24000) == pcm


def test_reset_and_resample_once_match_a_fresh_stream() -> None:
    x = tone(700, 8000, 0.1)
    r = Resampler(8000, 24000)
    first = r.process(x.tobytes())
    r.process(tone(300, 8000, 0.05).tobytes())
    r.reset()
    assert r.process(x.tobytes()) == first == resample_once(x.tobytes(), 8000, 24000)


def test_full_scale_input_clips_instead_of_wrapping() -> None:
    square = np.tile(np.r_[np.full(20, 32767), np.full(20, -32768)], 20).astype(np.int16)
    r = Resampler(8000, 24000)
    y = r.process_array(square)
    assert y.max() == 32767 and y.min() == -32768  # the Gibbs overshoot saturates...
    delay = round(r.group_delay * 24000)
    ref = np.r_[np.zeros(delay), np.repeat(square, 3)[:-delay]]
    keep = np.ones(len(y), dtype=bool)
    for edge in np.flatnonzero(np.diff(ref)):
        keep[max(0, edge - 4) : edge + 6] = False
    keep[: delay + 6] = False
    assert np.all(np.sign(y[keep]) == np.sign(ref[keep]))  # ...and never wraps to the other sign


def test_rejects_odd_byte_count_and_bad_rates() -> None:
    with pytest.raises(ValueError, match="even byte length"):
        Resampler(8000, 24000).process(b"\x00\x00\x00")
    with pytest.raises(ValueError, match="positive"):
        Resampler(0, 8000)


@pytest.mark.parametrize(
    ("in_rate", "out_rate"),
    [(8000, 24000), (24000, 8000), (16000, 24000), (24000, 16000), (48000, 8000), (44100, 8000)],
)
def test_the_c_inner_loop_gives_numpy_s_output_to_the_bit(in_rate: int, out_rate: int) -> None:
    c, py = Resampler(in_rate, out_rate), Resampler(in_rate, out_rate, native=False)
    assert c._c is not None, "the compiled resampler is not built"
    rng = np.random.default_rng(7)
    x = np.clip(rng.standard_normal(in_rate) * 9000, -32768, 32767).astype("<i2").tobytes()
    sizes = [320, 2, 962, 1000, 14, 4000]  # odd chunkings, including a 1-sample chunk
    got_c, got_py, i = [], [], 0
    for k in range(10_000):
        if i >= len(x):
            break
        chunk = x[i : i + sizes[k % len(sizes)]]
        got_c.append(c.process(chunk))
        got_py.append(py.process(chunk))
        i += len(chunk)
        if k == 20:  # a reset (a barge-in's clear) restarts both streams the same way
            c.reset()
            py.reset()
    assert b"".join(got_c) == b"".join(got_py)
