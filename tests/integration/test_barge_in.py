"""Barge-in measured from outside: the caller talks over the bot; the caller-side
recording shows when the bot went quiet, and the server shows what the engine sent."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.integration.test_realtime_session import RATE, _call, _plan, _tone, server_factory
from tests.support import audio, engine
from tests.support.realtime_server import ScriptedReply

__all__ = ["server_factory"]  # the fixture, shared with the session tests


def _bot_stop_ms(energy: list[float], after_ms: int) -> int:
    """First frame at or after `after_ms` that begins 200 ms of silence."""
    start = after_ms // 20
    for i in range(start, len(energy) - 10):
        if all(e < -45 for e in energy[i : i + 10]):
            return i * 20
    return len(energy) * 20


def test_caller_talking_over_the_bot_stops_it_fast_and_truncates_what_was_heard(
    tmp_path: Path, server_factory
) -> None:
    # OpenAI's server VAD answers a few hundred ms after speech starts (padding + network):
    # the engine's own VAD must be the one that stops the bot.
    server = server_factory(
        greeting=ScriptedReply(pcm=_tone(700, 4.0), transcript="A long hello"),
        speech_onset_ms=300,
    )
    talk = audio.write_wav(tmp_path / "talk.wav", audio.speech_like(1.5, RATE), RATE)
    with engine.running(tmp_path, "worker", "--dialplan", str(_plan(tmp_path, server))) as eng:
        rep, _ = _call(
            tmp_path, eng.sip_port, "--play", str(talk), "--play-at", "1.2", "--duration", "5"
        )
        energy = rep["energy_dbfs"]
        greet_start = audio.voiced_frames(energy)[0] * 20
        onset = rep["play_start_ms"]  # the caller's speech leaves on the wire here
        stop = _bot_stop_ms(energy, onset)
        latency = stop - onset
        print(f"barge-in on the wire: {latency} ms; bot heard for {stop - greet_start} ms")
        assert latency <= 150, f"bot kept talking {latency} ms over the caller"
        assert stop - greet_start < 2500  # it did not play the 4 s greeting to the end
        cancel = server.wait_for("response.cancel")
        trunc = server.wait_for("conversation.item.truncate")
        assert len(cancel) == 1 and len(trunc) == 1
        heard = stop - greet_start
        end_ms = trunc[0].data["audio_end_ms"]
        print(f"truncate audio_end_ms={end_ms}, caller heard {heard} ms")
        # within 40 ms, ±1 frame of timeline resolution, plus up to 3 frames the caller's
        # adaptive jitter buffer may grow by while the greeting plays (seen: +100 ms once on a
        # busy machine); what the model is told was heard is still the caller's, to a syllable
        assert abs(end_ms - heard) <= 40 + 20 + 60
        assert server.truncations[0]["ok"], server.truncations  # never past what was generated
        assert eng.events("barge_in")


def test_a_short_cough_does_not_interrupt_the_bot(tmp_path: Path, server_factory) -> None:
    server = server_factory(
        greeting=ScriptedReply(pcm=_tone(700, 3.0), transcript="Hello"), speech_onset_ms=300
    )
    cough = np.zeros(int(0.06 * RATE), dtype=np.int16)
    cough[:] = (np.random.default_rng(3).normal(0, 6000, cough.size)).astype(np.int16)
    wav = audio.write_wav(tmp_path / "cough.wav", cough, RATE)
    with engine.running(tmp_path, "worker", "--dialplan", str(_plan(tmp_path, server))) as eng:
        rep, _ = _call(
            tmp_path, eng.sip_port, "--play", str(wav), "--play-at", "1.2", "--duration", "4"
        )
        voiced = audio.voiced_frames(rep["energy_dbfs"])
        heard = (voiced[-1] - voiced[0] + 1) * 20
        assert heard >= 2900, f"the greeting was cut to {heard} ms by a cough"
        assert not [e for e in server.received if e.type == "response.cancel"]
        assert not eng.events("barge_in")
