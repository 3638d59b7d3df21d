"""The engine's caller-side VAD: speech-like audio is speech, silence and faint noise are not."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from telephony_bot.media.vad import SILENCE_DBFS, FrameVad, VadFrame, frame_dbfs

RATE = 24000
FRAME = 480  # samples: 20 ms at 24 kHz
FULL = 32767


def voiced(seconds: float, dbfs: float) -> np.ndarray:
    """A 440 Hz tone with falling harmonics up to 3.1 kHz and a 3 Hz syllable envelope."""
    t = np.arange(int(seconds * RATE)) / RATE
    x = sum(0.8**k * np.sin(2 * np.pi * 440 * k * t + k) for k in range(1, 8))
    x = x * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t) ** 2)
    x *= 10 ** (dbfs / 20) * FULL / np.sqrt(np.mean(x**2))
    return np.clip(x, -FULL, FULL).astype(np.int16)


def white_noise(seconds: float, dbfs: float, seed: int = 3) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(int(seconds * RATE))
    return np.rint(np.clip(x * FULL * 10 ** (dbfs / 20), -FULL, FULL)).astype(np.int16)


def sine(freq: float, seconds: float, dbfs: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (FULL * 10 ** (dbfs / 20) * np.sqrt(2) * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def frames(x: np.ndarray) -> list[bytes]:
    return [x[i : i + FRAME].astype("<i2").tobytes() for i in range(0, len(x) - FRAME + 1, FRAME)]


def run(x: np.ndarray, mode: int = 3) -> list[VadFrame]:
    vad = FrameVad(mode)
    return [vad.process(f) for f in frames(x)]


# ---------- levels (numpy only) ----------


@pytest.mark.parametrize("dbfs", [-3.0, -20.0, -40.0, -60.0])
def test_frame_dbfs_of_a_sine_is_its_rms_level(dbfs: float) -> None:
    for f in frames(sine(1000, 0.2, dbfs)):  # 1 kHz: whole periods in each 20 ms frame
        assert frame_dbfs(f) == pytest.approx(dbfs, abs=0.5)


def test_frame_dbfs_of_digital_silence_and_full_scale() -> None:
    assert frame_dbfs(bytes(960)) == SILENCE_DBFS
    assert frame_dbfs(b"") == SILENCE_DBFS
    square = np.tile(np.array([FULL, -FULL], dtype="<i2"), 240).tobytes()
    assert frame_dbfs(square) == pytest.approx(0.0, abs=0.01)
    one_lsb = np.ones(480, dtype="<i2").tobytes()
    assert -91.0 < frame_dbfs(one_lsb) < -90.0
    with pytest.raises(ValueError):
        frame_dbfs(b"\x00")


# ---------- VAD decisions (need webrtcvad-wheels) ----------


def test_missing_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "webrtcvad", None)  # makes `import webrtcvad` fail
    with pytest.raises(RuntimeError, match="webrtcvad-wheels"):
        FrameVad()


def test_bad_mode_is_rejected() -> None:
    with pytest.raises(ValueError):
        FrameVad(4)


def test_voiced_signal_at_minus_20_dbfs_is_speech_after_onset() -> None:
    pytest.importorskip("webrtcvad")
    out = run(np.concatenate((np.zeros(RATE // 5, np.int16), voiced(2.0, -20.0))))
    silent, talking = out[:10], out[12:]  # 200 ms of silence first; allow 40 ms for onset
    assert not any(f.speech for f in silent)
    assert sum(f.speech for f in talking) >= 0.9 * len(talking)
    assert np.mean([f.dbfs for f in talking]) == pytest.approx(-20.0, abs=1.0)


def test_silence_and_faint_white_noise_are_not_speech() -> None:
    pytest.importorskip("webrtcvad")
    silence = run(np.zeros(2 * RATE, np.int16))
    assert not any(f.speech for f in silence)
    assert all(f.dbfs == SILENCE_DBFS for f in silence)
    noise = run(white_noise(2.0, -60.0))
    assert sum(f.speech for f in noise) == 0
    assert np.mean([f.dbfs for f in noise]) == pytest.approx(-60.0, abs=0.5)
    for f in noise:  # 480 random samples: the level of one frame wanders a little
        assert f.dbfs == pytest.approx(-60.0, abs=1.5)


def test_process_reports_the_24k_frame_level() -> None:
    pytest.importorskip("webrtcvad")
    vad = FrameVad()
    for f in frames(voiced(0.3, -20.0)):
        assert vad.process(f).dbfs == pytest.approx(frame_dbfs(f), abs=1e-9)


def test_odd_sized_frames_are_gathered_into_20ms_blocks() -> None:
    pytest.importorskip("webrtcvad")
    x = voiced(1.0, -20.0)
    vad = FrameVad()
    out = [vad.process(x[i : i + 240].tobytes()) for i in range(0, len(x) - 239, 240)]  # 10 ms
    assert sum(f.speech for f in out[10:]) >= 0.9 * len(out[10:])
    with pytest.raises(ValueError):
        vad.process(b"\x00\x00\x00")


def test_microseconds_per_frame(capsys: pytest.CaptureFixture[str]) -> None:
    """Reports the cost of one 20 ms frame (no assertion on time)."""
    pytest.importorskip("webrtcvad")
    fs = frames(voiced(10.0, -20.0))
    vad = FrameVad()
    for f in fs[:50]:
        vad.process(f)
    t0 = time.perf_counter()
    for f in fs:
        vad.process(f)
    per_frame = (time.perf_counter() - t0) / len(fs) * 1e6
    t0 = time.perf_counter()
    for f in fs:
        frame_dbfs(f)
    per_level = (time.perf_counter() - t0) / len(fs) * 1e6
    with capsys.disabled():
        print(f"\nFrameVad.process: {per_frame:.1f} µs/frame (frame_dbfs alone {per_level:.1f} µs)")


def test_the_callers_own_8k_frames_give_the_same_decisions_without_resampling() -> None:
    pytest.importorskip("webrtcvad")
    from telephony_bot.media.resample import Resampler

    x24 = np.concatenate([np.zeros(RATE // 2, np.int16), voiced(1.0, -20.0)])
    x8 = np.frombuffer(Resampler(24000, 8000).process(x24.tobytes()), "<i2")
    a, b = FrameVad(), FrameVad(input_rate=8000)
    plain = [a.process(f) for f in frames(x24)]
    fast = [b.process(x8[i * 160 : (i + 1) * 160].tobytes()) for i in range(len(plain))]
    # the level is the 8 kHz frame's own: the same telephone-band audio, within a dB
    loud = [(p.dbfs, q.dbfs) for p, q in zip(plain, fast, strict=True) if p.dbfs > -60]
    assert loud and all(abs(p - q) < 1.0 for p, q in loud[1:])
    agree = sum(p.speech == q.speech for p, q in zip(plain, fast, strict=True))
    assert agree >= len(plain) - 2  # the same audio: at most an edge frame differs
    assert not any(f.speech for f in fast[:20]) and sum(f.speech for f in fast[30:]) >= 40


def test_the_c_level_is_numpy_s_level() -> None:
    from telephony_bot.media.vad import _frame_dbfs, _frame_dbfs_numpy

    assert _frame_dbfs is not _frame_dbfs_numpy, "the compiled level is not built"
    rng = np.random.default_rng(3)
    for scale in (1, 30, 3000, 40000):
        x = np.clip(rng.standard_normal(480) * scale, -32768, 32767).astype("<i2").tobytes()
        assert abs(_frame_dbfs(x) - _frame_dbfs_numpy(x)) < 1e-9
    assert _frame_dbfs(bytes(960)) == _frame_dbfs(b"") == SILENCE_DBFS
    with pytest.raises(ValueError, match="even"):
        _frame_dbfs(b"\x01\x02\x03")
