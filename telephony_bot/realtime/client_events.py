"""Realtime client events, as JSON-ready dicts, in either dialect.

Each carries an ``event_id`` (the server echoes it in ``error.event_id``, so log it). The
session's settings come from the provider port's `SessionConfig`.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable
from typing import Any, Literal

from telephony_bot.providers.base import SessionConfig, ToolSpec, TurnDetection
from telephony_bot.realtime.dialect import Dialect, audio_format, check_dialect


def new_event_id() -> str:
    """A client ``event_id``: ``evt_`` and 16 random hex digits."""
    return "evt_" + secrets.token_hex(8)


def _event(etype: str, event_id: str | None, **fields: Any) -> dict[str, Any]:
    return {"type": etype, "event_id": event_id or new_event_id(), **fields}


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
    check_dialect(dialect)
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
    check_dialect(dialect)
    if dialect != "ga":
        raise ValueError("image input (input_image) exists only in the GA Realtime dialect")
    if not data_url.startswith("data:image/"):
        raise ValueError("image input must be a data URL (data:image/png;base64,...)")
    part: dict[str, Any] = {"type": "input_image", "image_url": data_url}
    if detail:
        part["detail"] = detail
    return _item_create(_message("user", [part]), event_id)
