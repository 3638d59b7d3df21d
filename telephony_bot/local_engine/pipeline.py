"""Pluggable speech parts of the local realtime server (see `server.LocalRealtimeServer`).

The server speaks the OpenAI Realtime protocol; what it hears, understands and says comes from
four small parts, each a Protocol so the real implementations (Whisper ASR, piper TTS, the
two-stage VAD, the scripted-flow brain) and test fakes plug in alike:

- `Detector`: per session, fed 20 ms frames of 24 kHz PCM16; reports `SpeechStart` / `SpeechEnd`,
  and, if it can end a turn early, `SpeechPause` (see `Detector.conclude`).
- `Recognizer`: shared, sync `transcribe(pcm24k) -> str`, run in the server's bounded pool.
- `Synthesizer`: shared, sync `synthesize(text, cancel) -> Iterator[bytes]`, run in the pool
  one chunk at a time; must stop soon after `cancel` is set. The server calls it once per
  clause (see `split_clauses`) so each clause's transcript goes out with its audio.
- `Brain`: per session, made by a `BrainFactory`; turns what the caller says into actions.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .speech import SpeechEnd, SpeechPause, SpeechStart  # the real turn detector's events

try:  # the brain module (another part of the project) owns the action types when it exists
    from .brain import CallTool, Hangup, Say, Transfer  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on which parts are present

    @dataclass(frozen=True)
    class Say:  # type: ignore[no-redef]
        text: str

    @dataclass(frozen=True)
    class CallTool:  # type: ignore[no-redef]
        call_id: str
        name: str
        arguments: dict[str, Any] = field(default_factory=dict)

    @dataclass(frozen=True)
    class Transfer:  # type: ignore[no-redef]
        target: str

    @dataclass(frozen=True)
    class Hangup:  # type: ignore[no-redef]
        reason: str = "completed"


__all__ = [
    "SAMPLE_RATE",
    "FRAME_MS",
    "FRAME_BYTES",
    "Action",
    "Brain",
    "BrainFactory",
    "CallTool",
    "Detector",
    "DetectorFactory",
    "Hangup",
    "Pipeline",
    "Recognizer",
    "Say",
    "SpeechEnd",
    "SpeechPause",
    "SpeechStart",
    "Synthesizer",
    "Transfer",
    "split_clauses",
]

SAMPLE_RATE = 24000
FRAME_MS = 20
FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000 * 2  # 960 bytes of PCM16 mono

Action = Any  # Say | CallTool | Transfer | Hangup


@runtime_checkable
class Detector(Protocol):
    def process(self, frame24k: bytes, now_ms: int) -> list[SpeechStart | SpeechPause | SpeechEnd]:
        """Feed one 20 ms frame whose first sample is at stream time `now_ms`; return the
        events it caused: `SpeechStart(at_ms)` (onset estimate) / `SpeechEnd(at_ms, pcm)`, and
        from a detector that has `conclude(at_ms, silence_ms)` (like `speech.SpeechDetector`)
        `SpeechPause(at_ms, pcm)`. A detector with a `silence_ms` attribute takes the
        session's `silence_duration_ms` there."""
        ...


@runtime_checkable
class Recognizer(Protocol):
    def transcribe(self, pcm24k: bytes) -> Any:
        """The transcript: a str, or an object with a `.text` str (like `speech.AsrResult`)."""
        ...


@runtime_checkable
class Synthesizer(Protocol):
    def synthesize(self, text: str, cancel: threading.Event) -> Iterator[bytes]:
        """Yield 24 kHz PCM16 mono for `text` (per clause or smaller), stop once `cancel` is set."""
        ...


@runtime_checkable
class Brain(Protocol):
    def start(self) -> list[Action]: ...

    def hear(self, text: str) -> list[Action]: ...

    def tool_result(self, call_id: str, ok: bool, result: Any) -> list[Action]: ...


class BrainFactory(Protocol):
    def __call__(
        self, instructions: str, tools: list[dict[str, Any]], session_extra: dict[str, Any]
    ) -> Brain: ...


DetectorFactory = Callable[[], Detector]


@dataclass
class Pipeline:
    """The parts one server uses. `workers` bounds concurrent ASR/TTS jobs over all sessions."""

    detector_factory: DetectorFactory
    recognizer: Recognizer
    synthesizer: Synthesizer
    brain_factory: BrainFactory
    workers: int = 2


_CLAUSE_RE = re.compile(r"[^.!?;:,]+(?:[.!?;:,]+|$)")


def split_clauses(text: str) -> list[str]:
    """Split text at punctuation into clauses (each keeps its punctuation and spacing)."""
    text = text.strip()
    if not text:
        return []
    parts = [m.group(0) for m in _CLAUSE_RE.finditer(text)]
    out: list[str] = []
    for part in parts:
        if out and not part.strip(" "):
            out[-1] += part
        elif part.strip():
            out.append(part.strip() + " ")
    if out:
        out[-1] = out[-1].rstrip()
    return out or [text]
