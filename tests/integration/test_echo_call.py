"""A real pjsua2 caller hears its own audio back through the engine (echo provider)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import audio, engine

RATE = 16000
ECHO_MS = 300
PLAY_AT = 0.3
SPEECH_S = 1.2
TRIALS = 2


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("echo")


@pytest.fixture(scope="module")
def speech_wav(workdir: Path) -> Path:
    return audio.write_wav(workdir / "speech.wav", audio.speech_like(SPEECH_S, RATE), RATE)


@pytest.fixture(scope="module")
def echo_worker(workdir: Path):
    with engine.running(
        workdir, "worker", "--provider", "echo", "--echo-delay-ms", str(ECHO_MS), name="echo"
    ) as eng:
        # One warm-up call, as for the baseline: a fresh process's first call can run a frame
        # late, and the caller's jitter buffer then keeps that frame for the rest of the call.
        assert engine.dial(workdir, eng.sip_port, "--duration", "1", name="warm-echo")["answered"]
        yield eng


@pytest.fixture(scope="module")
def loopback_worker(workdir: Path):
    """Baseline: the same SIP/RTP path with the echo done inside pjmedia, no engine code."""
    with engine.running(
        workdir, "worker", "--media-loopback", "--provider", "echo", name="loopback"
    ) as eng:
        assert engine.dial(workdir, eng.sip_port, "--duration", "1", name="warm-loop")["answered"]
        yield eng


def _round_trip(
    workdir: Path, port: int, codec: str, wav: Path, name: str
) -> tuple[float, audio.Echo]:
    """(round-trip delay beyond the caller's playout start in ms, how the audio came back)."""
    rec = workdir / f"{name}.wav"
    rep = engine.dial(
        workdir, port,
        "--codec", codec, "--play", str(wav), "--play-at", str(PLAY_AT),
        "--duration", "2", "--record", str(rec), "--rate", str(RATE),
        name=name,
    )  # fmt: skip
    assert rep["answered"], rep
    assert rep["codec"].upper().startswith(codec), rep["codec"]
    sent, _ = audio.read_wav(wav)
    got, _ = audio.read_wav(rec)
    echo = audio.echo_pieces(sent, got, RATE)
    return echo.whole_ms - rep["play_start_ms"], echo


@pytest.mark.parametrize("codec", ["PCMU", "PCMA", "G722"])
def test_caller_hears_own_audio_back_with_only_the_echo_delay_added(
    workdir: Path, speech_wav: Path, echo_worker, loopback_worker, codec: str
) -> None:
    # Each call's jitter buffers may hold a frame more or less than another call's, so each
    # path is measured twice and its shortest round trip taken.
    loops = [
        _round_trip(workdir, loopback_worker.sip_port, codec, speech_wav, f"loop-{codec}-{i}")
        for i in range(TRIALS)
    ]
    echoes = [
        _round_trip(workdir, echo_worker.sip_port, codec, speech_wav, f"echo-{codec}-{i}")
        for i in range(TRIALS)
    ]
    # Every echo through the engine is the audio that was sent (G.711/G.722 + resampling).
    for _delay, echo in echoes:
        assert echo.intact, f"{codec}: the echo is not what was sent: {echo.describe()}"
    echo_ms, echo = min(echoes, key=lambda t: t[0])
    # The baseline is pjmedia's own loopback, not engine code: use its clean trials.
    clean = [t for t in loops if t[1].intact]
    assert clean, f"{codec}: the pjmedia loopback baseline itself was garbled: {loops}"
    base_ms, _ = min(clean, key=lambda t: t[0])
    # The engine adds its echo delay plus 1–2 frames (20–40 ms) and the bridge resampling of
    # its 24 kHz port (a few ms) on top of what pjmedia alone does.
    added = echo_ms - base_ms - ECHO_MS
    print(f"{codec}: engine-added {added:.1f} ms, echo {echo.describe()}")
    assert -5 <= added <= 50, f"{codec}: engine added {added:.1f} ms beyond the echo delay"


def test_the_engine_moves_call_audio_through_native_ports(echo_worker) -> None:
    """The default worker's frames cross in C (no Python on pjmedia's clock thread)."""
    ready = echo_worker.wait_for("media ports ready")
    assert ready[0]["kind"] == "native", ready[0]


def test_the_pjsua2_port_path_still_carries_a_call(workdir: Path, speech_wav: Path) -> None:
    """`--media-port python` (the fallback when the native self-check fails) echoes too."""
    with engine.running(
        workdir, "worker", "--provider", "echo", "--echo-delay-ms", str(ECHO_MS),
        "--media-port", "python", name="echo-py",
    ) as eng:  # fmt: skip
        assert eng.wait_for("media ports ready")[0]["kind"] == "pjsua2"
        # as for the native worker: a warm-up call, then the better of two trials
        assert engine.dial(workdir, eng.sip_port, "--duration", "1", name="warm-py")["answered"]
        trials = [_round_trip(workdir, eng.sip_port, "PCMU", speech_wav, f"echo-py-{i}")
                  for i in range(TRIALS)]  # fmt: skip
    intact = [delay for delay, echo in trials if echo.intact]
    assert intact, [e.describe() for _, e in trials]
    assert ECHO_MS <= min(intact) < ECHO_MS + 120, intact
