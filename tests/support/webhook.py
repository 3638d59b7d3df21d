"""A real HTTP back-office for tests: aiohttp on 127.0.0.1, in a thread, recording requests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WebhookServer:
    def __init__(self, routes: dict[tuple[str, str], Any]) -> None:
        """routes: (method, path) -> JSON-able reply, or an aiohttp handler."""
        self.routes = routes
        self.requests: list[dict[str, Any]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        app = web.Application()
        for (method, path), reply in self.routes.items():
            app.router.add_route(method, path, self._wrap(reply))
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def _wrap(self, reply: Any) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            body = await request.text()
            self.requests.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "query": dict(request.query),
                    "headers": dict(request.headers),
                    "body": body,
                }
            )
            if callable(reply):
                return await reply(request)
            return web.json_response(reply)

        return handler

    def __enter__(self) -> WebhookServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
