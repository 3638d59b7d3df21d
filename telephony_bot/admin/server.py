"""The admin HTTP API (aiohttp), over any `AdminBackend`.

    GET  /health                 open: 200 ready / 503 unready, with reasons
    GET  /metrics                Prometheus text
    GET  /calls                  live calls
    GET  /calls/{id}             one call: state and transcript so far
    POST /calls/{id}/hangup      {"reason": "..."}            (body optional)
    POST /calls/{id}/transfer    {"target": "<route's target name> | <allowed number>"}  403
    POST /calls/{id}/say         {"text": "...", "interrupt": false}
    POST /originate              {"to": "...", "from": "...", "route": "..."}  429 over the rate
    GET  /events                 server-sent events: live call events
    GET  /records?limit=N        the last call records (CDR), newest first
    GET  /                       the read-only admin page (open; it asks for the token)

Everything but /health and the page's static files needs `Authorization: Bearer <token>`.
The token is never logged: aiohttp's access log is off (a page URL may carry `?token=`),
and requests are logged by path only.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import itertools
import json
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from telephony_bot import log
from telephony_bot.admin.backend import AdminBackend
from telephony_bot.admin.records import last_records
from telephony_bot.errors import ConfigError
from telephony_bot.events.bus import Subscription
from telephony_bot.events.control import CommandResult

_log = log.get("admin")

SSE_PING_S = 15.0
SSE_POLL_S = 1.0  # how soon a stream notices its page went away
MAX_BODY = 64 * 1024
OPEN_PATHS = ("/health", "/", "/favicon.ico")
STATIC_FILES = {"admin.js": "text/javascript", "admin.css": "text/css"}
_sse_ids = itertools.count(1)

BACKEND: web.AppKey[AdminBackend] = web.AppKey("backend")
TOKEN: web.AppKey[str] = web.AppKey("token")
RECORDS: web.AppKey[Path | None] = web.AppKey("records")
STREAMS: web.AppKey[set[Subscription]] = web.AppKey("streams")


def check_bind(host: str, token: str | None) -> None:
    """Refuse to expose an API without a token beyond this machine."""
    if token:
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ConfigError(
            f"admin API on {host} needs a token (admin.token): without one it may only "
            "listen on a loopback address such as 127.0.0.1"
        )


def authorized(header: str | None, token: str) -> bool:
    """Whether an Authorization header carries `token` (constant-time compare)."""
    if not token:
        return True
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if path in OPEN_PATHS or path.startswith("/static/"):
        return await handler(request)
    if not authorized(request.headers.get("Authorization"), request.app[TOKEN]):
        _log.warning("admin request refused: missing or wrong token", method=request.method,
                     path=path, remote=request.remote)  # fmt: skip
        return web.json_response(
            {"error": "unauthorized", "reason": "send Authorization: Bearer <admin token>"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="telephony-bot"'},
        )
    return await handler(request)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        resp = await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            return web.json_response({"error": exc.reason}, status=exc.status)
        raise
    if request.path not in ("/health", "/metrics", "/events"):
        _log.debug("admin request", method=request.method, path=request.path, status=resp.status)
    return resp


def _backend(request: web.Request) -> AdminBackend:
    return request.app[BACKEND]


async def _health(request: web.Request) -> web.Response:
    report = await _backend(request).health()
    return web.json_response(report.to_json(), status=200 if report.ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    body, ctype = _backend(request).metrics()
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = ctype
    return resp


async def _calls(request: web.Request) -> web.Response:
    calls = await _backend(request).calls()
    return web.json_response({"calls": calls})


async def _call(request: web.Request) -> web.Response:
    cid = request.match_info["call_id"]
    c = await _backend(request).call(cid)
    if c is None:
        return web.json_response({"error": "no such call", "call_id": cid}, status=404)
    return web.json_response(c)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
    try:
        data = await request.json()
    except ValueError:
        raise _bad("the body is not JSON") from None
    if not isinstance(data, dict):
        raise _bad("the body must be a JSON object")
    return data


def _bad(reason: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(
        text=json.dumps({"error": "bad request", "reason": reason}),
        content_type="application/json",
    )


def _text(data: dict[str, Any], key: str, required: bool = True) -> str | None:
    v = data.get(key)
    if v is None and not required:
        return None
    if not isinstance(v, str) or not v.strip():
        raise _bad(f"'{key}' must be a non-empty string")
    return v


def _result(res: CommandResult, **extra: Any) -> web.Response:
    body = {**res.to_json(), **extra}
    if res.ok:
        return web.json_response(body)
    headers = {}
    if res.data.get("not_found"):
        status = 404
    elif res.data.get("unavailable"):
        status = 503
    elif res.data.get("forbidden"):  # e.g. a transfer target the call may not go to
        status = 403
    elif res.data.get("rate_limited"):  # originate over outbound.max_per_minute
        status = 429
        headers["Retry-After"] = str(res.data.get("retry_after_s", 60))
    else:
        status = 409
    return web.json_response(body, status=status, headers=headers)


async def _command(request: web.Request) -> web.Response:
    cid = request.match_info["call_id"]
    verb = request.match_info["verb"]
    data = await _body(request)
    backend = _backend(request)
    if verb == "hangup":
        reason = data.get("reason", "admin")
        if not isinstance(reason, str):
            raise _bad("'reason' must be a string")
        res = await backend.hangup(cid, reason or "admin")
    elif verb == "transfer":
        res = await backend.transfer(cid, _text(data, "target") or "")
    elif verb == "say":
        interrupt = data.get("interrupt", False)
        if not isinstance(interrupt, bool):
            raise _bad("'interrupt' must be true or false")
        res = await backend.say(cid, _text(data, "text") or "", interrupt)
    else:
        raise web.HTTPNotFound()
    _log.info("admin command", verb=verb, call_id=cid, ok=res.ok, reason=res.reason)
    return _result(res, call_id=cid)


async def _originate(request: web.Request) -> web.Response:
    data = await _body(request)
    to = _text(data, "to") or ""
    from_ = _text(data, "from", required=False)
    route = _text(data, "route", required=False)
    res = await _backend(request).originate(to, from_, route)
    _log.info("admin originate", ok=res.ok, reason=res.reason)
    return _result(res)


def sse_frame(payload: dict[str, Any]) -> bytes:
    """One server-sent event: `event:` is the call event type, `data:` its JSON."""
    data = json.dumps(payload, separators=(",", ":"), default=str)
    return f"event: {payload.get('type', 'message')}\ndata: {data}\n\n".encode()


async def _events(request: web.Request) -> web.StreamResponse:
    backend = _backend(request)
    sub = backend.subscribe(f"admin-sse-{next(_sse_ids)}")
    streams = request.app[STREAMS]
    streams.add(sub)
    worker = getattr(backend, "worker", None)
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    try:
        await resp.prepare(request)
        await resp.write(b"retry: 2000\n: connected\n\n")
        idle = 0.0
        while True:
            transport = request.transport
            if transport is None or transport.is_closing():
                break  # the page went away: aiohttp does not cancel this handler
            try:
                ev = await asyncio.wait_for(sub.get(), SSE_POLL_S)
            except TimeoutError:
                idle += SSE_POLL_S
                if idle >= SSE_PING_S:
                    idle = 0.0
                    await resp.write(b": ping\n\n")
                continue
            except StopAsyncIteration:
                break  # the server is shutting down
            idle = 0.0
            payload = ev.to_json()
            if worker is not None:
                payload.setdefault("worker", worker)
            await resp.write(sse_frame(payload))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        sub.close()
        streams.discard(sub)
    return resp


async def _close_streams(app: web.Application) -> None:
    """On shutdown: end every event stream, or the server waits for them to time out."""
    for sub in list(app[STREAMS]):
        sub.close()


async def _records(request: web.Request) -> web.Response:
    path = request.app[RECORDS]
    try:
        limit = max(1, min(500, int(request.query.get("limit", "50"))))
    except ValueError:
        raise _bad("'limit' must be a number") from None
    if path is None:
        return web.json_response({"records": [], "path": None})
    records = await asyncio.to_thread(last_records, path, limit)
    return web.json_response({"records": records, "path": str(path)})


def _static(name: str) -> bytes:
    return (resources.files("telephony_bot.admin") / "static" / name).read_bytes()


PAGE_HEADERS = {
    # the page loads only its own files and talks only to this API
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


async def _index(request: web.Request) -> web.Response:
    resp = web.Response(body=_static("index.html"), content_type="text/html", charset="utf-8")
    resp.headers.update(PAGE_HEADERS)
    return resp


async def _no_icon(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def _static_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    resp = web.Response(body=_static(name), content_type=STATIC_FILES[name], charset="utf-8")
    resp.headers.update(PAGE_HEADERS)
    return resp


def build_app(
    backend: AdminBackend, token: str | None, records_path: str | Path | None = None
) -> web.Application:
    app = web.Application(middlewares=[_errors, _auth], client_max_size=MAX_BODY)
    app[BACKEND] = backend
    app[TOKEN] = token or ""
    app[RECORDS] = Path(records_path) if records_path else None
    app[STREAMS] = set()
    app.on_shutdown.append(_close_streams)
    r = app.router
    r.add_get("/", _index)
    r.add_get("/static/{name}", _static_file)
    r.add_get("/favicon.ico", _no_icon)
    r.add_get("/health", _health)
    r.add_get("/metrics", _metrics)
    r.add_get("/calls", _calls)
    r.add_get("/calls/{call_id}", _call)
    r.add_post("/calls/{call_id}/{verb}", _command)
    r.add_post("/originate", _originate)
    r.add_get("/events", _events)
    r.add_get("/records", _records)
    return app


class AdminServer:
    """Runs an admin app on host:port inside the current event loop."""

    def __init__(self, app: web.Application, host: str, port: int, name: str = "admin") -> None:
        self.app = app
        self.host = host
        self.port = port
        self.name = name
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        check_bind(self.host, self.app[TOKEN])
        # access_log=None: a request line may carry ?token= (the page's login link)
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise ConfigError(
                f"{self.name} API cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        _log.info(f"{self.name} API listening", admin_host=self.host, admin_port=self.port,
                  auth="bearer token" if self.app[TOKEN] else "none (loopback only)")  # fmt: skip

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
