"""The connection half of a Realtime server session: sending, errors, the event loop and
``session.update``; `session.RealtimeSession` adds the conversation, the input buffer and
responses."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from telephony_bot import log as logmod
from telephony_bot.realtime import server_events as se
from telephony_bot.realtime.dialect import (
    NAMES,
    Dialect,
    canonical,
    foreign_session_keys,
    session_formats,
    supported_formats,
)
from telephony_bot.realtime.server.response import Ended, Resp
from telephony_bot.realtime.server_events import Event, new_id

log = logmod.get("realtime.server")

Handler = Callable[[Event, str | None], Awaitable[None]]


def deep_merge(base: Event, update: Event) -> Event:
    """`update` over `base`, nested objects merged, everything else replaced by a copy."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class RealtimeConnection:
    """One Realtime connection: its session settings, what it sends, its event loop."""

    def __init__(self, ws: ServerConnection, dialect: Dialect, session: Event) -> None:
        self.ws = ws
        self.dialect: Dialect = dialect
        self.names = NAMES[dialect]
        self.session: Event = session
        self.closed = False
        self.active: Resp | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- session settings

    @property
    def turn_detection(self) -> Event | None:
        return se.session_turn_detection(self.session, self.dialect)

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

    def format_of(self, side: str) -> str:
        """The session's canonical audio format on `side` (input | output); pcm16 if unknown."""
        for param, name in session_formats(self.session, self.dialect):
            if side in param:
                return canonical(name.split("@")[0]) or "pcm16"
        return "pcm16"

    # ---- sending

    async def send(self, type_: str, **fields: Any) -> None:
        if self.closed or self.ws.state is not State.OPEN:
            raise Ended
        text = json.dumps({"type": type_, "event_id": new_id("event"), **fields})
        self._on_sent(type_, text)
        try:
            await self.ws.send(text)
        except ConnectionClosed as exc:
            self.closed = True
            raise Ended from exc

    async def rsend(self, resp: Resp, type_: str, **fields: Any) -> None:
        """Send on behalf of a streaming response, unless it has ended meanwhile."""
        if resp.ended:
            raise Ended
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
        detail = se.error_detail(message, code=code, param=param, event_id=event_id, type_=type_)
        await self.send("error", error=detail)

    async def _missing(self, param: str, event_id: str | None) -> None:
        await self.error(
            f"Missing required parameter: '{param}'.",
            code="missing_required_parameter",
            param=param,
            event_id=event_id,
        )

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("realtime_session_task_failed", exc_info=task.exception())

    # ---- lifecycle

    async def run(self) -> None:
        if not await self._accept():
            return
        try:
            await self.send("session.created", session=copy.deepcopy(self.session))
            async for message in self.ws:
                await self.on_message(message)
        except (ConnectionClosed, Ended):
            pass
        finally:
            self.closed = True
            self._end_active()
            for task in list(self._tasks):
                task.cancel()

    def _end_active(self) -> None:
        if self.active is not None:
            self.active.end()
            if self.active.task is not None:
                self.active.task.cancel()
            self.active = None

    def abort(self) -> None:
        """Drop the connection abruptly: no close frame, TCP torn down."""
        self.closed = True
        if self.active is not None:
            self.active.end()
            self.active = None
        transport = self.ws.transport
        if transport is not None:
            transport.abort()

    async def on_message(self, message: str | bytes) -> None:
        t = time.monotonic()
        if isinstance(message, bytes):
            self._on_received(t, "<binary>", {"size": len(message)})
            await self.error("Binary frames are not supported; send JSON text events.")
            return
        try:
            ev = json.loads(message)
        except ValueError as exc:
            self._on_received(t, "<invalid-json>", {"raw": message[:500]})
            await self.error(
                f"We could not parse the JSON body of your request. ({exc})", code="invalid_json"
            )
            return
        if not isinstance(ev, dict):
            self._on_received(t, "<invalid-json>", {"raw": message[:500]})
            await self.error("Expected a JSON object.", code="invalid_json")
            return
        type_ = ev.get("type")
        event_id = ev.get("event_id") if isinstance(ev.get("event_id"), str) else None
        self._on_received(t, str(type_), ev)
        handlers = self._handlers()
        handler = handlers.get(type_) if isinstance(type_, str) else None
        if handler is None:
            if not isinstance(type_, str):
                await self._missing("type", event_id)
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
        except Ended:
            raise
        except Exception as exc:  # a bug in one handler must not end the session
            log.exception("realtime_event_failed", type=type_)
            await self.error(
                f"Internal error: {exc}",
                code="server_error",
                type_="server_error",
                event_id=event_id,
            )

    def _handlers(self) -> dict[str, Handler]:
        return {"session.update": self.on_session_update}

    # ---- session.update

    async def on_session_update(self, ev: Event, event_id: str | None) -> None:
        sess = ev.get("session")
        if not isinstance(sess, dict):
            await self._missing("session", event_id)
            return
        if not await self._check_session(sess, event_id):
            return
        old = self.session
        self.session = deep_merge(self.session, sess)
        self._session_changed(old)
        await self.send("session.updated", session=copy.deepcopy(self.session))

    async def _check_shape(self, sess: Event, event_id: str | None) -> bool:
        """The real API's check of an update's shape: GA wants ``type: "realtime"``; neither
        dialect takes the other's keys."""
        if self.dialect == "ga":
            if "type" not in sess:
                await self._missing("session.type", event_id)
                return False
            if sess["type"] != "realtime":
                await self.error(
                    f"Invalid value: '{sess['type']}'. Supported values are: 'realtime'.",
                    param="session.type",
                    event_id=event_id,
                )
                return False
        for key in foreign_session_keys(self.dialect):
            if key in sess:
                await self.error(
                    f"Unknown parameter: 'session.{key}'.",
                    code="unknown_parameter",
                    param=f"session.{key}",
                    event_id=event_id,
                )
                return False
        return True

    async def _check_formats(self, sess: Event, event_id: str | None, who: str) -> bool:
        """Every audio format the update sets is one `who` supports (24 kHz PCM16, G.711)."""
        for param, name in session_formats(sess, self.dialect):
            if canonical(name) is None:
                await self.error(
                    f"Invalid value: '{name}'. {who} supports {supported_formats(self.dialect)}.",
                    code="invalid_value",
                    param=param,
                    event_id=event_id,
                )
                return False
        return True

    # ---- hooks (no-ops here)
    async def _accept(self) -> bool:
        """Before ``session.created``: False refuses the connection (having said why)."""
        return True

    async def _check_session(self, sess: Event, event_id: str | None) -> bool:
        """A ``session.update``'s session is acceptable (else: the error sent, False)."""
        return True

    def _session_changed(self, old: Event) -> None:
        """The session was updated (`old`: as it was)."""

    def _on_received(self, t: float, type_: str, data: Event) -> None:
        """A client event arrived at `t` (time.monotonic())."""

    def _on_sent(self, type_: str, text: str) -> None:
        """A server event is about to go out as `text`."""
