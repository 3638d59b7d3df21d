"""The port's session settings (`providers.base.SessionConfig`) as the Realtime wire's
`session.update`, in either dialect: the one place a route's instructions, voice, audio
format, turn detection and tools become what a realtime server reads."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from telephony_bot.providers.base import HistoryItem, SessionConfig, ToolSpec, TurnDetection
from telephony_bot.realtime import client_events as ce
from telephony_bot.realtime.client_events import client_event
from telephony_bot.realtime.dialect import Dialect, audio_format, check_dialect


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
    check_dialect(dialect)
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
    return client_event("session.update", event_id, session=session)


def history_events(items: Iterable[HistoryItem], dialect: Dialect) -> list[dict[str, Any]]:
    """The conversation so far as `conversation.item.create` events, in order (images only
    for GA sessions: the preview API takes none)."""
    out: list[dict[str, Any]] = []
    for it in items:
        if it.kind == "user":
            out.append(ce.user_text_item(it.text))
        elif it.kind == "system":
            out.append(ce.system_text_item(it.text))
        elif it.kind == "assistant":
            out.append(ce.assistant_text_item(it.text, dialect))
        elif it.kind == "function_call":
            out.append(ce.function_call_item(it.call_id, it.name, it.arguments))
        elif it.kind == "function_output":
            out.append(ce.function_call_output(it.call_id, it.text))
        elif it.kind == "image" and dialect == "ga":
            out.append(ce.user_image_item(it.text, dialect))
    return out
