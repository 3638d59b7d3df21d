"""The offline engine served as an OpenAI-Realtime-compatible WebSocket server.

Workers reach it exactly like OpenAI (`ws://host:port/v1/realtime?model=...`), in the preview
dialect (`OpenAI-Beta: realtime=v1` header, `response.audio.delta`, ...) or the GA dialect
(model `gpt-realtime*` or no beta header: `response.output_audio.delta`, ...). The protocol
(sessions, items, truncation, responses, usage, errors) is the shared server core
`telephony_bot.realtime.server`; what is heard and said here comes from a `pipeline.Pipeline`:
a per-session Detector (server VAD), a shared Recognizer and Synthesizer run in a bounded
pool (`work_pool`), and a per-session Brain that turns transcripts and tool results into
actions (Say / CallTool / Transfer / Hangup).

Audio formats: pcm16 (24 kHz), g711_ulaw and g711_alaw (8 kHz; GA names audio/pcm, audio/pcmu,
audio/pcma), each way independently; the engine works on 24 kHz PCM16 inside
(`telephony_bot.realtime.audio`).
"""

from __future__ import annotations

from websockets.asyncio.server import Server, ServerConnection

from telephony_bot import log as logmod
from telephony_bot.realtime.server import connection_request, serve_realtime

from .pipeline import Pipeline
from .session import EngineSession
from .work_pool import WorkPool

__all__ = ["LocalRealtimeServer"]

log = logmod.get("local")


# ---------------------------------------------------------------- the server


class LocalRealtimeServer:
    """OpenAI-Realtime-compatible server on ws://host:port/v1 backed by a local `Pipeline`."""

    def __init__(self, host: str, port: int, pipeline: Pipeline) -> None:
        self.host = host
        self.port = port
        self.pipeline = pipeline
        self._server: Server | None = None
        self._pool: WorkPool | None = None
        self._sessions: set[EngineSession] = set()

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
        self._server = await serve_realtime(self._handler, self.host, self.port)
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

    async def _handler(self, ws: ServerConnection) -> None:
        request = connection_request(ws)
        session = EngineSession(self, ws, request.dialect, request.model)
        self._sessions.add(session)
        log.info("local_session_open", dialect=request.dialect, model=request.model)
        try:
            await session.run()
        finally:
            self._sessions.discard(session)
            log.info("local_session_closed", dialect=request.dialect)
