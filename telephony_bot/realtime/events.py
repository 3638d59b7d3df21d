"""Realtime server events as pydantic models, and `parse_server_event`.

Where an event exists under a preview and a GA name with the same fields, one model accepts
both names (its ``type`` Literal lists both), so a reader does not care which dialect it reads.
Every model ignores-but-keeps unknown fields (``extra="allow"``), and nearly every field has a
default, so new or missing server fields do not break parsing.

Field names and event names follow the openai-python SDK types (``openai/types/beta/realtime`` for
the preview, ``openai/types/realtime`` for GA).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeAlias, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError


class ProtocolError(ValueError):
    """A server frame that is not a Realtime event at all (not JSON, not an object, no ``type``),
    or a known event whose fields have the wrong JSON types."""


# ---------------------------------------------------------------- nested server objects


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorDetail(_Model):
    """``error.error`` (and ``status_details.error`` / transcription ``failed.error``)."""

    type: str | None = None
    code: str | None = None
    message: str | None = None
    param: str | None = None
    event_id: str | None = None  # the client event the server complains about


class ContentPart(_Model):
    type: str | None = None  # input_text | input_audio | text | audio | output_text | output_audio
    text: str | None = None
    audio: str | None = None
    transcript: str | None = None


class ConversationItem(_Model):
    id: str | None = None
    type: str | None = None  # message | function_call | function_call_output | (GA) mcp_*
    object: str | None = None
    status: str | None = None
    role: str | None = None
    content: list[ContentPart] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | None = None


class CachedTokenDetails(_Model):
    text_tokens: int | None = None
    audio_tokens: int | None = None
    image_tokens: int | None = None


class InputTokenDetails(_Model):
    text_tokens: int | None = None
    audio_tokens: int | None = None
    cached_tokens: int | None = None
    cached_tokens_details: CachedTokenDetails | None = None
    image_tokens: int | None = None


class OutputTokenDetails(_Model):
    text_tokens: int | None = None
    audio_tokens: int | None = None


class ResponseUsage(_Model):
    total_tokens: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    input_token_details: InputTokenDetails | None = None
    output_token_details: OutputTokenDetails | None = None


class ResponseStatusDetails(_Model):
    type: str | None = None
    reason: str | None = None  # turn_detected | client_cancelled | max_output_tokens | ...
    error: ErrorDetail | None = None


class ResponseInfo(_Model):
    """The ``response`` object of ``response.created`` / ``response.done``."""

    id: str | None = None
    object: str | None = None
    status: str | None = None  # in_progress | completed | cancelled | failed | incomplete
    status_details: ResponseStatusDetails | None = None
    output: list[ConversationItem] | None = None
    usage: ResponseUsage | None = None


class RateLimit(_Model):
    name: str | None = None
    limit: int | None = None
    remaining: int | None = None
    reset_seconds: float | None = None


# ---------------------------------------------------------------- server events


class _Event(_Model):
    event_id: str | None = None


class SessionCreatedEvent(_Event):
    type: Literal["session.created"]
    session: dict[str, Any] = Field(default_factory=dict)


class SessionUpdatedEvent(_Event):
    type: Literal["session.updated"]
    session: dict[str, Any] = Field(default_factory=dict)


class ConversationCreatedEvent(_Event):
    type: Literal["conversation.created"]
    conversation: dict[str, Any] = Field(default_factory=dict)


class SpeechStartedEvent(_Event):
    type: Literal["input_audio_buffer.speech_started"]
    audio_start_ms: int = 0
    item_id: str = ""


class SpeechStoppedEvent(_Event):
    type: Literal["input_audio_buffer.speech_stopped"]
    audio_end_ms: int = 0
    item_id: str = ""


class InputAudioCommittedEvent(_Event):
    type: Literal["input_audio_buffer.committed"]
    item_id: str = ""
    previous_item_id: str | None = None


class InputAudioClearedEvent(_Event):
    type: Literal["input_audio_buffer.cleared"]


class InputAudioTimeoutTriggeredEvent(_Event):
    """GA: server VAD's ``idle_timeout_ms`` expired with no speech."""

    type: Literal["input_audio_buffer.timeout_triggered"]
    audio_start_ms: int = 0
    audio_end_ms: int = 0
    item_id: str = ""


class ConversationItemCreatedEvent(_Event):
    """Preview (and still in the GA SDK's union): an item joined the conversation."""

    type: Literal["conversation.item.created"]
    item: ConversationItem = Field(default_factory=ConversationItem)
    previous_item_id: str | None = None


class ConversationItemAddedEvent(_Event):
    """GA: an item joined the conversation (assistant items still empty, status in_progress)."""

    type: Literal["conversation.item.added"]
    item: ConversationItem = Field(default_factory=ConversationItem)
    previous_item_id: str | None = None


class ConversationItemDoneEvent(_Event):
    """GA: an item is final (full content except audio)."""

    type: Literal["conversation.item.done"]
    item: ConversationItem = Field(default_factory=ConversationItem)
    previous_item_id: str | None = None


class ConversationItemTruncatedEvent(_Event):
    type: Literal["conversation.item.truncated"]
    item_id: str = ""
    content_index: int = 0
    audio_end_ms: int = 0


class ConversationItemDeletedEvent(_Event):
    type: Literal["conversation.item.deleted"]
    item_id: str = ""


class InputTranscriptionCompletedEvent(_Event):
    type: Literal["conversation.item.input_audio_transcription.completed"]
    item_id: str = ""
    content_index: int = 0
    transcript: str = ""
    usage: dict[str, Any] | None = None


class InputTranscriptionDeltaEvent(_Event):
    type: Literal["conversation.item.input_audio_transcription.delta"]
    item_id: str = ""
    content_index: int | None = None
    delta: str | None = None


class InputTranscriptionFailedEvent(_Event):
    type: Literal["conversation.item.input_audio_transcription.failed"]
    item_id: str = ""
    content_index: int = 0
    error: ErrorDetail = Field(default_factory=ErrorDetail)


class ResponseCreatedEvent(_Event):
    type: Literal["response.created"]
    response: ResponseInfo = Field(default_factory=ResponseInfo)


class ResponseDoneEvent(_Event):
    type: Literal["response.done"]
    response: ResponseInfo = Field(default_factory=ResponseInfo)


class ResponseOutputItemAddedEvent(_Event):
    type: Literal["response.output_item.added"]
    response_id: str = ""
    output_index: int = 0
    item: ConversationItem = Field(default_factory=ConversationItem)


class ResponseOutputItemDoneEvent(_Event):
    type: Literal["response.output_item.done"]
    response_id: str = ""
    output_index: int = 0
    item: ConversationItem = Field(default_factory=ConversationItem)


class _ContentEvent(_Event):
    response_id: str = ""
    item_id: str = ""
    output_index: int = 0
    content_index: int = 0


class ResponseContentPartAddedEvent(_ContentEvent):
    type: Literal["response.content_part.added"]
    part: ContentPart = Field(default_factory=ContentPart)


class ResponseContentPartDoneEvent(_ContentEvent):
    type: Literal["response.content_part.done"]
    part: ContentPart = Field(default_factory=ContentPart)


class ResponseAudioDeltaEvent(_ContentEvent):
    type: Literal["response.audio.delta", "response.output_audio.delta"]
    delta: str = ""  # base64 audio in the session's output format


class ResponseAudioDoneEvent(_ContentEvent):
    type: Literal["response.audio.done", "response.output_audio.done"]


class ResponseAudioTranscriptDeltaEvent(_ContentEvent):
    type: Literal["response.audio_transcript.delta", "response.output_audio_transcript.delta"]
    delta: str = ""


class ResponseAudioTranscriptDoneEvent(_ContentEvent):
    type: Literal["response.audio_transcript.done", "response.output_audio_transcript.done"]
    transcript: str = ""


class ResponseTextDeltaEvent(_ContentEvent):
    type: Literal["response.text.delta", "response.output_text.delta"]
    delta: str = ""


class ResponseTextDoneEvent(_ContentEvent):
    type: Literal["response.text.done", "response.output_text.done"]
    text: str = ""


class FunctionCallArgumentsDeltaEvent(_Event):
    type: Literal["response.function_call_arguments.delta"]
    response_id: str = ""
    item_id: str = ""
    output_index: int = 0
    call_id: str = ""
    delta: str = ""


class FunctionCallArgumentsDoneEvent(_Event):
    """``name`` is in the GA types; the preview reference omits it, though OpenAI's preview
    servers send it. `RealtimeEventMapper` fills it in from ``response.output_item.added``."""

    type: Literal["response.function_call_arguments.done"]
    response_id: str = ""
    item_id: str = ""
    output_index: int = 0
    call_id: str = ""
    name: str | None = None
    arguments: str = ""


class RateLimitsUpdatedEvent(_Event):
    type: Literal["rate_limits.updated"]
    rate_limits: list[RateLimit] = Field(default_factory=list)


class ErrorEvent(_Event):
    type: Literal["error"]
    error: ErrorDetail = Field(default_factory=ErrorDetail)


ServerEvent: TypeAlias = Annotated[
    SessionCreatedEvent
    | SessionUpdatedEvent
    | ConversationCreatedEvent
    | SpeechStartedEvent
    | SpeechStoppedEvent
    | InputAudioCommittedEvent
    | InputAudioClearedEvent
    | InputAudioTimeoutTriggeredEvent
    | ConversationItemCreatedEvent
    | ConversationItemAddedEvent
    | ConversationItemDoneEvent
    | ConversationItemTruncatedEvent
    | ConversationItemDeletedEvent
    | InputTranscriptionCompletedEvent
    | InputTranscriptionDeltaEvent
    | InputTranscriptionFailedEvent
    | ResponseCreatedEvent
    | ResponseDoneEvent
    | ResponseOutputItemAddedEvent
    | ResponseOutputItemDoneEvent
    | ResponseContentPartAddedEvent
    | ResponseContentPartDoneEvent
    | ResponseAudioDeltaEvent
    | ResponseAudioDoneEvent
    | ResponseAudioTranscriptDeltaEvent
    | ResponseAudioTranscriptDoneEvent
    | ResponseTextDeltaEvent
    | ResponseTextDoneEvent
    | FunctionCallArgumentsDeltaEvent
    | FunctionCallArgumentsDoneEvent
    | RateLimitsUpdatedEvent
    | ErrorEvent,
    Field(discriminator="type"),
]

_SERVER_EVENT: TypeAdapter[ServerEvent] = TypeAdapter(ServerEvent)
_SERVER_EVENT_MODELS: tuple[type[_Event], ...] = get_args(get_args(ServerEvent)[0])

#: Every server event ``type`` `parse_server_event` turns into a model (others: `UnknownEvent`).
KNOWN_SERVER_EVENT_TYPES: frozenset[str] = frozenset(
    name
    for model in _SERVER_EVENT_MODELS
    for name in get_args(model.model_fields["type"].annotation)
)


class UnknownEvent(BaseModel):
    """A well-formed event whose ``type`` this module does not model (log it, skip it)."""

    model_config = ConfigDict(frozen=True)

    type: str
    raw: dict[str, Any] = Field(default_factory=dict)


def parse_server_event(data: dict[str, Any] | str | bytes) -> ServerEvent | UnknownEvent:
    """One server frame as a typed event.

    An unknown ``type`` gives `UnknownEvent` (never an exception). `ProtocolError` is raised for
    a frame that is not JSON, not a JSON object, or has no string ``type``, and for a known event
    whose fields have the wrong JSON types (a reader loop should log it and go on).
    """
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProtocolError(f"server frame is not UTF-8 text: {e}") from None
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as e:
            raise ProtocolError(f"server frame is not JSON: {e.msg} at {e.pos}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"server frame is a JSON {type(data).__name__}, not an object")
    etype = data.get("type")
    if not isinstance(etype, str) or not etype:
        raise ProtocolError("server event has no 'type'")
    if etype not in KNOWN_SERVER_EVENT_TYPES:
        return UnknownEvent(type=etype, raw=data)
    try:
        return _SERVER_EVENT.validate_python(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'][1:]) or '?'}: {err['msg']}" for err in e.errors()
        )
        raise ProtocolError(f"malformed {etype!r} event: {problems}") from None
