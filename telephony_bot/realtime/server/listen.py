"""The WebSocket side of a Realtime server: the route, the request, the listener."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from telephony_bot.realtime.dialect import BETA_HEADER, Dialect, request_dialect

MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def reject_unless_realtime(connection: ServerConnection, request: Request) -> Response | None:
    """404 for any path but ``.../realtime`` (the handshake's `process_request`)."""
    path = urlsplit(request.path).path
    if not path.rstrip("/").endswith("/realtime"):
        return connection.respond(HTTPStatus.NOT_FOUND, f"No route for {path}\n")
    return None


class ConnectionRequest(NamedTuple):
    path: str
    query: dict[str, str]
    model: str
    dialect: Dialect  # as the request asks for it (`dialect.request_dialect`)


def connection_request(ws: ServerConnection) -> ConnectionRequest:
    """What a connection asked for: its path, query, model (or Azure deployment), dialect."""
    request = ws.request
    assert request is not None
    parts = urlsplit(request.path)
    query = dict(parse_qsl(parts.query))
    model = query.get("model", "") or query.get("deployment", "")
    return ConnectionRequest(
        parts.path, query, model, request_dialect(model, request.headers.get(BETA_HEADER))
    )


async def serve_realtime(
    handler: Callable[[ServerConnection], Awaitable[None]], host: str, port: int, **kwargs: Any
) -> Server:
    """Listen on ``ws://host:port/.../realtime`` (port 0: any free port)."""
    return await serve(
        handler,
        host,
        port,
        process_request=reject_unless_realtime,
        max_size=MAX_MESSAGE_BYTES,
        **kwargs,
    )
