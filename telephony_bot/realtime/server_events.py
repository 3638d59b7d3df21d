"""What a Realtime server sends: ids, the default session, items, responses, usage, errors.

Plain JSON-ready dicts shaped like OpenAI's, in either dialect, so every server built on
`telephony_bot.realtime.server` sends the same objects.
"""

from __future__ import annotations

import secrets
import string
import time
from typing import Any

from telephony_bot.realtime.dialect import NAMES, Dialect

Event = dict[str, Any]

_ALNUM = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    """An id as OpenAI spells them: ``prefix_`` and 21 letters or digits."""
    return prefix + "_" + "".join(secrets.choice(_ALNUM) for _ in range(21))


def default_session(
    dialect: Dialect, model: str, *, prefix_padding_ms: int = 300, silence_duration_ms: int = 500
) -> Event:
    """The session a server announces in ``session.created`` (server VAD on, 24 kHz PCM16)."""
    td = {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": prefix_padding_ms,
        "silence_duration_ms": silence_duration_ms,
        "create_response": True,
        "interrupt_response": True,
    }
    if dialect == "preview":
        return {
            "id": new_id("sess"),
            "object": "realtime.session",
            "model": model,
            "expires_at": int(time.time()) + 1800,
            "modalities": ["audio", "text"],
            "instructions": "",
            "voice": "alloy",
            "input_audio_format": "pcm16",
            "output_audio_format": "pcm16",
            "input_audio_transcription": None,
            "turn_detection": td,
            "tools": [],
            "tool_choice": "auto",
            "temperature": 0.8,
            "max_response_output_tokens": "inf",
        }
    pcm = {"type": "audio/pcm", "rate": 24000}
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": new_id("sess"),
        "model": model,
        "expires_at": int(time.time()) + 3600,
        "output_modalities": ["audio"],
        "instructions": "",
        "audio": {
            "input": {
                "format": dict(pcm),
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": td,
            },
            "output": {"format": dict(pcm), "voice": "alloy", "speed": 1.0},
        },
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "prompt": None,
    }


def session_turn_detection(session: Event, dialect: Dialect) -> Event | None:
    """A session's ``turn_detection`` (None: off)."""
    if dialect == "preview":
        td = session.get("turn_detection")
    else:
        td = ((session.get("audio") or {}).get("input") or {}).get("turn_detection")
    return td if isinstance(td, dict) else None


def error_detail(
    message: str,
    *,
    code: str | None = "invalid_value",
    param: str | None = None,
    event_id: str | None = None,
    type_: str = "invalid_request_error",
) -> Event:
    """The ``error`` object of an ``error`` event (``event_id``: the client event at fault)."""
    return {"type": type_, "code": code, "message": message, "param": param, "event_id": event_id}


def user_audio_item(item_id: str) -> Event:
    """A committed user turn, before its transcript."""
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "status": "completed",
        "role": "user",
        "content": [{"type": "input_audio", "transcript": None}],
    }


def output_item(
    item_id: str,
    kind: str,
    status: str,
    dialect: Dialect,
    *,
    transcript: str | None = None,
    call_id: str = "",
    name: str = "",
    arguments: str = "",
) -> Event:
    """An assistant output item: an audio message (``transcript`` None: no content part yet)
    or a function call."""
    item: Event = {"id": item_id, "object": "realtime.item", "type": kind, "status": status}
    if kind == "message":
        item["role"] = "assistant"
        part = NAMES[dialect]["part_type"]
        item["content"] = [] if transcript is None else [{"type": part, "transcript": transcript}]
    else:
        item.update(call_id=call_id, name=name, arguments=arguments)
    return item


def response_object(
    response_id: str,
    status: str,
    details: Event | None,
    output: list[Event],
    dialect: Dialect,
    *,
    conversation_id: str,
    voice: Any = "alloy",
    output_audio_format: str = "pcm16",
) -> Event:
    """The ``response`` of ``response.created`` / ``response.done`` (without ``usage``)."""
    obj: Event = {
        "id": response_id,
        "object": "realtime.response",
        "status": status,
        "status_details": details,
        "output": output,
        "conversation_id": conversation_id,
        "metadata": None,
    }
    if dialect == "preview":
        obj.update(
            modalities=["audio", "text"],
            voice=voice,
            output_audio_format=output_audio_format,
            temperature=0.8,
            max_output_tokens="inf",
        )
    else:
        obj.update(output_modalities=["audio"], max_output_tokens="inf")
    return obj


def usage(*, in_text: int, in_audio: int, out_text: int, out_audio: int) -> Event:
    """``response.usage`` from token counts."""
    return {
        "total_tokens": in_audio + in_text + out_audio + out_text,
        "input_tokens": in_audio + in_text,
        "output_tokens": out_audio + out_text,
        "input_token_details": {
            "text_tokens": in_text,
            "audio_tokens": in_audio,
            "cached_tokens": 0,
            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0},
        },
        "output_token_details": {"text_tokens": out_text, "audio_tokens": out_audio},
    }


def audio_tokens(ms: float, per_second: int) -> int:
    """Audio tokens for ``ms`` of audio (OpenAI counts 10 a second in, 20 out)."""
    return int(round(ms / 1000 * per_second))
