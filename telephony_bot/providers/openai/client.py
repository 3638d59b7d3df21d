"""The OpenAI Realtime WebSocket client: one session per call, reconnecting on a dropped
socket with the conversation so far restored.

Wire details (event shapes, preview vs GA names) live in the wire package
`telephony_bot.realtime`, their mapping to the port in protocol.py, URLs and headers in
endpoints.py; this module owns the socket: connect, send, read, reconnect, close.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any, Literal

import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from telephony_bot import log
from telephony_bot.errors import ProviderError
from telephony_bot.media.codecs import g711
from telephony_bot.providers.base import (
    AudioDelta,
    Capabilities,
    ProviderErrorEvent,
    ProviderEvent,
    Reconnected,
    SessionConfig,
    drain,
)
from telephony_bot.providers.openai.endpoints import RealtimeEndpoint
from telephony_bot.providers.openai.protocol import RealtimeEventMapper
from telephony_bot.providers.openai.session_config import history_events, session_update
from telephony_bot.realtime import client_events as ce
from telephony_bot.realtime import events

_log = log.get("provider.openai")

RECONNECT_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 4.0)
_FATAL_HTTP = {401, 403, 404}


class _G711:
    """PCM16 8 kHz <-> G.711, for routes that pass G.711 straight to the model: the
    session gives and takes 8 kHz audio (`audio_rate`), so a G.711 call is never
    resampled on its way to the model and back."""

    def __init__(self, law: str) -> None:
        self.encode = g711.ulaw_encode if law == "g711_ulaw" else g711.alaw_encode
        self.decode = g711.ulaw_decode if law == "g711_ulaw" else g711.alaw_decode


class RealtimeSession:
    def __init__(
        self,
        endpoint: RealtimeEndpoint,
        config: SessionConfig,
        backoff: tuple[float, ...] = RECONNECT_BACKOFF_S,
    ) -> None:
        self.endpoint = endpoint
        self.config = config
        self.dialect = endpoint.dialect
        self.backoff = backoff
        self._ws: Any = None
        self._queue: asyncio.Queue[ProviderEvent | None] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        self.restored_items = 0  # items of the conversation given at the last (re)connect
        self._g711 = _G711(config.audio_format) if config.audio_format != "pcm16" else None
        self.audio_rate = 24000 if self._g711 is None else 8000  # pcm16 is 24 kHz on the wire
        self.dropped_audio_ms = 0
        self.reconnects = 0
        self._mapper = RealtimeEventMapper()

    # ---------- connection ----------

    async def start(self) -> None:
        await self._connect()
        self._reader = asyncio.create_task(self._read_forever(), name="realtime-reader")

    async def _connect(self) -> None:
        try:
            self._ws = await websockets.connect(
                self.endpoint.url,
                additional_headers=self.endpoint.headers,
                max_size=None,
                open_timeout=10,
                ping_interval=20,
                ping_timeout=20,
            )
        except InvalidStatus as exc:
            code = exc.response.status_code
            raise ProviderError(
                f"realtime endpoint refused the connection: HTTP {code}",
                retryable=code not in _FATAL_HTTP,
            ) from None
        except (OSError, TimeoutError, websockets.InvalidURI, websockets.InvalidHandshake) as exc:
            raise ProviderError(f"cannot reach realtime endpoint: {exc}", retryable=True) from None
        await self._send(session_update(self.config, self.dialect))
        history = self.config.history() if self.config.history is not None else ()
        for event in history_events(history, self.dialect):  # go on where the caller is
            await self._send(event)
        self.restored_items = len(history)

    async def _read_forever(self) -> None:
        while True:
            try:
                async for message in self._ws:
                    self._handle(message)
            except ConnectionClosed:
                pass
            if self._closing:
                return
            self._queue.put_nowait(
                ProviderErrorEvent("connection to the model lost", code="connection_lost",
                                   retryable=True)
            )  # fmt: skip
            if not await self._reconnect():
                self._queue.put_nowait(
                    ProviderErrorEvent("cannot reconnect to the model", code="connection_failed",
                                       fatal=True)
                )  # fmt: skip
                self._queue.put_nowait(None)
                return

    async def _reconnect(self) -> bool:
        for attempt, delay in enumerate(self.backoff, start=1):
            await asyncio.sleep(delay)
            if self._closing:
                return False
            try:
                await self._connect()
            except ProviderError as exc:
                _log.warning("reconnect failed", attempt=attempt, error=str(exc))
                if not exc.retryable:
                    return False
                continue
            self.reconnects += 1
            _log.info("reconnected", attempt=attempt, restored_items=self.restored_items)
            self._queue.put_nowait(Reconnected(attempt))
            return True
        return False

    def _handle(self, message: str | bytes) -> None:
        try:
            ev = events.parse_server_event(message)
        except events.ProtocolError as exc:
            _log.warning("unreadable server event", error=str(exc))
            return
        if isinstance(ev, events.UnknownEvent):
            _log.debug("unknown server event ignored", type=ev.type)
            return
        for out in self._mapper.map(ev):
            if isinstance(out, AudioDelta) and self._g711 is not None:
                out = AudioDelta(self._g711.decode(out.pcm), out.item_id, out.response_id)
            self._queue.put_nowait(out)

    async def _send(self, event: dict[str, Any] | str) -> bool:
        ws = self._ws
        if ws is None:
            return False
        try:
            await ws.send(event if isinstance(event, str) else json.dumps(event))
            return True
        except ConnectionClosed:
            return False

    # ---------- ProviderSession ----------

    async def send_audio(self, pcm: bytes) -> None:
        data = self._g711.encode(pcm) if self._g711 is not None else pcm
        if not await self._send(ce.input_audio_append_text(data)):
            self.dropped_audio_ms += len(pcm) * 500 // self.audio_rate

    async def commit_input(self) -> None:
        await self._send(ce.input_audio_commit())

    async def clear_input(self) -> None:
        await self._send(ce.input_audio_clear())

    async def create_response(self, instructions: str | None = None) -> None:
        await self._send(ce.response_create(instructions))

    async def cancel_response(self) -> None:
        await self._send(ce.response_cancel())

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        await self._send(ce.item_truncate(item_id, audio_end_ms))

    async def send_function_output(self, call_id: str, output: str) -> None:
        await self._send(ce.function_call_output(call_id, output))

    async def add_text_item(self, text: str, role: Literal["user", "system"] = "user") -> None:
        await self._send(ce.user_text_item(text) if role == "user" else ce.system_text_item(text))

    async def add_image_item(self, data_url: str) -> None:
        """An image for the model (GA sessions; the preview API takes none)."""
        if self.dialect != "ga":
            raise ProviderError("images need a GA realtime session", retryable=False)
        await self._send(ce.user_image_item(data_url, self.dialect))

    def events(self) -> AsyncIterator[ProviderEvent]:
        return drain(self._queue)

    async def close(self) -> None:
        self._closing = True
        # the session's reader stops now, not once a stalled server acknowledges the close
        self._queue.put_nowait(None)
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        self._queue.put_nowait(None)


class OpenAIRealtimeProvider:
    """A provider for OpenAI, Azure OpenAI or any Realtime-compatible endpoint."""

    name = "openai"
    capabilities = Capabilities()

    def __init__(self, endpoint: RealtimeEndpoint) -> None:
        self.endpoint = endpoint

    async def connect(self, config: SessionConfig) -> RealtimeSession:
        session = RealtimeSession(self.endpoint, config)
        await session.start()
        return session
