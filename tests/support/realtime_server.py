"""A scripted, OpenAI-Realtime-compatible WebSocket server for integration tests.

It stands in for ``wss://api.openai.com/v1/realtime`` (unreachable from the test machines) and
speaks the Realtime protocol over a plain WebSocket on 127.0.0.1, with the preview (beta) or the
GA event names, and with real timing: assistant audio is streamed as deltas paced at real time.

What the "model" says is scripted: an optional greeting (played on the first ``response.create``)
and a list of replies consumed in order, each either audio + transcript, a function call, or both.
The caller side is simulated with an energy VAD over the appended audio (server VAD), so a test can
drive full voice turns, barge-in (with server-side cancellation), truncation and tool calls.

Every client event and every server event is recorded with a monotonic timestamp and the index of
the connection it belongs to; ``wait_for`` blocks a test thread until events arrive.

Usage::

    srv = ScriptedRealtimeServer(greeting=ScriptedReply(pcm=..., transcript="Hello"))
    srv.start()
    try:
        ...  # point the client at srv.url + "/realtime?model=gpt-4o-realtime-preview"
        srv.wait_for("response.create")
    finally:
        srv.stop()

Do not call the blocking methods (``wait_for``, ``kill_connection``, ``send_error``, ``stop``) from
inside a running asyncio loop that also drives the client; wrap them in ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import json
import logging
import math
import random
import re
import string
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal, NamedTuple
from urllib.parse import parse_qsl, urlsplit

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from telephony_bot.media.codecs import g711
from telephony_bot.realtime.dialect import (
    BETA_HEADER,
    BETA_HEADER_VALUE,
    NAMES,
    Dialect,
    canonical,
    foreign_session_keys,
)

__all__ = ["ReceivedEvent", "ScriptedRealtimeServer", "ScriptedReply"]

log = logging.getLogger(__name__)

Event = dict[str, Any]

VAD_FRAME_MS = 20
MIN_COMMIT_MS = 100  # the real API refuses to commit less than 100 ms of audio


@dataclass
class ScriptedReply:
    """One assistant response."""

    pcm: bytes = b""  # 24 kHz PCM16 mono audio to stream as audio deltas
    transcript: str = ""  # assistant transcript (deltas word by word, then done)
    function_call: tuple[str, dict[str, Any]] | None = None  # (name, arguments)
    delay_ms: int = 50  # from response.create (or speech_stopped) to the first delta


class ReceivedEvent(NamedTuple):
    """One recorded event: when (time.monotonic()), its type, its JSON body, which connection."""

    t: float
    type: str
    data: dict[str, Any]
    conn: int


# ---------------------------------------------------------------- audio formats


@dataclass(frozen=True)
class _Format:
    name: str  # pcm16 | g711_ulaw | g711_alaw
    rate: int
    sample_bytes: int

    @property
    def bytes_per_ms(self) -> float:
        return self.rate * self.sample_bytes / 1000

    def decode(self, data: bytes) -> np.ndarray:
        if self.name == "g711_ulaw":
            return np.frombuffer(g711.ulaw_decode(data), "<i2")
        if self.name == "g711_alaw":
            return np.frombuffer(g711.alaw_decode(data), "<i2")
        return np.frombuffer(data[: len(data) // 2 * 2], "<i2")

    def encode_from_pcm24k(self, pcm: bytes) -> bytes:
        if self.name == "pcm16":
            return pcm
        x = np.frombuffer(pcm[: len(pcm) // 2 * 2], "<i2").astype(np.float64)
        x = x[: len(x) // 3 * 3].reshape(-1, 3).mean(axis=1)  # crude 24k -> 8k
        x16 = np.clip(np.round(x), -32768, 32767).astype(np.int16)
        encode = g711.ulaw_encode if self.name == "g711_ulaw" else g711.alaw_encode
        return encode(x16.tobytes())


_FORMATS = {
    "pcm16": _Format("pcm16", 24000, 2),
    "g711_ulaw": _Format("g711_ulaw", 8000, 1),
    "g711_alaw": _Format("g711_alaw", 8000, 1),
}


# ---------------------------------------------------------------- helpers


def _new_id(prefix: str) -> str:
    return prefix + "_" + "".join(random.choices(string.ascii_letters + string.digits, k=21))


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class _Headers(dict[str, str]):
    """Request headers as a dict (keys as the client spelled them); lookups ignore case."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        super().__init__()
        for key, value in items:
            existing = self._find(key)
            if existing is None:
                super().__setitem__(key, value)
            else:
                super().__setitem__(existing, super().__getitem__(existing) + ", " + value)

    def _find(self, key: object) -> str | None:
        if not isinstance(key, str):
            return None
        low = key.lower()
        for k in self.keys():
            if k.lower() == low:
                return k
        return None

    def __getitem__(self, key: str) -> str:
        found = self._find(key)
        if found is None:
            raise KeyError(key)
        return super().__getitem__(found)

    def __contains__(self, key: object) -> bool:
        return self._find(key) is not None

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        found = self._find(key)
        return default if found is None else super().__getitem__(found)


class _Ended(Exception):
    """The response was cancelled (or the connection went away): stop streaming it."""


@dataclass
class _OutItem:
    """One output item of a response (assistant message or function call) and its progress."""

    id: str
    type: Literal["message", "function_call"]
    output_index: int
    fmt: _Format
    status: str = "in_progress"
    part_added: bool = False
    audio_done: bool = False
    transcript_done: bool = False
    part_done: bool = False
    item_done: bool = False
    audio_bytes: int = 0
    transcript: str = ""
    words_sent: int = 0
    call_id: str = ""
    name: str = ""
    arguments: str = ""
    arguments_done: bool = False
    truncated: bool = False

    @property
    def audio_ms(self) -> float:
        return self.audio_bytes / self.fmt.bytes_per_ms

    def as_item(self, dialect: Dialect) -> Event:
        item: Event = {"id": self.id, "object": "realtime.item", "type": self.type}
        item["status"] = self.status
        if self.type == "message":
            item["role"] = "assistant"
            ctype = "audio" if dialect == "preview" else "output_audio"
            item["content"] = (
                [{"type": ctype, "transcript": self.transcript}] if self.part_added else []
            )
        else:
            item.update(call_id=self.call_id, name=self.name, arguments=self.arguments)
        return item


@dataclass
class _Resp:
    id: str
    reply: ScriptedReply
    t0: float  # loop time when the response started
    input_audio_ms: float  # caller audio since the previous response
    items: list[_OutItem] = field(default_factory=list)
    ended: bool = False
    task: asyncio.Task[None] | None = None


# ---------------------------------------------------------------- one connection


class _Conn:
    def __init__(self, server: ScriptedRealtimeServer, ws: ServerConnection, index: int) -> None:
        self.srv = server
        self.ws = ws
        self.index = index
        self.dialect: Dialect = server.dialect
        self.closed = False
        self.query = dict(parse_qsl(urlsplit(ws.request.path).query)) if ws.request else {}
        self.session: Event = self._default_session()
        self.turn_detection: dict[str, Any] | None = {}
        self.in_fmt = _FORMATS["pcm16"]
        self.out_fmt = _FORMATS["pcm16"]
        self.instructions = ""
        self._apply_session()
        # conversation: item id -> item dict (user/tool items) or _OutItem (assistant output)
        self.items: dict[str, Event | _OutItem] = {}
        self.active: _Resp | None = None
        self.pending_auto_response = False
        # input audio
        self.audio_ms = 0.0  # caller audio appended on this connection
        self.buffer_ms = 0.0  # since the last commit/clear
        self.ms_since_response = 0.0
        self._odd = b""
        self._vad_buf = np.zeros(0, np.int16)
        self._vad_pos_ms = 0.0
        self.speaking = False
        self._silence_run_ms = 0.0
        self._speech_item_id = ""
        self._speech_start_ms = 0

    # ---- session

    def _default_session(self) -> Event:
        td = {
            "type": "server_vad",
            "threshold": 0.5,
            "prefix_padding_ms": self.srv.prefix_padding_ms,
            "silence_duration_ms": self.srv.silence_ms,
            "create_response": True,
            "interrupt_response": True,
        }
        model = self.query.get("model", "")
        if self.dialect == "preview":
            return {
                "id": _new_id("sess"),
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
            "id": _new_id("sess"),
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

    def _apply_session(self) -> None:
        s = self.session
        if self.dialect == "preview":
            td = s.get("turn_detection")
            in_name = s.get("input_audio_format") or "pcm16"
            out_name = s.get("output_audio_format") or "pcm16"
        else:
            audio = s.get("audio") or {}
            inp, out = audio.get("input") or {}, audio.get("output") or {}
            td = inp.get("turn_detection")
            in_name = canonical(str((inp.get("format") or {}).get("type", ""))) or "pcm16"
            out_name = canonical(str((out.get("format") or {}).get("type", ""))) or "pcm16"
        was_on = self.turn_detection is not None
        self.turn_detection = td if isinstance(td, dict) else None
        if was_on and self.turn_detection is None:
            self.speaking = False
            self._silence_run_ms = 0.0
        self.in_fmt = _FORMATS.get(in_name, _FORMATS["pcm16"])
        self.out_fmt = _FORMATS.get(out_name, _FORMATS["pcm16"])
        self.instructions = str(s.get("instructions") or "")

    def _td(self, key: str, default: Any) -> Any:
        td = self.turn_detection or {}
        value = td.get(key)
        return default if value is None else value

    # ---- sending

    async def send(self, type_: str, **fields: Any) -> None:
        if self.closed or self.ws.state is not State.OPEN:
            raise _Ended
        ev: Event = {"type": type_, "event_id": _new_id("event"), **fields}
        text = json.dumps(ev)
        self.srv._record_sent(ReceivedEvent(time.monotonic(), type_, json.loads(text), self.index))
        try:
            await self.ws.send(text)
        except ConnectionClosed as exc:
            self.closed = True
            raise _Ended from exc

    async def rsend(self, resp: _Resp, type_: str, **fields: Any) -> None:
        """Send on behalf of a streaming response, unless it has ended meanwhile."""
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
        err = {"type": type_, "code": code, "message": message, "param": param}
        err["event_id"] = event_id
        await self.send("error", error=err)

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

    # ---- lifecycle

    async def run(self) -> None:
        beta = self.srv_headers().get(BETA_HEADER)
        if (
            self.srv.strict_headers
            and self.dialect == "preview"
            and (beta is None or BETA_HEADER_VALUE not in beta)
        ):
            await self._refuse(
                "missing_beta_header",
                "You must send the 'OpenAI-Beta: realtime=v1' header to use the Realtime API "
                "beta (preview) interface.",
            )
            return
        if self.srv.strict_headers and self.dialect == "ga" and beta and "realtime" in beta:
            await self._refuse(
                "beta_api_shape_disabled",
                "The Realtime Beta API is no longer supported. Please use /v1/realtime for the "
                "GA API.",
            )
            return
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
                if self.active.task is not None:
                    self.active.task.cancel()
                self.active = None

    def srv_headers(self) -> _Headers:
        return self.srv.requests[self.index]["headers"]

    async def _refuse(self, code: str, message: str) -> None:
        try:
            await self.error(message, code=code)
            await self.ws.close(4000, f"invalid_request_error.{code}")
        except (ConnectionClosed, _Ended):
            pass
        self.closed = True

    def abort(self) -> None:
        self.closed = True
        if self.active is not None:
            self.active.ended = True
            self.active = None
        transport = self.ws.transport
        if transport is not None:
            transport.abort()

    # ---- client events

    async def on_message(self, message: str | bytes) -> None:
        t = time.monotonic()
        if isinstance(message, bytes):
            self.srv._record_received(
                ReceivedEvent(t, "<binary>", {"size": len(message)}, self.index)
            )
            await self.error("Binary frames are not supported; send JSON text events.")
            return
        try:
            ev = json.loads(message)
        except ValueError as exc:
            self.srv._record_received(
                ReceivedEvent(t, "<invalid-json>", {"raw": message[:500]}, self.index)
            )
            await self.error(
                f"We could not parse the JSON body of your request. ({exc})", code="invalid_json"
            )
            return
        if not isinstance(ev, dict):
            self.srv._record_received(
                ReceivedEvent(t, "<invalid-json>", {"raw": message[:500]}, self.index)
            )
            await self.error("Expected a JSON object.", code="invalid_json")
            return
        type_ = ev.get("type")
        event_id = ev.get("event_id") if isinstance(ev.get("event_id"), str) else None
        self.srv._record_received(ReceivedEvent(t, str(type_), ev, self.index))
        handler = self._handlers().get(type_) if isinstance(type_, str) else None
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
                    + ", ".join(f"'{k}'" for k in self._handlers())
                    + ".",
                    param="type",
                    event_id=event_id,
                )
            return
        await handler(ev, event_id)

    def _handlers(self) -> dict[str, Callable[[Event, str | None], Awaitable[None]]]:
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
        if self.dialect == "ga":
            if "type" not in sess:
                await self.error(
                    "Missing required parameter: 'session.type'.",
                    code="missing_required_parameter",
                    param="session.type",
                    event_id=event_id,
                )
                return
            if sess["type"] != "realtime":
                await self.error(
                    f"Invalid value: '{sess['type']}'. Supported values are: 'realtime'.",
                    param="session.type",
                    event_id=event_id,
                )
                return
        for key in foreign_session_keys(self.dialect):
            if key in sess:
                await self.error(
                    f"Unknown parameter: 'session.{key}'.",
                    code="unknown_parameter",
                    param=f"session.{key}",
                    event_id=event_id,
                )
                return
        self.session = _deep_merge(self.session, sess)
        self._apply_session()
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
            raw = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            await self.error(
                "Invalid 'audio'. Expected base64-encoded audio bytes.",
                param="audio",
                event_id=event_id,
            )
            return
        fmt = self.in_fmt
        ms = len(raw) / fmt.bytes_per_ms
        self.audio_ms += ms
        self.buffer_ms += ms
        self.ms_since_response += ms
        self.srv._add_audio_ms(ms)
        if fmt.sample_bytes == 2:
            raw = self._odd + raw
            self._odd = raw[len(raw) // 2 * 2 :]
            raw = raw[: len(raw) // 2 * 2]
        await self._vad_feed(fmt.decode(raw), fmt.rate)

    async def _vad_feed(self, samples: np.ndarray, rate: int) -> None:
        buf = np.concatenate([self._vad_buf, samples.astype(np.int16)])
        n = rate * VAD_FRAME_MS // 1000
        nframes = len(buf) // n
        if nframes:
            frames = buf[: nframes * n].astype(np.float64).reshape(nframes, n)
            rms = np.sqrt(np.mean(frames**2, axis=1))
            dbfs = 20 * np.log10(np.maximum(rms, 1e-9) / 32768.0)
            threshold = self.srv.vad_threshold_dbfs
            for level in dbfs:
                start = self._vad_pos_ms
                self._vad_pos_ms += VAD_FRAME_MS
                if self.turn_detection is not None:
                    await self._vad_frame(bool(level > threshold), start, self._vad_pos_ms)
        self._vad_buf = buf[nframes * n :]

    async def _vad_frame(self, speech: bool, start_ms: float, end_ms: float) -> None:
        if not self.speaking:
            if not speech:
                self._onset_run_ms = 0.0
                return
            # Like a real server VAD, speech must last `speech_onset_ms` before it counts.
            self._onset_run_ms = getattr(self, "_onset_run_ms", 0.0) + VAD_FRAME_MS
            if self._onset_run_ms < max(VAD_FRAME_MS, self.srv.speech_onset_ms):
                return
            start_ms = end_ms - self._onset_run_ms
            self._onset_run_ms = 0.0
            self.speaking = True
            self._silence_run_ms = 0.0
            self._speech_item_id = _new_id("item")
            prefix = self._td("prefix_padding_ms", self.srv.prefix_padding_ms)
            self._speech_start_ms = max(0, int(round(start_ms - prefix)))
            await self.send(
                "input_audio_buffer.speech_started",
                audio_start_ms=self._speech_start_ms,
                item_id=self._speech_item_id,
            )
            if self.active is not None and self._td("interrupt_response", True):
                await self._cancel(self.active, "turn_detected")
            return
        if speech:
            self._silence_run_ms = 0.0
            return
        self._silence_run_ms += VAD_FRAME_MS
        if self._silence_run_ms >= self._td("silence_duration_ms", self.srv.silence_ms):
            self.speaking = False
            end = int(round(end_ms))
            item_id = self._speech_item_id
            await self.send("input_audio_buffer.speech_stopped", audio_end_ms=end, item_id=item_id)
            await self._commit(item_id, end - self._speech_start_ms)
            if self._td("create_response", True):
                if self.active is None:
                    await self._start_response(self.srv._next_reply(explicit=False))
                else:
                    self.pending_auto_response = True

    async def _commit(self, item_id: str, duration_ms: float) -> None:
        previous = self._last_item_id()
        self.buffer_ms = 0.0
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
        transcript = f"<caller audio {int(round(duration_ms))} ms>"
        item["content"][0]["transcript"] = transcript
        extra: Event = {}
        if self.dialect == "ga":
            extra["usage"] = {"type": "duration", "seconds": round(duration_ms / 1000, 3)}
        await self.send(
            "conversation.item.input_audio_transcription.completed",
            item_id=item_id,
            content_index=0,
            transcript=transcript,
            **extra,
        )

    async def on_commit(self, ev: Event, event_id: str | None) -> None:
        if self.buffer_ms < MIN_COMMIT_MS:
            await self.error(
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {self.buffer_ms:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty",
                event_id=event_id,
            )
            return
        item_id = self._speech_item_id if self.speaking else _new_id("item")
        self.speaking = False
        self._silence_run_ms = 0.0
        await self._commit(item_id, self.buffer_ms)

    async def on_clear(self, ev: Event, event_id: str | None) -> None:
        self.buffer_ms = 0.0
        self.speaking = False
        self._silence_run_ms = 0.0
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
        if kind == "function_call_output":
            self.srv._record_function_output(
                {
                    "t": time.monotonic(),
                    "conn": self.index,
                    "call_id": item.get("call_id"),
                    "output": item.get("output"),
                    "item_id": full["id"],
                }
            )
        await self._item_created(full, previous)

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
        record = {
            "t": time.monotonic(),
            "conn": self.index,
            "item_id": item_id,
            "content_index": content_index,
            "audio_end_ms": audio_end_ms,
            "generated_ms": generated,
            "ok": audio_end_ms <= generated + 1e-6,
        }
        self.srv._record_truncation(record)
        if not record["ok"]:
            await self.error(
                f"Audio content of {int(round(generated))}ms is already shorter than "
                f"{audio_end_ms}ms",
                param="audio_end_ms",
                event_id=event_id,
            )
            return
        entry.truncated = True
        entry.transcript = ""  # the real API drops the transcript of a truncated item
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
        self.pending_auto_response = False
        await self._start_response(self.srv._next_reply(explicit=True))

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
            "conversation_id": f"conv_{self.index}",
            "metadata": None,
        }
        if self.dialect == "preview":
            obj.update(
                modalities=["audio", "text"],
                voice=self.session.get("voice", "alloy"),
                output_audio_format=self.out_fmt.name,
                temperature=0.8,
                max_output_tokens="inf",
            )
        else:
            obj.update(output_modalities=["audio"], max_output_tokens="inf")
        return obj

    async def _start_response(self, reply: ScriptedReply) -> None:
        loop = asyncio.get_running_loop()
        resp = _Resp(_new_id("resp"), reply, loop.time(), self.ms_since_response)
        self.ms_since_response = 0.0
        self.active = resp
        created = self._response_obj(resp, "in_progress", None)
        created["usage"] = None
        await self.send("response.created", response=created)
        resp.task = asyncio.create_task(self._stream(resp))

    async def _sleep_until(self, resp: _Resp, when: float) -> None:
        delay = when - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)
        if resp.ended:
            raise _Ended

    async def _stream(self, resp: _Resp) -> None:
        reply = resp.reply
        first_at = resp.t0 + reply.delay_ms / 1000
        try:
            has_message = bool(reply.pcm or reply.transcript) or reply.function_call is None
            if has_message:
                await self._stream_message(resp, first_at)
            if reply.function_call is not None:
                if not has_message:
                    await self._sleep_until(resp, first_at)
                await self._stream_function_call(resp, *reply.function_call)
            if resp.ended:
                return
            await self._finish(resp, "completed", None)
        except _Ended:
            pass
        except Exception:  # a bug here must not kill the loop silently
            log.exception("scripted response %s failed", resp.id)

    async def _add_output_item(self, resp: _Resp, out: _OutItem) -> None:
        if resp.ended:
            raise _Ended
        resp.items.append(out)
        previous = self._last_item_id()
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

    async def _stream_message(self, resp: _Resp, first_at: float) -> None:
        reply = resp.reply
        out = _OutItem(_new_id("item"), "message", len(resp.items), self.out_fmt)
        await self._add_output_item(resp, out)
        ids = {
            "response_id": resp.id,
            "item_id": out.id,
            "output_index": out.output_index,
            "content_index": 0,
        }
        if resp.ended:
            raise _Ended
        out.part_added = True
        await self.send(
            "response.content_part.added", **ids, part={"type": "audio", "transcript": ""}
        )
        audio = self.out_fmt.encode_from_pcm24k(reply.pcm)
        chunk_ms = self.srv.chunk_ms
        step = max(1, int(round(chunk_ms * self.out_fmt.bytes_per_ms)))
        if self.out_fmt.sample_bytes == 2:
            step -= step % 2
        chunks = [audio[i : i + step] for i in range(0, len(audio), step)]
        words = re.findall(r"\S+\s*", reply.transcript)
        names = self.srv._names
        if not chunks:
            await self._sleep_until(resp, first_at)
        for k, chunk in enumerate(chunks):
            await self._sleep_until(resp, first_at + k * chunk_ms / 1000)
            due = math.ceil((k + 1) * len(words) / len(chunks))
            while out.words_sent < due:
                await self._send_word(resp, out, words, ids)
            await self.rsend(
                resp, names["audio_delta"], **ids, delta=base64.b64encode(chunk).decode("ascii")
            )
            out.audio_bytes += len(chunk)
        while out.words_sent < len(words):
            await self._send_word(resp, out, words, ids)
        out.status = "completed"
        await self._close_item(resp, out, raw=False)

    async def _send_word(self, resp: _Resp, out: _OutItem, words: list[str], ids: Event) -> None:
        word = words[out.words_sent]
        await self.rsend(resp, self.srv._names["transcript_delta"], **ids, delta=word)
        out.words_sent += 1
        out.transcript += word

    async def _stream_function_call(
        self, resp: _Resp, name: str, arguments: dict[str, Any]
    ) -> None:
        out = _OutItem(
            _new_id("item"),
            "function_call",
            len(resp.items),
            self.out_fmt,
            call_id=_new_id("call")[:21],
            name=name,
        )
        await self._add_output_item(resp, out)
        args = json.dumps(arguments)
        ids = {
            "response_id": resp.id,
            "item_id": out.id,
            "output_index": out.output_index,
            "call_id": out.call_id,
        }
        n = max(1, min(3, len(args)))
        size = math.ceil(len(args) / n)
        for i in range(0, len(args), size):
            await self.rsend(
                resp, "response.function_call_arguments.delta", **ids, delta=args[i : i + size]
            )
        await self.rsend(
            resp, "response.function_call_arguments.done", **ids, name=name, arguments=args
        )
        out.arguments = args
        out.arguments_done = True
        out.status = "completed"
        await self._close_item(resp, out, raw=False)

    async def _close_item(self, resp: _Resp, out: _OutItem, *, raw: bool) -> None:
        """Send the still-missing closing events of an output item. raw=True: on cancellation."""

        def check() -> None:
            if not raw and resp.ended:
                raise _Ended

        names = self.srv._names
        ids = {
            "response_id": resp.id,
            "item_id": out.id,
            "output_index": out.output_index,
            "content_index": 0,
        }
        if out.type == "message" and out.part_added:
            if not out.audio_done:
                check()
                out.audio_done = True
                await self.send(names["audio_done"], **ids)
            if not out.transcript_done:
                check()
                out.transcript_done = True
                await self.send(names["transcript_done"], **ids, transcript=out.transcript)
            if not out.part_done:
                check()
                out.part_done = True
                await self.send(
                    "response.content_part.done",
                    **ids,
                    part={"type": "audio", "transcript": out.transcript},
                )
        if not out.item_done:
            check()
            out.item_done = True
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
        resp.ended = True  # the streaming task sends nothing more from here on
        if self.active is resp:
            self.active = None
        for out in resp.items:
            if not out.item_done:
                out.status = "incomplete"
                await self._close_item(resp, out, raw=True)
        await self._send_done(resp, "cancelled", {"type": "cancelled", "reason": reason})

    async def _finish(self, resp: _Resp, status: str, details: Event | None) -> None:
        if resp.ended:
            raise _Ended
        resp.ended = True
        if self.active is resp:
            self.active = None
        await self._send_done(resp, status, details)

    def _usage(self, resp: _Resp) -> Event:
        if self.srv.usage_per_response is not None:
            return copy.deepcopy(self.srv.usage_per_response)
        in_audio = int(round(resp.input_audio_ms / 1000 * 10))
        in_text = len(self.instructions.split())
        out_audio = 0
        out_text = 0
        for out in resp.items:
            if out.type == "message":
                out_audio += int(round(out.audio_ms / 1000 * 20))
                out_text += out.words_sent
            elif out.arguments_done:
                out_text += max(1, len(out.arguments) // 4)
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
        usage = self._usage(resp)
        obj = self._response_obj(resp, status, details)
        obj["usage"] = usage
        self.srv._record_usage(usage)
        await self.send("response.done", response=obj)
        await self.send(
            "rate_limits.updated",
            rate_limits=[
                {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
                {"name": "tokens", "limit": 800000, "remaining": 790000, "reset_seconds": 0.75},
            ],
        )
        if self.pending_auto_response and self.active is None and not self.closed:
            self.pending_auto_response = False
            await self._start_response(self.srv._next_reply(explicit=False))


# ---------------------------------------------------------------- the server


class ScriptedRealtimeServer:
    """A scripted Realtime API on ws://127.0.0.1:<port>/v1, run in a daemon thread."""

    def __init__(
        self,
        *,
        dialect: Dialect = "preview",
        greeting: ScriptedReply | None = None,
        replies: Iterable[ScriptedReply] = (),
        vad_threshold_dbfs: float = -35.0,
        silence_ms: int = 500,
        prefix_padding_ms: int = 300,
        chunk_ms: int = 40,
        usage_per_response: dict[str, Any] | None = None,
        strict_headers: bool = True,
        speech_onset_ms: int = 0,
    ) -> None:
        if dialect not in ("preview", "ga"):
            raise ValueError(f"dialect must be 'preview' or 'ga', not {dialect!r}")
        self.dialect: Dialect = dialect
        self.greeting = greeting
        self.replies: list[ScriptedReply] = list(replies)  # what is left to say
        self.vad_threshold_dbfs = vad_threshold_dbfs
        self.silence_ms = silence_ms
        self.prefix_padding_ms = prefix_padding_ms
        self.chunk_ms = chunk_ms
        self.usage_per_response = usage_per_response
        self.strict_headers = strict_headers
        self.speech_onset_ms = speech_onset_ms  # speech this long before speech_started

        self.received: list[ReceivedEvent] = []
        self.sent: list[ReceivedEvent] = []
        self.connections = 0
        self.requests: list[dict[str, Any]] = []
        self.usage_sent: list[dict[str, Any]] = []
        self.truncations: list[dict[str, Any]] = []
        self.function_outputs: list[dict[str, Any]] = []
        self.greeting_played = False
        self.unscripted_responses = 0  # responses made after the script ran out (empty replies)

        self._names = NAMES[dialect]
        self._cond = threading.Condition()
        self._audio_ms_total = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Server | None = None
        self._port: int | None = None
        self._conns: list[_Conn] = []

    # ---- lifecycle

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("already started")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                self._server = loop.run_until_complete(self._serve())
            except BaseException as exc:  # noqa: BLE001 - reported to start()
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.close()

        self._thread = threading.Thread(target=run, name="scripted-realtime", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("scripted realtime server did not start")
        if failure:
            raise failure[0]

    async def _serve(self) -> Server:
        server = await serve(
            self._handler,
            "127.0.0.1",
            0,
            process_request=self._process_request,
            max_size=16 * 1024 * 1024,
            ping_interval=None,
        )
        self._port = server.sockets[0].getsockname()[1]
        return server

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(5)
        except Exception:  # noqa: BLE001 - stopping anyway
            log.exception("scripted realtime server: shutdown failed")
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)

    async def _shutdown(self) -> None:
        for conn in self._conns:
            if not conn.closed:
                conn.abort()
        if self._server is not None:
            self._server.close(close_connections=False)
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2)
            except TimeoutError:
                pass

    def __enter__(self) -> ScriptedRealtimeServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("server not started")
        return f"ws://127.0.0.1:{self._port}/v1"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    # ---- handshake and connections

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if not path.rstrip("/").endswith("/realtime"):
            return connection.respond(HTTPStatus.NOT_FOUND, f"No route for {path}\n")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        parts = urlsplit(request.path)
        with self._cond:
            index = self.connections
            self.requests.append(
                {
                    "conn": index,
                    "t": time.monotonic(),
                    "path": parts.path,
                    "raw_path": request.path,
                    "query": dict(parse_qsl(parts.query)),
                    "headers": _Headers(request.headers.raw_items()),
                }
            )
            self.connections += 1
            self._cond.notify_all()
        conn = _Conn(self, ws, index)
        self._conns.append(conn)
        try:
            await conn.run()
        finally:
            conn.closed = True

    def _current(self, conn: int | None) -> _Conn | None:
        if conn is not None:
            return next((c for c in self._conns if c.index == conn), None)
        live = [c for c in self._conns if not c.closed]
        return live[-1] if live else None

    def _call(self, coro: Awaitable[Any], timeout: float = 5) -> Any:
        if self._loop is None:
            raise RuntimeError("server not started")

        async def wrap() -> Any:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrap(), self._loop).result(timeout)

    # ---- recording (loop thread writes, test threads read)

    def _record_received(self, ev: ReceivedEvent) -> None:
        with self._cond:
            self.received.append(ev)
            self._cond.notify_all()

    def _record_sent(self, ev: ReceivedEvent) -> None:
        with self._cond:
            self.sent.append(ev)
            self._cond.notify_all()

    def _record_usage(self, usage: dict[str, Any]) -> None:
        with self._cond:
            self.usage_sent.append(copy.deepcopy(usage))

    def _record_truncation(self, record: dict[str, Any]) -> None:
        with self._cond:
            self.truncations.append(record)

    def _record_function_output(self, record: dict[str, Any]) -> None:
        with self._cond:
            self.function_outputs.append(record)

    def _add_audio_ms(self, ms: float) -> None:
        with self._cond:
            self._audio_ms_total += ms

    def _next_reply(self, *, explicit: bool) -> ScriptedReply:
        if explicit and self.greeting is not None and not self.greeting_played:
            self.greeting_played = True
            return self.greeting
        if self.replies:
            return self.replies.pop(0)
        self.unscripted_responses += 1
        return ScriptedReply()

    # ---- test-thread API

    def kill_connection(self, conn: int | None = None) -> None:
        """Drop the current (or given) connection abruptly: no close frame, TCP torn down."""

        async def kill() -> None:
            target = self._current(conn)
            if target is not None and not target.closed:
                target.abort()

        self._call(kill())

    def send_error(
        self,
        message: str = "bad",
        code: str = "invalid_value",
        event_id: str | None = None,
        type_: str = "invalid_request_error",
        *,
        conn: int | None = None,
    ) -> None:
        """Send an unsolicited `error` event on the current (or given) connection."""

        async def send() -> None:
            target = self._current(conn)
            if target is None or target.closed:
                raise RuntimeError("no open connection")
            await target.error(message, code=code, event_id=event_id, type_=type_)

        self._call(send())

    def _wait(
        self,
        source: list[ReceivedEvent],
        type_: str,
        count: int,
        timeout: float,
        conn: int | None,
    ) -> list[ReceivedEvent]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [e for e in source if e.type == type_ and (conn is None or e.conn == conn)]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [e.type for e in source[-30:]]
                    raise TimeoutError(
                        f"{len(found)}/{count} {type_!r} events after {timeout}s; last: {seen}"
                    )
                self._cond.wait(remaining)

    def wait_for(
        self, type_: str, count: int = 1, timeout: float = 10, *, conn: int | None = None
    ) -> list[ReceivedEvent]:
        """Block until `count` client events of `type_` arrived; return all of them so far."""
        return self._wait(self.received, type_, count, timeout, conn)

    def wait_for_sent(
        self, type_: str, count: int = 1, timeout: float = 10, *, conn: int | None = None
    ) -> list[ReceivedEvent]:
        """Block until the server has sent `count` events of `type_`; return all so far."""
        return self._wait(self.sent, type_, count, timeout, conn)

    def wait_connections(self, count: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.connections < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{self.connections}/{count} connections after {timeout}s")
                self._cond.wait(remaining)

    def audio_received_ms(self) -> int:
        """Total caller audio received via input_audio_buffer.append, all connections."""
        with self._cond:
            return int(round(self._audio_ms_total))
