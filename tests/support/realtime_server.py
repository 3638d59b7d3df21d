"""A scripted, OpenAI-Realtime-compatible WebSocket server for integration tests.

It stands in for ``wss://api.openai.com/v1/realtime`` (unreachable from the test machines) and
speaks the Realtime protocol over a plain WebSocket on 127.0.0.1, with the preview (beta) or the
GA event names, and with real timing: assistant audio is streamed as deltas paced at real time.

What the "model" says is scripted: an optional greeting (played on the first ``response.create``)
and a list of replies consumed in order, each either audio + transcript, a function call, or both.
The caller side is simulated with an energy VAD over the appended audio (server VAD), so a test can
drive full voice turns, barge-in (with server-side cancellation), truncation and tool calls.

The protocol itself (session, items, truncation, responses, usage, the real API's errors) is the
server core `telephony_bot.realtime.server` that the offline engine runs on too; this module adds
the script, the energy VAD, the recording, the fault injection and a thread to run in.

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
import copy
import json
import logging
import math
import re
import threading
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

import numpy as np
from websockets.asyncio.server import Server, ServerConnection
from websockets.exceptions import ConnectionClosed

from telephony_bot.media.codecs import g711
from telephony_bot.realtime import server_events as se
from telephony_bot.realtime.dialect import BETA_HEADER, BETA_HEADER_VALUE, Dialect
from telephony_bot.realtime.server import (
    Ended,
    OutItem,
    RealtimeSession,
    Resp,
    serve_realtime,
)
from telephony_bot.realtime.server_events import Event, new_id

__all__ = ["ReceivedEvent", "ScriptedRealtimeServer", "ScriptedReply"]

log = logging.getLogger(__name__)

VAD_FRAME_MS = 20


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


@dataclass(kw_only=True)
class _Resp(Resp):
    reply: ScriptedReply
    t0: float  # loop time when the response started


# ---------------------------------------------------------------- one connection


class _Conn(RealtimeSession):
    """One client connection: the shared server core, with a script for the replies and an
    energy VAD for the caller's turns, recording what it receives and sends."""

    def __init__(self, server: ScriptedRealtimeServer, ws: ServerConnection, index: int) -> None:
        self.srv = server
        self.index = index
        self.conversation_id = f"conv_{index}"
        self.query = dict(parse_qsl(urlsplit(ws.request.path).query)) if ws.request else {}
        session = se.default_session(
            server.dialect,
            self.query.get("model", ""),
            prefix_padding_ms=server.prefix_padding_ms,
            silence_duration_ms=server.silence_ms,
        )
        super().__init__(ws, server.dialect, session)
        self.pending_auto_response = False
        # input audio
        self.audio_ms = 0.0  # caller audio appended on this connection
        self.buffer_ms = 0.0  # since the last commit/clear
        self.ms_since_response = 0.0
        self._odd = b""
        self._vad_buf = np.zeros(0, np.int16)
        self._vad_pos_ms = 0.0
        self.speaking = False
        self._onset_run_ms = 0.0
        self._silence_run_ms = 0.0
        self._speech_item_id = ""
        self._speech_start_ms = 0

    @property
    def in_fmt(self) -> _Format:
        return _FORMATS[self.format_of("input")]

    @property
    def out_fmt(self) -> _Format:
        return _FORMATS[self.format_of("output")]

    # ---- connection and session

    async def _accept(self) -> bool:
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
            return False
        if self.srv.strict_headers and self.dialect == "ga" and beta and "realtime" in beta:
            await self._refuse(
                "beta_api_shape_disabled",
                "The Realtime Beta API is no longer supported. Please use /v1/realtime for the "
                "GA API.",
            )
            return False
        return True

    def srv_headers(self) -> _Headers:
        return self.srv.requests[self.index]["headers"]

    async def _refuse(self, code: str, message: str) -> None:
        try:
            await self.error(message, code=code)
            await self.ws.close(4000, f"invalid_request_error.{code}")
        except (ConnectionClosed, Ended):
            pass
        self.closed = True

    async def _check_session(self, sess: Event, event_id: str | None) -> bool:
        return await self._check_shape(sess, event_id)

    def _session_changed(self, old: Event) -> None:
        if se.session_turn_detection(old, self.dialect) is not None and self.turn_detection is None:
            self.speaking = False
            self._silence_run_ms = 0.0

    def _on_received(self, t: float, type_: str, data: Event) -> None:
        self.srv._record_received(ReceivedEvent(t, type_, data, self.index))

    async def send(self, type_: str, **fields: Any) -> None:
        await self.srv._unfrozen.wait()  # a frozen server says nothing, to anyone
        await super().send(type_, **fields)

    def _on_sent(self, type_: str, text: str) -> None:
        self.srv._record_sent(ReceivedEvent(time.monotonic(), type_, json.loads(text), self.index))

    # ---- the caller's audio and the energy VAD

    async def _append(self, raw: bytes) -> None:
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
            self._onset_run_ms += VAD_FRAME_MS
            if self._onset_run_ms < max(VAD_FRAME_MS, self.srv.speech_onset_ms):
                return
            start_ms = end_ms - self._onset_run_ms
            self._onset_run_ms = 0.0
            self.speaking = True
            self._silence_run_ms = 0.0
            prefix = self._td("prefix_padding_ms", self.srv.prefix_padding_ms)
            self._speech_start_ms = max(0, int(round(start_ms - prefix)))
            self._speech_item_id = await self._speech_started(self._speech_start_ms)
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
        self.buffer_ms = 0.0
        item = await self._commit_item(item_id)
        heard = self.srv.transcripts.pop(0) if self.srv.transcripts else ""
        text = heard or f"<caller audio {int(round(duration_ms))} ms>"
        await self._transcribed(item, text, duration_ms)

    def _buffered_ms(self) -> float:
        return self.buffer_ms

    async def _commit_buffer(self) -> None:
        item_id = self._speech_item_id if self.speaking else new_id("item")
        self.speaking = False
        self._silence_run_ms = 0.0
        await self._commit(item_id, self.buffer_ms)

    def _clear_buffer(self) -> None:
        self.buffer_ms = 0.0
        self.speaking = False
        self._silence_run_ms = 0.0

    # ---- recording

    def _on_client_item(self, item: Event) -> None:
        if item.get("type") == "function_call_output":
            self.srv._record_function_output(
                {
                    "t": time.monotonic(),
                    "conn": self.index,
                    "call_id": item.get("call_id"),
                    "output": item.get("output"),
                    "item_id": item["id"],
                }
            )

    def _on_truncate(self, entry: OutItem, audio_end_ms: int, ok: bool) -> None:
        self.srv._record_truncation(
            {
                "t": time.monotonic(),
                "conn": self.index,
                "item_id": entry.id,
                "content_index": 0,
                "audio_end_ms": audio_end_ms,
                "generated_ms": entry.audio_ms,
                "ok": ok,
            }
        )

    # ---- scripted responses

    async def _create_response(self, ev: Event, event_id: str | None) -> None:
        self.pending_auto_response = False
        await self._start_response(self.srv._next_reply(explicit=True))

    async def _start_response(self, reply: ScriptedReply) -> None:
        loop = asyncio.get_running_loop()
        resp = _Resp(
            id=new_id("resp"), reply=reply, t0=loop.time(), input_audio_ms=self.ms_since_response
        )
        self.ms_since_response = 0.0
        await self._begin_response(resp, lambda: self._stream(resp))

    async def _sleep_until(self, resp: Resp, when: float) -> None:
        delay = when - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)
        if resp.ended:
            raise Ended

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
                name, arguments = reply.function_call
                await self._function_call(
                    resp, new_id("call")[:21], name, json.dumps(arguments), pieces=3
                )
            if resp.ended:
                return
            await self._finish(resp)
        except Ended:
            pass
        except Exception:  # a bug here must not kill the loop silently
            log.exception("scripted response %s failed", resp.id)

    async def _stream_message(self, resp: _Resp, first_at: float) -> None:
        """The reply's audio in `chunk_ms` deltas paced at real time, its transcript word by
        word as the audio goes out."""
        reply = resp.reply
        out_fmt = self.out_fmt
        out, ids = await self._open_message(resp)
        audio = out_fmt.encode_from_pcm24k(reply.pcm)
        chunk_ms = self.srv.chunk_ms
        step = max(1, int(round(chunk_ms * out_fmt.bytes_per_ms)))
        if out_fmt.sample_bytes == 2:
            step -= step % 2
        chunks = [audio[i : i + step] for i in range(0, len(audio), step)]
        words = re.findall(r"\S+\s*", reply.transcript)
        if not chunks:
            await self._sleep_until(resp, first_at)
        for k, chunk in enumerate(chunks):
            await self._sleep_until(resp, first_at + k * chunk_ms / 1000)
            due = math.ceil((k + 1) * len(words) / len(chunks))
            while out.transcript_deltas < due:
                await self._transcript_delta(resp, out, ids, words[out.transcript_deltas])
            await self._audio_delta(resp, out, ids, chunk, len(chunk) / out_fmt.bytes_per_ms)
        while out.transcript_deltas < len(words):
            await self._transcript_delta(resp, out, ids, words[out.transcript_deltas])
        out.status = "completed"
        await self._close_item(resp, out)

    def _usage(self, resp: Resp) -> Event:
        if self.srv.usage_per_response is not None:
            return copy.deepcopy(self.srv.usage_per_response)
        return super()._usage(resp)

    def _text_tokens(self, resp: Resp) -> tuple[int, int]:
        out_text = 0
        for out in resp.items:
            if out.type == "message":
                out_text += out.transcript_deltas
            elif out.arguments_done:
                out_text += max(1, len(out.arguments) // 4)
        return len(self.instructions.split()), out_text

    def _decorate_done(self, resp: Resp, obj: Event) -> None:
        self.srv._record_usage(obj["usage"])

    async def _after_done(self, resp: Resp) -> None:
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
        transcripts: Iterable[str] = (),
        port: int = 0,
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
        # what the caller's turns are heard as, in order (then a placeholder)
        self.transcripts: list[str] = list(transcripts)

        self.received: list[ReceivedEvent] = []
        self.sent: list[ReceivedEvent] = []
        self.connections = 0
        self.requests: list[dict[str, Any]] = []
        self.usage_sent: list[dict[str, Any]] = []
        self.truncations: list[dict[str, Any]] = []
        self.function_outputs: list[dict[str, Any]] = []
        self.greeting_played = False
        self.unscripted_responses = 0  # responses made after the script ran out (empty replies)

        self._cond = threading.Condition()
        self._audio_ms_total = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Server | None = None
        self._port: int | None = None
        self._bind_port = port  # 0: any free port
        self._conns: list[_Conn] = []
        self._unfrozen = asyncio.Event()  # set: the server talks (see freeze())
        self._unfrozen.set()

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
        server = await serve_realtime(
            self._handler, "127.0.0.1", self._bind_port, ping_interval=None
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

    def freeze(self, frozen: bool = True) -> None:
        """Stall like a stopped process: connections stay open, nothing more is sent (what
        was due is sent once thawed with `freeze(False)`)."""
        loop = self._loop
        assert loop is not None
        loop.call_soon_threadsafe(self._unfrozen.clear if frozen else self._unfrozen.set)

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
