"""The offline engine served as an OpenAI-Realtime-compatible WebSocket server.

Workers reach it exactly like OpenAI (`ws://host:port/v1/realtime?model=...`), in the preview
dialect (`OpenAI-Beta: realtime=v1` header, `response.audio.delta`, ...) or the GA dialect
(model `gpt-realtime*` or no beta header: `response.output_audio.delta`, ...). What is heard and
said comes from a `pipeline.Pipeline`: a per-session Detector (server VAD), a shared Recognizer
and Synthesizer run in a bounded FIFO pool, and a per-session Brain that turns transcripts and
tool results into actions (Say / CallTool / Transfer / Hangup).

Audio formats: pcm16 (24 kHz), g711_ulaw and g711_alaw (8 kHz; GA names audio/pcm, audio/pcmu,
audio/pcma), each way independently; the engine works on 24 kHz PCM16 inside (`formats.py`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import json
import secrets
import string
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from telephony_bot import log as logmod
from telephony_bot.providers.base import said_exactly
from telephony_bot.realtime.audio import WireInput, WireOutput
from telephony_bot.realtime.dialect import (
    BETA_HEADER,
    NAMES,
    Dialect,
    canonical,
    request_dialect,
    session_formats,
    supported_formats,
)

from .chat_brain import ClauseChunker, Stream
from .pipeline import (
    FRAME_BYTES,
    FRAME_MS,
    CallTool,
    Hangup,
    Pipeline,
    Say,
    Transfer,
    split_clauses,
)
from .work_pool import WorkPool

__all__ = ["LocalRealtimeServer"]

log = logmod.get("local")

Event = dict[str, Any]

BYTES_PER_MS = 48  # 24 kHz PCM16 mono
CHUNK_BYTES = 100 * BYTES_PER_MS  # audio deltas of 100 ms
MIN_COMMIT_MS = 100
PLAYOUT_MARGIN_S = 0.3  # a playing reply's next TTS chunk is due this long before its audio ends
_ALNUM = string.ascii_letters + string.digits


def _new_id(prefix: str) -> str:
    return prefix + "_" + "".join(secrets.choice(_ALNUM) for _ in range(21))


def _deep_merge(base: Event, update: Event) -> Event:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _words(text: str) -> int:
    return len(text.split())


class _Ended(Exception):
    """The response (or the connection) ended: stop streaming quietly."""


_DONE = object()


async def _aiter(items: list[str]) -> AsyncIterator[str]:
    for item in items:
        yield item


def _next_chunk(it: Iterator[bytes]) -> Any:
    return next(it, _DONE)


# ---------------------------------------------------------------- per-connection state


@dataclass
class _OutItem:
    id: str
    type: str  # message | function_call
    output_index: int
    status: str = "in_progress"
    transcript: str = ""
    audio_bytes: int = 0
    part_added: bool = False
    closed: bool = False
    call_id: str = ""
    name: str = ""
    arguments: str = ""
    wire: WireOutput | None = None  # the client's output format (audio items)

    @property
    def audio_ms(self) -> float:
        return self.audio_bytes / BYTES_PER_MS

    def as_item(self, dialect: Dialect) -> Event:
        item: Event = {
            "id": self.id,
            "object": "realtime.item",
            "type": self.type,
            "status": self.status,
        }
        if self.type == "message":
            item["role"] = "assistant"
            part = NAMES[dialect]["part_type"]
            item["content"] = (
                [{"type": part, "transcript": self.transcript}] if self.part_added else []
            )
        else:
            item.update(call_id=self.call_id, name=self.name, arguments=self.arguments)
        return item


@dataclass
class _Resp:
    id: str
    input_audio_ms: float
    input_text_words: int
    cancel: threading.Event = field(default_factory=threading.Event)
    items: list[_OutItem] = field(default_factory=list)
    ended: bool = False
    queue_wait_ms: float = 0.0  # ASR of the turn it answers + its TTS, waiting for the pool
    asr_ms: float = 0.0
    first_audio_at: float | None = None  # monotonic time of its first audio delta
    audio_sent_ms: float = 0.0
    late_ms: float = 0.0  # audio made later than a real-time listener needed it (gaps)
    task: asyncio.Task[None] | None = None
    ended_evt: asyncio.Event = field(default_factory=asyncio.Event)


class _Session:
    def __init__(
        self, server: LocalRealtimeServer, ws: ServerConnection, dialect: Dialect, model: str
    ) -> None:
        self.srv = server
        self.ws = ws
        self.dialect: Dialect = dialect
        self.names = NAMES[dialect]
        self.model = model
        self.closed = False
        self.session: Event = self._default_session()
        self.detector = server.pipeline.detector_factory()
        self.brain: Any = None
        self.started = False  # brain.start() called
        self.pending: list[Any] = []  # actions not yet turned into a response
        self.items: dict[str, Event | _OutItem] = {}
        self.active: _Resp | None = None
        self.auto_response_due = False
        self._frame_buf = b""
        self.wire_in = WireInput()
        self.out_format = "pcm16"
        self.buffer = bytearray()  # input audio since the last commit/clear
        self.stream_ms = 0  # stream time of all appended audio
        self.audio_ms_since_response = 0.0
        self.text_words_since_response = 0
        self.speech_item_id = ""
        self.speech_start_ms = 0
        self._asr_wait_ms = 0.0  # of the last transcribed turn, for its response's metadata
        self._asr_ms = 0.0
        self._turn_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- session settings

    def _default_session(self) -> Event:
        td = {
            "type": "server_vad",
            "threshold": 0.5,
            "prefix_padding_ms": 300,
            "silence_duration_ms": 500,
            "create_response": True,
            "interrupt_response": True,
        }
        if self.dialect == "preview":
            return {
                "id": _new_id("sess"),
                "object": "realtime.session",
                "model": self.model,
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
            "id": _new_id("sess"),
            "model": self.model,
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
        }

    @property
    def turn_detection(self) -> Event | None:
        if self.dialect == "preview":
            td = self.session.get("turn_detection")
        else:
            td = ((self.session.get("audio") or {}).get("input") or {}).get("turn_detection")
        return td if isinstance(td, dict) else None

    def _td(self, key: str, default: Any) -> Any:
        value = (self.turn_detection or {}).get(key)
        return default if value is None else value

    @property
    def instructions(self) -> str:
        return str(self.session.get("instructions") or "")

    @property
    def tools(self) -> list[Event]:
        tools = self.session.get("tools")
        return [t for t in tools if isinstance(t, dict)] if isinstance(tools, list) else []

    def _ensure_brain(self) -> Any:
        if self.brain is None:
            self.brain = self.srv.pipeline.brain_factory(
                self.instructions, self.tools, copy.deepcopy(self.session)
            )
        return self.brain

    # ---- sending

    async def send(self, type_: str, **fields: Any) -> None:
        if self.closed:
            raise _Ended
        ev: Event = {"type": type_, "event_id": _new_id("event"), **fields}
        try:
            await self.ws.send(json.dumps(ev))
        except ConnectionClosed as exc:
            self.closed = True
            raise _Ended from exc

    async def rsend(self, resp: _Resp, type_: str, **fields: Any) -> None:
        if resp.ended:
            raise _Ended
        await self.send(type_, **fields)

    async def error(
        self,
        message: str,
        *,
        code: str | None = "invalid_value",
        param: str | None = None,
        event_id: str | None = None,
        type_: str = "invalid_request_error",
    ) -> None:
        await self.send(
            "error",
            error={
                "type": type_,
                "code": code,
                "message": message,
                "param": param,
                "event_id": event_id,
            },
        )

    async def _item_created(self, item: Event, previous_item_id: str | None) -> None:
        if self.dialect == "preview":
            await self.send(
                "conversation.item.created", previous_item_id=previous_item_id, item=item
            )
        else:
            await self.send("conversation.item.added", previous_item_id=previous_item_id, item=item)
            await self.send("conversation.item.done", previous_item_id=previous_item_id, item=item)

    def _last_item_id(self) -> str | None:
        return next(reversed(self.items), None) if self.items else None

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("local_session_task_failed", exc_info=task.exception())

    # ---- lifecycle

    async def run(self) -> None:
        try:
            await self.send("session.created", session=copy.deepcopy(self.session))
            async for message in self.ws:
                await self.on_message(message)
        except (ConnectionClosed, _Ended):
            pass
        finally:
            self.closed = True
            if self.active is not None:
                self.active.ended = True
                self.active.cancel.set()
                self.active = None
            for task in list(self._tasks):
                task.cancel()

    async def on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            await self.error("Binary frames are not supported; send JSON text events.")
            return
        try:
            ev = json.loads(message)
        except ValueError as exc:
            await self.error(
                f"We could not parse the JSON body of your request. ({exc})", code="invalid_json"
            )
            return
        if not isinstance(ev, dict):
            await self.error("Expected a JSON object.", code="invalid_json")
            return
        type_ = ev.get("type")
        event_id = ev.get("event_id") if isinstance(ev.get("event_id"), str) else None
        handlers = self._handlers()
        handler = handlers.get(type_) if isinstance(type_, str) else None
        if handler is None:
            if not isinstance(type_, str):
                await self.error(
                    "Missing required parameter: 'type'.",
                    code="missing_required_parameter",
                    param="type",
                    event_id=event_id,
                )
            else:
                await self.error(
                    f"Invalid value: '{type_}'. Supported values are: "
                    + ", ".join(f"'{k}'" for k in handlers)
                    + ".",
                    param="type",
                    event_id=event_id,
                )
            return
        try:
            await handler(ev, event_id)
        except _Ended:
            raise
        except Exception as exc:  # a bug in one handler must not end the session
            log.exception("local_event_failed", type=type_)
            await self.error(
                f"Internal error: {exc}",
                code="server_error",
                type_="server_error",
                event_id=event_id,
            )

    def _handlers(self) -> dict[str, Callable[[Event, str | None], Any]]:
        return {
            "session.update": self.on_session_update,
            "input_audio_buffer.append": self.on_append,
            "input_audio_buffer.commit": self.on_commit,
            "input_audio_buffer.clear": self.on_clear,
            "conversation.item.create": self.on_item_create,
            "conversation.item.truncate": self.on_truncate,
            "conversation.item.delete": self.on_item_delete,
            "response.create": self.on_response_create,
            "response.cancel": self.on_response_cancel,
        }

    # ---- client events

    async def on_session_update(self, ev: Event, event_id: str | None) -> None:
        sess = ev.get("session")
        if not isinstance(sess, dict):
            await self.error(
                "Missing required parameter: 'session'.",
                code="missing_required_parameter",
                param="session",
                event_id=event_id,
            )
            return
        chosen: dict[str, str] = {}
        for param, name in session_formats(sess, self.dialect):
            fmt = canonical(name)
            if fmt is None:
                supported = supported_formats(self.dialect)
                await self.error(
                    f"Invalid value: '{name}'. The local engine supports {supported}.",
                    code="invalid_value",
                    param=param,
                    event_id=event_id,
                )
                return
            chosen["input" if "input" in param else "output"] = fmt
        sess = {k: v for k, v in sess.items() if k != "tools"} | (
            {"tools": copy.deepcopy(sess["tools"])} if "tools" in sess else {}
        )
        self.session = _deep_merge(self.session, sess)
        if "input" in chosen and chosen["input"] != self.wire_in.name:
            self.wire_in = WireInput(chosen["input"])
            self._frame_buf = b""
        self.out_format = chosen.get("output", self.out_format)
        await self.send("session.updated", session=copy.deepcopy(self.session))

    async def on_append(self, ev: Event, event_id: str | None) -> None:
        audio = ev.get("audio")
        if not isinstance(audio, str):
            await self.error(
                "Missing required parameter: 'audio'.",
                code="missing_required_parameter",
                param="audio",
                event_id=event_id,
            )
            return
        try:
            raw = self.wire_in.to_pcm24(base64.b64decode(audio, validate=True))
        except (binascii.Error, ValueError):
            await self.error(
                "Invalid 'audio'. Expected base64-encoded audio bytes.",
                param="audio",
                event_id=event_id,
            )
            return
        self.buffer += raw
        self.audio_ms_since_response += len(raw) / BYTES_PER_MS
        buf = self._frame_buf + raw
        n = len(buf) // FRAME_BYTES
        self._frame_buf = buf[n * FRAME_BYTES :]
        for i in range(n):
            frame_start_ms = self.stream_ms
            self.stream_ms += FRAME_MS
            if self.turn_detection is None:
                continue
            frame = buf[i * FRAME_BYTES : (i + 1) * FRAME_BYTES]
            for dev in self.detector.process(frame, frame_start_ms) or []:
                if getattr(dev, "pcm", None) is not None:  # SpeechEnd(at_ms, pcm)
                    await self._on_speech_end(dev)
                else:  # SpeechStart(at_ms)
                    await self._on_speech_start(dev)

    async def _on_speech_start(self, dev: Any) -> None:
        self.speech_item_id = _new_id("item")
        start = getattr(dev, "at_ms", None)
        if start is None:
            start = self.stream_ms
        # Like OpenAI, audio_start_ms includes the prefix padding (the pre-roll).
        start = max(0, int(start) - int(self._td("prefix_padding_ms", 300)))
        self.speech_start_ms = int(start)
        await self.send(
            "input_audio_buffer.speech_started",
            audio_start_ms=self.speech_start_ms,
            item_id=self.speech_item_id,
        )
        if self.active is not None and self._td("interrupt_response", True):
            await self._cancel(self.active, "turn_detected")

    async def _on_speech_end(self, dev: Any) -> None:
        end = getattr(dev, "at_ms", None)
        if end is None:
            end = self.stream_ms
        item_id = self.speech_item_id or _new_id("item")
        self.speech_item_id = ""
        await self.send("input_audio_buffer.speech_stopped", audio_end_ms=int(end), item_id=item_id)
        await self._commit(item_id, dev.pcm, auto=bool(self._td("create_response", True)))

    async def _commit(self, item_id: str, pcm: bytes, *, auto: bool) -> None:
        self.buffer = bytearray()
        previous = self._last_item_id()
        await self.send("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id)
        item: Event = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        self.items[item_id] = item
        await self._item_created(item, previous)
        if auto:
            self.auto_response_due = True
        self._spawn(self._transcribe_turn(item, pcm, auto))

    async def _transcribe_turn(self, item: Event, pcm: bytes, auto: bool) -> None:
        # The lock keeps turns in order: transcripts reach the brain as they were spoken.
        async with self._turn_lock:
            t0 = time.monotonic()
            try:
                result, wait_ms = await self.srv.pool.run(  # due now: the caller waits
                    self.srv.pipeline.recognizer.transcribe, pcm
                )
            except Exception as exc:
                log.exception("local_transcription_failed", item_id=item["id"])
                await self.send(
                    "conversation.item.input_audio_transcription.failed",
                    item_id=item["id"],
                    content_index=0,
                    error={
                        "type": "transcription_error",
                        "code": None,
                        "message": str(exc),
                        "param": None,
                    },
                )
                return
            self._asr_wait_ms = wait_ms
            self._asr_ms = (time.monotonic() - t0) * 1000 - wait_ms
            log.info(
                "local_transcribed",
                item_id=item["id"],
                queue_wait_ms=round(wait_ms, 1),
                asr_ms=round(self._asr_ms, 1),
                audio_ms=len(pcm) // BYTES_PER_MS,
            )
            text = str(result if isinstance(result, str) else getattr(result, "text", "")).strip()
            item["content"][0]["transcript"] = text
            extra: Event = {}
            if self.dialect == "ga":
                extra["usage"] = {"type": "duration", "seconds": round(len(pcm) / 48000, 3)}
            await self.send(
                "conversation.item.input_audio_transcription.completed",
                item_id=item["id"],
                content_index=0,
                transcript=text,
                **extra,
            )
            if text:
                self.text_words_since_response += _words(text)
                self.pending.extend(self._brain_hear(text))
            if auto and self.auto_response_due and self.active is None:
                self.auto_response_due = False
                if self.pending or not self.started:
                    await self._start_response()

    def _brain_hear(self, text: str) -> list[Any]:
        brain = self._ensure_brain()
        actions: list[Any] = []
        if not self.started:
            self.started = True
            actions.extend(brain.start() or [])
        actions.extend(brain.hear(text) or [])
        return actions

    async def on_commit(self, ev: Event, event_id: str | None) -> None:
        ms = len(self.buffer) / BYTES_PER_MS
        if ms < MIN_COMMIT_MS:
            await self.error(
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {ms:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty",
                event_id=event_id,
            )
            return
        item_id = self.speech_item_id or _new_id("item")
        self.speech_item_id = ""
        await self._commit(item_id, bytes(self.buffer), auto=False)

    async def on_clear(self, ev: Event, event_id: str | None) -> None:
        self.buffer = bytearray()
        self.speech_item_id = ""
        await self.send("input_audio_buffer.cleared")

    async def on_item_create(self, ev: Event, event_id: str | None) -> None:
        item = ev.get("item")
        if not isinstance(item, dict):
            await self.error(
                "Missing required parameter: 'item'.",
                code="missing_required_parameter",
                param="item",
                event_id=event_id,
            )
            return
        kind = item.get("type")
        if kind not in ("message", "function_call", "function_call_output"):
            await self.error(
                f"Invalid value: '{kind}'. Supported values are: 'message', 'function_call', "
                "and 'function_call_output'.",
                param="item.type",
                event_id=event_id,
            )
            return
        if kind == "function_call_output" and not item.get("call_id"):
            await self.error(
                "Missing required parameter: 'item.call_id'.",
                code="missing_required_parameter",
                param="item.call_id",
                event_id=event_id,
            )
            return
        full: Event = {"id": item.get("id") or _new_id("item"), "object": "realtime.item"}
        full.update({k: v for k, v in item.items() if k != "id"})
        full.setdefault("status", "completed")
        previous = ev.get("previous_item_id") or self._last_item_id()
        self.items[full["id"]] = full
        await self._item_created(full, previous)
        if kind == "function_call_output":
            raw = item.get("output")
            try:
                result: Any = json.loads(raw) if isinstance(raw, str) else raw
            except ValueError:
                result = raw
            ok = not (isinstance(result, dict) and result.get("error") not in (None, False, ""))
            brain = self._ensure_brain()
            self.pending.extend(brain.tool_result(str(item["call_id"]), ok, result) or [])
        elif kind == "message" and item.get("role", "user") == "user":
            texts = [
                str(part.get("text") or "")
                for part in item.get("content") or []
                if isinstance(part, dict) and part.get("type") in ("input_text", "text")
            ]
            text = " ".join(t for t in texts if t).strip()
            if text:
                self.text_words_since_response += _words(text)
                self.pending.extend(self._brain_hear(text))

    async def on_item_delete(self, ev: Event, event_id: str | None) -> None:
        item_id = ev.get("item_id")
        if not isinstance(item_id, str) or item_id not in self.items:
            await self.error(
                f"Error deleting item: the item with id '{item_id}' does not exist.",
                param="item_id",
                event_id=event_id,
            )
            return
        del self.items[item_id]
        await self.send("conversation.item.deleted", item_id=item_id)

    async def on_truncate(self, ev: Event, event_id: str | None) -> None:
        item_id = ev.get("item_id")
        content_index = ev.get("content_index", 0)
        audio_end_ms = ev.get("audio_end_ms")
        entry = self.items.get(item_id) if isinstance(item_id, str) else None
        if not isinstance(entry, _OutItem) or entry.type != "message":
            await self.error(
                f"Item with item_id '{item_id}' not found or is not an assistant audio message.",
                param="item_id",
                event_id=event_id,
            )
            return
        if content_index != 0:
            await self.error(
                f"Invalid value: {content_index}. Content index out of range.",
                param="content_index",
                event_id=event_id,
            )
            return
        if not isinstance(audio_end_ms, int) or isinstance(audio_end_ms, bool) or audio_end_ms < 0:
            await self.error(
                "Invalid 'audio_end_ms': expected a non-negative integer.",
                param="audio_end_ms",
                event_id=event_id,
            )
            return
        generated = entry.audio_ms
        if audio_end_ms > generated + 1e-6:
            await self.error(
                f"Audio content of {int(round(generated))}ms is already shorter than "
                f"{audio_end_ms}ms",
                param="audio_end_ms",
                event_id=event_id,
            )
            return
        entry.audio_bytes = audio_end_ms * BYTES_PER_MS
        entry.transcript = ""
        await self.send(
            "conversation.item.truncated",
            item_id=item_id,
            content_index=content_index,
            audio_end_ms=audio_end_ms,
        )

    async def on_response_create(self, ev: Event, event_id: str | None) -> None:
        if self.active is not None:
            await self.error(
                "Conversation already has an active response in progress: "
                f"{self.active.id}. Wait until the response is finished before creating a new one.",
                code="conversation_already_has_active_response",
                event_id=event_id,
            )
            return
        self.auto_response_due = False
        response = ev.get("response")
        text = said_exactly(response.get("instructions")) if isinstance(response, dict) else None
        if text is not None:
            # A fixed sentence (greeting, operator's `say`): spoken as is. A greeting is
            # followed by the flow's start (a lookup tool, say); later, the brain's own next
            # actions wait for the next response.
            if self.started:
                await self._start_response([Say(text)])
            else:
                self.started = True
                first = [Say(text), *(self._ensure_brain().start() or []), *self.pending]
                self.pending = []
                await self._start_response(first)
            return
        await self._start_response()

    async def on_response_cancel(self, ev: Event, event_id: str | None) -> None:
        if self.active is None:
            await self.error(
                "Cancellation failed: no active response found",
                code="response_cancel_not_active",
                event_id=event_id,
            )
            return
        await self._cancel(self.active, "client_cancelled")

    # ---- responses

    def _response_obj(self, resp: _Resp, status: str, details: Event | None) -> Event:
        obj: Event = {
            "id": resp.id,
            "object": "realtime.response",
            "status": status,
            "status_details": details,
            "output": [item.as_item(self.dialect) for item in resp.items],
            "conversation_id": "conv_local",
            "metadata": None,
        }
        if self.dialect == "preview":
            obj.update(
                modalities=["audio", "text"],
                voice=self.session.get("voice", "alloy"),
                output_audio_format=self.out_format,
                temperature=0.8,
                max_output_tokens="inf",
            )
        else:
            obj.update(output_modalities=["audio"], max_output_tokens="inf")
        return obj

    async def _start_response(self, only: list[Any] | None = None) -> None:
        if only is not None:
            actions = only
        elif not self.started:
            self.started = True
            actions = list(self._ensure_brain().start() or []) + self.pending
        else:
            actions = self.pending
        if only is None:
            self.pending = []
        resp = _Resp(_new_id("resp"), self.audio_ms_since_response, self.text_words_since_response)
        self.audio_ms_since_response = 0.0
        self.text_words_since_response = 0
        resp.queue_wait_ms, resp.asr_ms = self._asr_wait_ms, self._asr_ms
        self._asr_wait_ms = self._asr_ms = 0.0
        self.active = resp
        created = self._response_obj(resp, "in_progress", None)
        created["usage"] = None
        await self.send("response.created", response=created)
        resp.task = self._spawn(self._run_response(resp, actions))

    async def _run_response(self, resp: _Resp, actions: list[Any]) -> None:
        try:
            while actions:
                action = actions.pop(0)
                if isinstance(action, Say):
                    if action.text.strip():
                        await self._say(resp, action.text)
                elif isinstance(action, Stream):
                    if await self._run_stream(resp, action):
                        break
                elif isinstance(action, CallTool):
                    args = action.arguments
                    await self._function_call(
                        resp,
                        action.call_id or _new_id("call"),
                        action.name,
                        args if isinstance(args, str) else json.dumps(args),
                    )
                    break
                elif isinstance(action, Transfer):
                    await self._function_call(
                        resp,
                        _new_id("call"),
                        "transfer",
                        json.dumps({"destination": action.target}),
                    )
                    break
                elif isinstance(action, Hangup):
                    await self._function_call(
                        resp, _new_id("call"), "hangup", json.dumps({"reason": action.reason})
                    )
                    break
                else:
                    log.warning("local_unknown_action", action=repr(action))
            # After a tool call the rest waits for the tool's output and the next response.create.
            self.pending = actions + self.pending
            await self._finish(resp)
        except _Ended:
            pass
        except Exception as exc:  # a failing TTS/brain must not leave the response open
            log.exception("local_response_failed", response_id=resp.id)
            if not resp.ended and not self.closed:
                resp.ended = True
                resp.cancel.set()
                if self.active is resp:
                    self.active = None
                try:
                    for out in resp.items:
                        if not out.closed:
                            out.status = "incomplete"
                            await self._close_item(resp, out, raw=True)
                    await self._send_done(
                        resp,
                        "failed",
                        {"type": "failed", "error": {"type": "server_error", "message": str(exc)}},
                    )
                except _Ended:
                    pass

    async def _add_output_item(self, resp: _Resp, out: _OutItem) -> None:
        if resp.ended:
            raise _Ended
        previous = self._last_item_id()
        resp.items.append(out)
        self.items[out.id] = out
        item = out.as_item(self.dialect)
        await self.rsend(
            resp,
            "response.output_item.added",
            response_id=resp.id,
            output_index=out.output_index,
            item=item,
        )
        if self.dialect == "preview":
            await self.rsend(
                resp, "conversation.item.created", previous_item_id=previous, item=item
            )
        else:
            await self.rsend(resp, "conversation.item.added", previous_item_id=previous, item=item)

    async def _say(self, resp: _Resp, text: str) -> None:
        await self._speak(resp, _aiter(split_clauses(text)))

    async def _run_stream(self, resp: _Resp, stream: Stream) -> bool:
        """Speak a reply while it is still being made; then its tool calls. True: tools."""
        tools: list[CallTool] = []

        async def clauses() -> AsyncIterator[str]:
            chunker = ClauseChunker()
            gen = stream.open()
            try:
                while (piece := await self._next_or_end(resp, gen)) is not None:
                    if isinstance(piece, CallTool):
                        tools.append(piece)
                        continue
                    for clause in chunker.feed(piece):
                        yield clause
                if rest := chunker.flush():
                    yield rest
            finally:
                await gen.aclose()  # an interrupted reply stops the LLM's stream too

        await self._speak(resp, clauses())
        for t in tools:
            args = t.arguments
            await self._function_call(
                resp, t.call_id, t.name, args if isinstance(args, str) else json.dumps(args)
            )
        return bool(tools)

    @staticmethod
    async def _next_or_end(resp: _Resp, gen: AsyncIterator[Any]) -> Any:
        """The stream's next piece (None at its end); _Ended as soon as the response is
        cancelled — the LLM is not waited for, and its generator sees the cancellation."""
        nxt = asyncio.ensure_future(anext(gen, None))
        if not nxt.done():
            ended = asyncio.ensure_future(resp.ended_evt.wait())
            await asyncio.wait({nxt, ended}, return_when=asyncio.FIRST_COMPLETED)
            ended.cancel()
        if resp.ended:
            nxt.cancel()
            await asyncio.gather(nxt, return_exceptions=True)
            raise _Ended
        return nxt.result()

    async def _speak(self, resp: _Resp, clauses: AsyncIterator[str]) -> None:
        """One audio message item, clause by clause as `clauses` yields them (none: no item)."""
        try:
            await self._speak_clauses(resp, clauses)
        finally:
            await clauses.aclose()  # type: ignore[attr-defined]

    async def _speak_clauses(self, resp: _Resp, clauses: AsyncIterator[str]) -> None:
        out: _OutItem | None = None
        ids: Event = {}
        synth = self.srv.pipeline.synthesizer
        pending = b""
        async for clause in clauses:
            if out is None:
                out = _OutItem(
                    _new_id("item"), "message", len(resp.items), wire=WireOutput(self.out_format)
                )
                await self._add_output_item(resp, out)
                ids = {
                    "response_id": resp.id,
                    "item_id": out.id,
                    "output_index": out.output_index,
                    "content_index": 0,
                }
                out.part_added = True
                await self.rsend(
                    resp,
                    "response.content_part.added",
                    **ids,
                    part={"type": self.names["part_type"], "transcript": ""},
                )
            elif not out.transcript.endswith(" "):
                clause = " " + clause
            it = iter(synth.synthesize(clause, resp.cancel))
            said = False
            while True:
                playing_until = (
                    None
                    if resp.first_audio_at is None
                    else resp.first_audio_at + resp.audio_sent_ms / 1000
                )
                chunk, wait_ms = await self.srv.pool.run(
                    _next_chunk,
                    it,
                    deadline=None if playing_until is None else playing_until - PLAYOUT_MARGIN_S,
                )
                if playing_until is None:
                    resp.queue_wait_ms += wait_ms  # the caller hears silence meanwhile
                else:
                    resp.late_ms += max(0.0, (time.monotonic() - playing_until) * 1000)
                if resp.ended:
                    raise _Ended
                if chunk is _DONE:
                    break
                if not said:  # the clause's words go out with its first audio
                    said = True
                    out.transcript += clause
                    await self.rsend(resp, self.names["transcript_delta"], **ids, delta=clause)
                pending += chunk
                while len(pending) >= CHUNK_BYTES:
                    await self._audio_delta(resp, out, ids, pending[:CHUNK_BYTES])
                    pending = pending[CHUNK_BYTES:]
            if not said:
                out.transcript += clause
                await self.rsend(resp, self.names["transcript_delta"], **ids, delta=clause)
            # Flush the clause's tail now rather than hold it while the next clause is made.
            cut = len(pending) // 2 * 2
            await self._audio_delta(resp, out, ids, pending[:cut])
            pending = pending[cut:]
        if out is not None:
            out.status = "completed"
            await self._close_item(resp, out)

    async def _audio_delta(self, resp: _Resp, out: _OutItem, ids: Event, pcm: bytes) -> None:
        if not pcm:
            return
        if resp.first_audio_at is None:
            resp.first_audio_at = time.monotonic()
        resp.audio_sent_ms += len(pcm) / BYTES_PER_MS
        wire = out.wire.from_pcm24(pcm) if out.wire else pcm
        await self.rsend(
            resp, self.names["audio_delta"], **ids, delta=base64.b64encode(wire).decode("ascii")
        )
        out.audio_bytes += len(pcm)

    async def _function_call(self, resp: _Resp, call_id: str, name: str, args: str) -> None:
        out = _OutItem(
            _new_id("item"), "function_call", len(resp.items), call_id=call_id, name=name
        )
        await self._add_output_item(resp, out)
        ids = {
            "response_id": resp.id,
            "item_id": out.id,
            "output_index": out.output_index,
            "call_id": call_id,
        }
        await self.rsend(resp, "response.function_call_arguments.delta", **ids, delta=args)
        await self.rsend(
            resp, "response.function_call_arguments.done", **ids, name=name, arguments=args
        )
        out.arguments = args
        out.status = "completed"
        await self._close_item(resp, out)

    async def _close_item(self, resp: _Resp, out: _OutItem, *, raw: bool = False) -> None:
        """Send an output item's closing events; raw=True when the response was cancelled."""
        if out.closed:
            return
        if not raw and resp.ended:
            raise _Ended
        out.closed = True
        ids = {
            "response_id": resp.id,
            "item_id": out.id,
            "output_index": out.output_index,
            "content_index": 0,
        }
        if out.type == "message" and out.part_added:
            await self.send(self.names["audio_done"], **ids)
            await self.send(self.names["transcript_done"], **ids, transcript=out.transcript)
            await self.send(
                "response.content_part.done",
                **ids,
                part={"type": self.names["part_type"], "transcript": out.transcript},
            )
        item = out.as_item(self.dialect)
        await self.send(
            "response.output_item.done",
            response_id=resp.id,
            output_index=out.output_index,
            item=item,
        )
        if self.dialect == "ga":
            await self.send("conversation.item.done", previous_item_id=None, item=item)

    async def _cancel(self, resp: _Resp, reason: str) -> None:
        if resp.ended:
            return
        resp.ended = True
        resp.ended_evt.set()
        resp.cancel.set()  # stops the synthesizer in its thread
        if self.active is resp:
            self.active = None
        for out in resp.items:
            if not out.closed:
                out.status = "incomplete"
                await self._close_item(resp, out, raw=True)
        await self._send_done(resp, "cancelled", {"type": "cancelled", "reason": reason})

    async def _finish(self, resp: _Resp) -> None:
        if resp.ended:
            raise _Ended
        resp.ended = True
        if self.active is resp:
            self.active = None
        await self._send_done(resp, "completed", None)

    def _usage(self, resp: _Resp) -> Event:
        in_audio = int(round(resp.input_audio_ms / 1000 * 10))
        in_text = resp.input_text_words
        out_audio = 0
        out_text = 0
        for out in resp.items:
            if out.type == "message":
                out_audio += int(round(out.audio_ms / 1000 * 20))
                out_text += _words(out.transcript)
            else:
                out_text += _words(out.name + " " + out.arguments)
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

    async def _send_done(self, resp: _Resp, status: str, details: Event | None) -> None:
        obj = self._response_obj(resp, status, details)
        obj["usage"] = self._usage(resp)
        obj["metadata"] = {
            "queue_wait_ms": round(resp.queue_wait_ms, 1),
            "asr_ms": round(resp.asr_ms, 1),
            "late_ms": round(resp.late_ms, 1),
        }
        log.info(
            "local_response_done",
            response_id=resp.id,
            status=status,
            queue_wait_ms=round(resp.queue_wait_ms, 1),
            late_ms=round(resp.late_ms, 1),
            audio_ms=round(sum(o.audio_ms for o in resp.items)),
        )
        await self.send("response.done", response=obj)
        if (
            self.auto_response_due
            and self.active is None
            and not self.closed
            and not self._turn_lock.locked()
        ):
            # A turn finished while this response was still streaming (interrupt_response off).
            self.auto_response_due = False
            if self.pending:
                await self._start_response()


# ---------------------------------------------------------------- the server


class LocalRealtimeServer:
    """OpenAI-Realtime-compatible server on ws://host:port/v1 backed by a local `Pipeline`."""

    def __init__(self, host: str, port: int, pipeline: Pipeline) -> None:
        self.host = host
        self.port = port
        self.pipeline = pipeline
        self._server: Server | None = None
        self._pool: WorkPool | None = None
        self._sessions: set[_Session] = set()

    @property
    def pool(self) -> WorkPool:
        if self._pool is None:
            raise RuntimeError("server not started")
        return self._pool

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/v1"

    async def start(self) -> None:
        self._pool = WorkPool(self.pipeline.workers)
        self._server = await serve(
            self._handler,
            self.host,
            self.port,
            process_request=self._process_request,
            max_size=16 * 1024 * 1024,
        )
        if self.port == 0:
            self.port = next(iter(self._server.sockets)).getsockname()[1]
        log.info("local_realtime_server_started", url=self.url, workers=self.pool.workers)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    async def __aenter__(self) -> LocalRealtimeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if not path.rstrip("/").endswith("/realtime"):
            return connection.respond(HTTPStatus.NOT_FOUND, f"No route for {path}\n")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        query = dict(parse_qsl(urlsplit(request.path).query))
        model = query.get("model", "") or query.get("deployment", "")
        dialect = request_dialect(model, request.headers.get(BETA_HEADER))
        session = _Session(self, ws, dialect, model)
        self._sessions.add(session)
        log.info("local_session_open", dialect=dialect, model=model)
        try:
            await session.run()
        finally:
            self._sessions.discard(session)
            log.info("local_session_closed", dialect=dialect)
