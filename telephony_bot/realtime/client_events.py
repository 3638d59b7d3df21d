"""Realtime client events, as JSON-ready dicts, in either dialect.

Each carries an ``event_id`` (the server echoes it in ``error.event_id``, so log it). The
session's settings (`session.update`) are built from the provider port's `SessionConfig` by
the client (`providers/openai/session_config.py`): the wire package knows no port.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any, Literal

from telephony_bot.realtime.dialect import Dialect, check_dialect


def new_event_id() -> str:
    """A client ``event_id``: ``evt_`` and 16 random hex digits."""
    return "evt_" + secrets.token_hex(8)


def client_event(etype: str, event_id: str | None, **fields: Any) -> dict[str, Any]:
    """A client event of type `etype` (a new ``event_id`` unless one is given)."""
    return {"type": etype, "event_id": event_id or new_event_id(), **fields}


def input_audio_append(pcm: bytes, *, event_id: str | None = None) -> dict[str, Any]:
    """``input_audio_buffer.append`` with the audio base64-encoded."""
    return client_event("input_audio_buffer.append", event_id, audio=base64.b64encode(pcm).decode())


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
    return client_event("input_audio_buffer.commit", event_id)


def input_audio_clear(*, event_id: str | None = None) -> dict[str, Any]:
    return client_event("input_audio_buffer.clear", event_id)


def response_create(
    instructions: str | None = None, *, event_id: str | None = None
) -> dict[str, Any]:
    """``response.create``; ``instructions`` override the session's for this response only."""
    if instructions is None:
        return client_event("response.create", event_id)
    return client_event("response.create", event_id, response={"instructions": instructions})


def response_cancel(
    response_id: str | None = None, *, event_id: str | None = None
) -> dict[str, Any]:
    """``response.cancel`` (the in-progress response, or ``response_id``)."""
    if response_id:
        return client_event("response.cancel", event_id, response_id=response_id)
    return client_event("response.cancel", event_id)


def item_truncate(
    item_id: str, audio_end_ms: int, content_index: int = 0, *, event_id: str | None = None
) -> dict[str, Any]:
    """``conversation.item.truncate``: drop the assistant audio the caller never heard.

    ``audio_end_ms`` must not exceed the audio the server generated for the item (send
    ``min(played_ms, generated_ms)``); negative values become 0.
    """
    return client_event(
        "conversation.item.truncate",
        event_id,
        item_id=item_id,
        content_index=content_index,
        audio_end_ms=max(0, int(audio_end_ms)),
    )


def item_delete(item_id: str, *, event_id: str | None = None) -> dict[str, Any]:
    return client_event("conversation.item.delete", event_id, item_id=item_id)


def _item_create(item: dict[str, Any], event_id: str | None) -> dict[str, Any]:
    return client_event("conversation.item.create", event_id, item=item)


def function_call_item(
    call_id: str, name: str, arguments: str, *, event_id: str | None = None
) -> dict[str, Any]:
    """A function call the model made (e.g. replaying the conversation into a new session)."""
    item = {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments}
    return _item_create(item, event_id)


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
