"""OpenAI Realtime wire protocol: server events in, port events out, client events built.

Two dialects share one event flow and differ in names and in the session shape:

* ``"preview"`` — the beta protocol (header ``OpenAI-Beta: realtime=v1``; Azure OpenAI speaks
  it too): ``response.audio.delta``, ``response.audio_transcript.delta``, ``response.text.delta``,
  a flat ``session`` (``modalities``, ``input_audio_format``, ``turn_detection``...).
* ``"ga"`` — ``gpt-realtime``: ``response.output_audio.delta``,
  ``response.output_audio_transcript.delta``, ``response.output_text.delta``,
  ``conversation.item.added`` / ``.done``, and a nested ``session`` (``type: "realtime"``,
  ``audio.input`` / ``audio.output``).

Server events are parsed into pydantic models (`parse_server_event`). Where an event exists under
a preview and a GA name with the same fields, one model accepts both names (its ``type`` Literal
lists both), so the mapping to the port (`to_provider_events`, `RealtimeEventMapper`) does not
care which dialect it reads. Every model ignores-but-keeps unknown fields (``extra="allow"``), and
nearly every field has a default, so new or missing server fields do not break parsing.

Client events are plain JSON-ready dicts, each with an ``event_id`` (the server echoes it in
``error.event_id``, so log it).

Field names and event names follow the openai-python SDK types (``openai/types/beta/realtime`` for
the preview, ``openai/types/realtime`` for GA).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Iterable
from typing import Annotated, Any, Literal, TypeAlias, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from telephony_bot.providers.base import (
    AudioDelta,
    AudioDone,
    FunctionCall,
    ProviderErrorEvent,
    ProviderEvent,
    ResponseDone,
    SessionConfig,
    SpeechStarted,
    SpeechStopped,
    ToolSpec,
    TranscriptDelta,
    TurnDetection,
    Usage,
)

Dialect = Literal["preview", "ga"]
DIALECTS: tuple[Dialect, ...] = ("preview", "ga")


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


class InputTokenDetails(_Model):
    text_tokens: int | None = None
    audio_tokens: int | None = None
    cached_tokens: int | None = None
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


# ---------------------------------------------------------------- server events -> port events

#: Error codes (or types) after which the session cannot go on: a new connection with the same
#: credentials would fail the same way — except ``session_expired``, also in `RETRYABLE_ERRORS`
#: (the session hit its maximum duration; a new session can carry the conversation over).
FATAL_ERRORS: frozenset[str] = frozenset(
    {
        "authentication_error",
        "invalid_api_key",
        "insufficient_quota",
        "permission_error",
        "account_deactivated",
        "billing_hard_limit_reached",
        "model_not_found",
        "session_expired",
    }
)
#: Error codes (or types) that may succeed if tried again later.
RETRYABLE_ERRORS: frozenset[str] = frozenset(
    {
        "rate_limit_exceeded",
        "rate_limit_error",
        "server_error",
        "internal_error",
        "overloaded",
        "service_unavailable",
        "session_expired",
    }
)


def classify_error(error_type: str | None, code: str | None) -> tuple[bool, bool]:
    """``(retryable, fatal)`` for an ``error`` event.

    * ``code`` or ``type`` in `FATAL_ERRORS` (bad key, no quota, account problems, expired
      session) → fatal: end (or re-establish) the session.
    * ``code`` or ``type`` in `RETRYABLE_ERRORS` (rate limits, server errors) → retryable.
    * anything else — above all ``invalid_request_error`` (a bad client event: truncating past
      the audio, committing an empty buffer, cancelling with no active response...) → neither:
      the server stays up and the call goes on; log it with the echoed ``event_id``.
    """
    keys = {k for k in (code, error_type) if k}
    return bool(keys & RETRYABLE_ERRORS), bool(keys & FATAL_ERRORS)


def usage_from(usage: ResponseUsage | None) -> Usage:
    """The port's `Usage` from ``response.usage`` (missing or null fields count as 0)."""
    if usage is None:
        return Usage()
    inp = usage.input_token_details or InputTokenDetails()
    out = usage.output_token_details or OutputTokenDetails()
    return Usage(
        input_text_tokens=inp.text_tokens or 0,
        input_audio_tokens=inp.audio_tokens or 0,
        input_cached_tokens=inp.cached_tokens or 0,
        output_text_tokens=out.text_tokens or 0,
        output_audio_tokens=out.audio_tokens or 0,
        total_tokens=usage.total_tokens or 0,
    )


def error_event(err: ErrorDetail) -> ProviderErrorEvent:
    """The port's error event for an ``error.error`` object (see `classify_error`).

    ``code`` is the error's ``code``, or its ``type`` when the server sent no code."""
    retryable, fatal = classify_error(err.type, err.code)
    return ProviderErrorEvent(
        message=err.message or err.code or err.type or "unknown error",
        code=err.code or err.type or "",
        event_id=err.event_id or "",
        retryable=retryable,
        fatal=fatal,
    )


def _decode_audio(ev: ResponseAudioDeltaEvent) -> list[ProviderEvent]:
    try:
        # strict check in C instead of b64decode(validate=True)'s extra regex pass over the
        # delta: the same rejections, ~1 µs less per 40 ms delta (decoding itself is ~5 µs)
        pcm = binascii.a2b_base64(ev.delta, strict_mode=True)
    except (binascii.Error, ValueError) as e:
        return [
            ProviderErrorEvent(
                message=f"undecodable audio delta for item {ev.item_id}: {e}",
                code="invalid_audio_delta",
                event_id=ev.event_id or "",
            )
        ]
    return [AudioDelta(pcm, item_id=ev.item_id, response_id=ev.response_id)] if pcm else []


def to_provider_events(ev: ServerEvent | UnknownEvent) -> list[ProviderEvent]:
    """What one server event means to a session, as the port's events (often none).

    Function calls come from ``response.function_call_arguments.done`` only — never again from
    ``response.output_item.done`` (which repeats the same call as a ``function_call`` item), so
    each call is run once; when a preview-style server leaves ``name`` out of
    ``arguments.done``, use `RealtimeEventMapper`, which fills it in. ``response.text.*`` counts
    as assistant transcript; ``input_audio_transcription.delta`` as a non-final user transcript.
    Session, conversation, content-part, rate-limit, transcription-failure and unknown events
    map to nothing.
    """
    match ev:
        case SpeechStartedEvent():
            return [SpeechStarted(audio_start_ms=ev.audio_start_ms, item_id=ev.item_id)]
        case SpeechStoppedEvent():
            return [SpeechStopped(audio_end_ms=ev.audio_end_ms, item_id=ev.item_id)]
        case ResponseAudioDeltaEvent():
            return _decode_audio(ev)
        case ResponseAudioDoneEvent():
            return [AudioDone(item_id=ev.item_id, response_id=ev.response_id)]
        case ResponseAudioTranscriptDeltaEvent() | ResponseTextDeltaEvent():
            return [TranscriptDelta("assistant", ev.delta, item_id=ev.item_id)] if ev.delta else []
        case ResponseAudioTranscriptDoneEvent():
            return [TranscriptDelta("assistant", ev.transcript, item_id=ev.item_id, final=True)]
        case ResponseTextDoneEvent():
            return [TranscriptDelta("assistant", ev.text, item_id=ev.item_id, final=True)]
        case InputTranscriptionDeltaEvent():
            return [TranscriptDelta("user", ev.delta, item_id=ev.item_id)] if ev.delta else []
        case InputTranscriptionCompletedEvent():
            return [TranscriptDelta("user", ev.transcript, item_id=ev.item_id, final=True)]
        case FunctionCallArgumentsDoneEvent():
            return [
                FunctionCall(
                    call_id=ev.call_id,
                    name=ev.name or "",
                    arguments=ev.arguments,
                    item_id=ev.item_id,
                    response_id=ev.response_id,
                )
            ]
        case ResponseDoneEvent():
            r = ev.response
            return [ResponseDone(r.id or "", r.status or "", usage_from(r.usage))]
        case ErrorEvent():
            return [error_event(ev.error)]
    return []


class RealtimeEventMapper:
    """`to_provider_events` with the little state one connection needs: the names of the
    functions being called.

    ``response.function_call_arguments.done`` carries ``name`` in GA but not in the preview
    reference. The mapper remembers names from ``function_call`` items announced by
    ``response.output_item.added`` / ``conversation.item.created|added``. If a name is still
    unknown at ``arguments.done``, the call is emitted from ``response.output_item.done``
    (whose item has it) instead — so each call still comes out exactly once.
    """

    def __init__(self) -> None:
        self._names: dict[str, str] = {}  # call_id or item_id -> function name
        self._deferred: set[str] = set()  # call_ids whose arguments.done had no name

    def map(self, ev: ServerEvent | UnknownEvent) -> list[ProviderEvent]:
        match ev:
            case (
                ResponseOutputItemAddedEvent()
                | ConversationItemCreatedEvent()
                | ConversationItemAddedEvent()
            ):
                self._remember(ev.item)
                return []
            case FunctionCallArgumentsDoneEvent():
                name = ev.name or self._names.get(ev.call_id) or self._names.get(ev.item_id)
                if not name:
                    self._deferred.add(ev.call_id)
                    return []
                out = to_provider_events(ev)
                return [_with_name(e, name) for e in out]
            case ResponseOutputItemDoneEvent():
                item = ev.item
                if item.type == "function_call" and item.call_id in self._deferred:
                    self._deferred.discard(item.call_id)
                    return [
                        FunctionCall(
                            call_id=item.call_id,
                            name=item.name or "",
                            arguments=item.arguments or "",
                            item_id=item.id or "",
                            response_id=ev.response_id,
                        )
                    ]
                return []
            case ResponseDoneEvent():
                self._names.clear()
                self._deferred.clear()
        return to_provider_events(ev)

    def _remember(self, item: ConversationItem) -> None:
        if item.type == "function_call" and item.name:
            for key in (item.call_id, item.id):
                if key:
                    self._names[key] = item.name


def _with_name(ev: ProviderEvent, name: str) -> ProviderEvent:
    if isinstance(ev, FunctionCall) and ev.name != name:
        return FunctionCall(ev.call_id, name, ev.arguments, ev.item_id, ev.response_id)
    return ev


# ---------------------------------------------------------------- client events


def new_event_id() -> str:
    """A client ``event_id``: ``evt_`` and 16 random hex digits."""
    return "evt_" + secrets.token_hex(8)


def _event(etype: str, event_id: str | None, **fields: Any) -> dict[str, Any]:
    return {"type": etype, "event_id": event_id or new_event_id(), **fields}


def _check_dialect(dialect: str) -> None:
    if dialect not in DIALECTS:
        raise ValueError(f"unknown Realtime dialect {dialect!r}; expected 'preview' or 'ga'")


_PREVIEW_FORMATS = {"pcm16": "pcm16", "g711_ulaw": "g711_ulaw", "g711_alaw": "g711_alaw"}
_GA_FORMATS: dict[str, dict[str, Any]] = {
    "pcm16": {"type": "audio/pcm", "rate": 24000},
    "g711_ulaw": {"type": "audio/pcmu"},
    "g711_alaw": {"type": "audio/pcma"},
}


def audio_format(fmt: str, dialect: Dialect) -> str | dict[str, Any]:
    """A session audio format as the dialect writes it (preview: ``"pcm16"``; GA:
    ``{"type": "audio/pcm", "rate": 24000}``)."""
    _check_dialect(dialect)
    table: dict[str, Any] = _PREVIEW_FORMATS if dialect == "preview" else _GA_FORMATS
    if fmt not in table:
        raise ValueError(f"unsupported audio format {fmt!r}; expected one of {sorted(table)}")
    value = table[fmt]
    return dict(value) if isinstance(value, dict) else value


def turn_detection(td: TurnDetection | None) -> dict[str, Any] | None:
    """``turn_detection`` (same shape in both dialects); None → ``null`` (client decides turns).

    ``semantic_vad`` takes no threshold/padding/silence settings, so they are left out for it.
    """
    if td is None:
        return None
    out: dict[str, Any] = {"type": td.type}
    if td.type == "server_vad":
        out.update(
            threshold=td.threshold,
            prefix_padding_ms=td.prefix_padding_ms,
            silence_duration_ms=td.silence_duration_ms,
        )
    out.update(create_response=td.create_response, interrupt_response=td.interrupt_response)
    return out


def tools(specs: Iterable[ToolSpec]) -> list[dict[str, Any]]:
    """Function tools as the session's ``tools`` list (same shape in both dialects)."""
    return [
        {
            "type": "function",
            "name": t.name,
            "description": t.description,
            "parameters": dict(t.parameters),
        }
        for t in specs
    ]


def session_update(
    config: SessionConfig, dialect: Dialect, *, event_id: str | None = None
) -> dict[str, Any]:
    """``session.update`` for a call.

    Empty ``instructions`` / ``voice`` are left out (the server keeps its default); so is input
    transcription when no model is set. ``tools`` is always sent (an empty list clears them).
    ``temperature`` is preview only: the GA session has no such field.
    """
    _check_dialect(dialect)
    fmt_in = audio_format(config.audio_format, dialect)
    td = turn_detection(config.turn_detection)
    session: dict[str, Any]
    if dialect == "preview":
        session = {"modalities": ["text", "audio"]}
        if config.instructions:
            session["instructions"] = config.instructions
        if config.voice:
            session["voice"] = config.voice
        session["input_audio_format"] = fmt_in
        session["output_audio_format"] = audio_format(config.audio_format, dialect)
        if config.input_transcription_model:
            session["input_audio_transcription"] = {"model": config.input_transcription_model}
        session["turn_detection"] = td
        session["tools"] = tools(config.tools)
        session["tool_choice"] = "auto"
        if config.temperature is not None:
            session["temperature"] = config.temperature
    else:
        audio_in: dict[str, Any] = {"format": fmt_in, "turn_detection": td}
        if config.input_transcription_model:
            audio_in["transcription"] = {"model": config.input_transcription_model}
        audio_out: dict[str, Any] = {"format": audio_format(config.audio_format, dialect)}
        if config.voice:
            audio_out["voice"] = config.voice
        session = {"type": "realtime", "output_modalities": ["audio"]}
        if config.instructions:
            session["instructions"] = config.instructions
        session["audio"] = {"input": audio_in, "output": audio_out}
        session["tools"] = tools(config.tools)
        session["tool_choice"] = "auto"
    session.update(config.extra)
    return _event("session.update", event_id, session=session)


def input_audio_append(pcm: bytes, *, event_id: str | None = None) -> dict[str, Any]:
    """``input_audio_buffer.append`` with the audio base64-encoded."""
    return _event("input_audio_buffer.append", event_id, audio=base64.b64encode(pcm).decode())


def input_audio_append_text(pcm: bytes) -> str:
    """`input_audio_buffer.append` as JSON text, built directly: the client sends one every
    20 ms per call, and `json.dumps` of the dict is most of its cost. Base64 and the event
    id's hex digits need no JSON escaping, so the text equals `json.dumps` of the dict."""
    audio = base64.b64encode(pcm).decode("ascii")
    return (
        f'{{"type": "input_audio_buffer.append", "event_id": "{new_event_id()}", '
        f'"audio": "{audio}"}}'
    )


def input_audio_commit(*, event_id: str | None = None) -> dict[str, Any]:
    return _event("input_audio_buffer.commit", event_id)


def input_audio_clear(*, event_id: str | None = None) -> dict[str, Any]:
    return _event("input_audio_buffer.clear", event_id)


def response_create(
    instructions: str | None = None, *, event_id: str | None = None
) -> dict[str, Any]:
    """``response.create``; ``instructions`` override the session's for this response only."""
    if instructions is None:
        return _event("response.create", event_id)
    return _event("response.create", event_id, response={"instructions": instructions})


def response_cancel(
    response_id: str | None = None, *, event_id: str | None = None
) -> dict[str, Any]:
    """``response.cancel`` (the in-progress response, or ``response_id``)."""
    if response_id:
        return _event("response.cancel", event_id, response_id=response_id)
    return _event("response.cancel", event_id)


def item_truncate(
    item_id: str, audio_end_ms: int, content_index: int = 0, *, event_id: str | None = None
) -> dict[str, Any]:
    """``conversation.item.truncate``: drop the assistant audio the caller never heard.

    ``audio_end_ms`` must not exceed the audio the server generated for the item (send
    ``min(played_ms, generated_ms)``); negative values become 0.
    """
    return _event(
        "conversation.item.truncate",
        event_id,
        item_id=item_id,
        content_index=content_index,
        audio_end_ms=max(0, int(audio_end_ms)),
    )


def item_delete(item_id: str, *, event_id: str | None = None) -> dict[str, Any]:
    return _event("conversation.item.delete", event_id, item_id=item_id)


def _item_create(item: dict[str, Any], event_id: str | None) -> dict[str, Any]:
    return _event("conversation.item.create", event_id, item=item)


def function_call_output(
    call_id: str, output: str, *, event_id: str | None = None
) -> dict[str, Any]:
    """A tool's result. The model does not go on by itself: send `response_create` after it."""
    item = {"type": "function_call_output", "call_id": call_id, "output": output}
    return _item_create(item, event_id)


def _message(role: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "message", "role": role, "content": content}


def user_text_item(text: str, *, event_id: str | None = None) -> dict[str, Any]:
    return _item_create(_message("user", [{"type": "input_text", "text": text}]), event_id)


def system_text_item(text: str, *, event_id: str | None = None) -> dict[str, Any]:
    return _item_create(_message("system", [{"type": "input_text", "text": text}]), event_id)


def assistant_text_item(
    text: str, dialect: Dialect, *, event_id: str | None = None
) -> dict[str, Any]:
    """An assistant message given as text (e.g. replaying the conversation into a new session
    after a reconnect). The content type differs: preview ``text``, GA ``output_text``."""
    _check_dialect(dialect)
    ctype = "text" if dialect == "preview" else "output_text"
    return _item_create(_message("assistant", [{"type": ctype, "text": text}]), event_id)


def user_image_item(
    data_url: str,
    dialect: Dialect = "ga",
    *,
    detail: Literal["auto", "low", "high"] | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A user message with an image (``input_image``, a ``data:image/...;base64,...`` URL).

    GA only: the preview has no image input, so ``dialect="preview"`` raises ValueError.
    """
    _check_dialect(dialect)
    if dialect != "ga":
        raise ValueError("image input (input_image) exists only in the GA Realtime dialect")
    if not data_url.startswith("data:image/"):
        raise ValueError("image input must be a data URL (data:image/png;base64,...)")
    part: dict[str, Any] = {"type": "input_image", "image_url": data_url}
    if detail:
        part["detail"] = detail
    return _item_create(_message("user", [part]), event_id)
