"""The echo check the call tests rely on: a jitter-buffer step passes, damage does not."""

from __future__ import annotations

import numpy as np

from tests.support import audio

RATE = 16000


def _line(sent: np.ndarray, delay_ms: int) -> np.ndarray:
    """`sent` as a caller would record it: silence, then the echo after `delay_ms`."""
    return np.concatenate([np.zeros(delay_ms * RATE // 1000, np.int16), sent, np.zeros(RATE)])


def _cut(x: np.ndarray, at_ms: int, ms: int = 20) -> np.ndarray:
    i = at_ms * RATE // 1000
    return np.concatenate([x[:i], x[i + ms * RATE // 1000 :]])


def _insert(x: np.ndarray, at_ms: int, ms: int = 20) -> np.ndarray:
    i = at_ms * RATE // 1000
    return np.concatenate([x[:i], np.zeros(ms * RATE // 1000, np.int16), x[i:]])


def test_a_clean_echo_is_found_at_its_delay() -> None:
    sent = audio.speech_like(2.0, RATE)
    echo = audio.echo_pieces(sent, _line(sent, 300), RATE)
    assert echo.intact and echo.broken == 0 and echo.pieces == 20
    assert {round(d) for d in echo.delays_ms} == {300}


def test_a_jitter_buffer_growing_by_a_frame_mid_call_is_not_damage() -> None:
    sent = audio.speech_like(2.0, RATE)
    got = _insert(_line(sent, 300), 1250)  # one frame of concealment, 0.95 s into the speech
    echo = audio.echo_pieces(sent, got, RATE)
    assert echo.intact, echo.describe()
    assert {round(d) for d in echo.delays_ms} == {300, 320}
    # the same step measured as one delay over the whole call looks garbled
    assert audio.find_delay(sent, got, RATE)[1] < 0.85


def test_lost_frames_noise_or_silence_are_damage() -> None:
    sent = audio.speech_like(2.0, RATE)
    got = _line(sent, 300)
    dropped = _cut(_cut(_cut(got, 700), 1100), 1500)
    assert not audio.echo_pieces(sent, dropped, RATE).intact
    noisy = got.copy()
    noisy[RATE : RATE + RATE // 4] = np.random.default_rng(1).integers(-3000, 3000, RATE // 4)
    assert not audio.echo_pieces(sent, noisy, RATE).intact
    assert not audio.echo_pieces(sent, np.zeros_like(got), RATE).intact
