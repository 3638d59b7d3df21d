"""The port every realtime provider implements.

A provider `connect()`s one session per call. The session accepts the caller's audio
(PCM16 mono at its `audio_rate`) and actions (commit/clear input, create/cancel a response, truncate
what the caller did not hear, send a tool's output, add a conversation item), and yields
typed events. Wire protocols stay inside each provider; the session core sees only these.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

# ---------- what a session asks of a provider ----------


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call: JSON Schema parameters, as in the Realtime API."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object"})


@dataclass(frozen=True)
class TurnDetection:
    """Server-side VAD settings; `None` in SessionConfig means the client decides turns."""

    type: Literal["server_vad", "semantic_vad"] = "server_vad"
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True


# How the engine makes a model say a fixed sentence (a greeting, an operator's `say`): the
# instructions of a `response.create`. OpenAI follows them; the local engine recognises the
# prefix and speaks the text verbatim instead of asking its brain.
SAY_EXACTLY = "Say exactly this to the caller, word for word, and nothing else: "


def say_exactly(text: str) -> str:
    return SAY_EXACTLY + text.strip()


def said_exactly(instructions: str | None) -> str | None:
    """The sentence `say_exactly()` wrapped, or None for any other instructions."""
    if instructions and instructions.startswith(SAY_EXACTLY):
        return instructions[len(SAY_EXACTLY) :].strip() or None
    return None


# How the engine tells a model that a tool's result will follow (an async tool, or one still
# running when the provider's tool window closes), and how it gives the result later: a
# function call's output can be sent only once, so the result comes as a system message in
# this form. The local engine recognises both and hands the result to its brain.
PENDING_OUTPUT = json.dumps(
    {
        "status": "pending",
        "message": "The result will follow; tell the caller you are working on it.",
    }
)
_FOLLOWED = re.compile(
    r"^(?:Result of (?P<ok>[A-Za-z0-9_\-]+) \(call (?P<ok_id>[^)\s]*)\)"
    r"|(?P<failed>[A-Za-z0-9_\-]+) \(call (?P<failed_id>[^)\s]*)\) failed): (?P<output>.*)$",
    re.DOTALL,
)


def is_pending_output(output: str) -> bool:
    """True for the output that says a tool's result will follow."""
    return output == PENDING_OUTPUT


def result_follows(name: str, call_id: str, output: str, ok: bool) -> str:
    """The message that gives the model a result it was told would follow (or says the
    tool failed: `output` is then the tool's error, as JSON)."""
    if ok:
        return f"Result of {name} (call {call_id}): {output}"
    return f"{name} (call {call_id}) failed: {output}"


def followed_result(text: str) -> tuple[str, bool, str] | None:
    """`(call_id, ok, output)` of a `result_follows()` message; None for any other text."""
    m = _FOLLOWED.match(text)
    if m is None:
        return None
    ok = m.group("ok") is not None
    return m.group("ok_id" if ok else "failed_id"), ok, m.group("output")


@dataclass(frozen=True)
class HistoryItem:
    """One item of a call's conversation so far, as the caller heard it: what a new or
    reconnected provider session is given so that it goes on where the caller is."""

    kind: Literal["user", "assistant", "system", "image", "function_call", "function_output"]
    text: str = ""  # user / assistant / system words; an image's data URL; a tool's output
    call_id: str = ""  # function_call / function_output
    name: str = ""  # function_call: the tool
    arguments: str = ""  # function_call: the model's JSON arguments


@dataclass(frozen=True)
class SessionConfig:
    """What a route asks of a provider session for one call."""

    provider: str = "echo"
    instructions: str = ""
    voice: str = ""
    tools: tuple[ToolSpec, ...] = ()
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)
    audio_format: Literal["pcm16", "g711_ulaw", "g711_alaw"] = "pcm16"
    input_transcription_model: str | None = None
    temperature: float | None = None
    echo_delay_ms: int = 0
    # The rate of the call's media (the carrier's choice). A provider that can work at it
    # (the echo, a G.711 model at 8 kHz) takes and gives audio at that rate: nothing resampled.
    media_rate: int = 24000
    # The conversation so far, asked each time the session connects or reconnects (a
    # provider restarting, another provider taking over): it is restored right after the
    # session's settings, so the model goes on where the caller is and never greets again.
    history: Callable[[], Sequence[HistoryItem]] | None = None
    # Extra `session.update` fields for servers that take them (the local engine's `flow`);
    # never sent to OpenAI, which refuses unknown parameters.
    extra: dict[str, Any] = field(default_factory=dict)


# ---------- what a provider session emits ----------


@dataclass(frozen=True)
class SpeechStarted:
    """The provider's VAD heard the caller start speaking."""

    audio_start_ms: int = 0
    item_id: str = ""


@dataclass(frozen=True)
class SpeechStopped:
    audio_end_ms: int = 0
    item_id: str = ""


@dataclass(frozen=True)
class AudioDelta:
    """Bot audio to play: PCM16 mono at the session's `audio_rate`, any length."""

    pcm: bytes
    item_id: str = ""
    response_id: str = ""


@dataclass(frozen=True)
class AudioDone:
    """The bot's audio for this item is complete (more may follow in another item)."""

    item_id: str = ""
    response_id: str = ""


@dataclass(frozen=True)
class TranscriptDelta:
    role: Literal["user", "assistant"]
    text: str
    item_id: str = ""
    final: bool = False  # True: `text` is the whole transcript of the item


@dataclass(frozen=True)
class FunctionCall:
    call_id: str
    name: str
    arguments: str  # JSON text, as the model wrote it
    item_id: str = ""
    response_id: str = ""


@dataclass(frozen=True)
class Usage:
    """Token usage of one response (Realtime `response.done.response.usage`). The cached
    input tokens are part of the text and audio input counts, split into their own two
    (cached text and cached audio cost differently)."""

    input_text_tokens: int = 0
    input_audio_tokens: int = 0
    input_cached_tokens: int = 0
    output_text_tokens: int = 0
    output_audio_tokens: int = 0
    total_tokens: int = 0
    input_cached_text_tokens: int = 0
    input_cached_audio_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__))


@dataclass(frozen=True)
class ResponseStarted:
    """The provider began a response (`response.created`): a reply is under way."""

    response_id: str = ""


@dataclass(frozen=True)
class ResponseDone:
    response_id: str
    status: str  # completed | cancelled | failed | incomplete
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True)
class ProviderErrorEvent:
    message: str
    code: str = ""
    event_id: str = ""  # the client event the server complained about
    retryable: bool = False
    fatal: bool = False  # the session cannot go on (auth, quota...)


@dataclass(frozen=True)
class Reconnected:
    """The provider connection dropped and was restored with the conversation so far."""

    attempt: int = 1


ProviderEvent = (
    SpeechStarted
    | SpeechStopped
    | AudioDelta
    | AudioDone
    | TranscriptDelta
    | FunctionCall
    | ResponseStarted
    | ResponseDone
    | ProviderErrorEvent
    | Reconnected
)


async def drain(queue: asyncio.Queue[ProviderEvent | None]) -> AsyncIterator[ProviderEvent]:
    """A session's event stream: what its queue holds, until a None ends it."""
    while True:
        ev = await queue.get()
        if ev is None:
            return
        yield ev


class ProviderSession(Protocol):
    # The rate of the PCM16 mono it takes in `send_audio` and gives in `AudioDelta`.
    audio_rate: int

    async def send_audio(self, pcm: bytes) -> None: ...

    async def commit_input(self) -> None: ...

    async def clear_input(self) -> None: ...

    async def create_response(self, instructions: str | None = None) -> None: ...

    async def cancel_response(self) -> None: ...

    async def truncate(self, item_id: str, audio_end_ms: int) -> None: ...

    async def send_function_output(self, call_id: str, output: str) -> None: ...

    async def add_text_item(self, text: str, role: Literal["user", "system"] = "user") -> None: ...

    async def add_image_item(self, data_url: str) -> None: ...

    def events(self) -> AsyncIterator[ProviderEvent]: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do, so the engine asks this instead of checking its name."""

    speech: bool = True  # speaks text of its own: a greeting, an operator's `say`
    conversation: bool = True  # keeps a conversation that items can be added to (`inject`)
    # Its audio may be barged in on. The echo provider's "bot audio" is the caller's own
    # voice: it must never interrupt itself.
    interruptible: bool = True


class Provider(Protocol):
    name: str
    capabilities: Capabilities

    async def connect(self, config: SessionConfig) -> ProviderSession: ...
