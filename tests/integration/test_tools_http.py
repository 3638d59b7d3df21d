"""HTTP tools against a real aiohttp server on 127.0.0.1: success, timeout, retries, errors."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from telephony_bot.providers.base import FunctionCall, ToolSpec
from telephony_bot.tools.base import ToolError
from telephony_bot.tools.executor import ToolExecutor
from telephony_bot.tools.http import close_sessions, http_tool

pytestmark = pytest.mark.integration

SPEC = ToolSpec(
    "check_slots",
    "Free appointment slots of a day",
    {
        "type": "object",
        "properties": {"clinic": {"type": "string"}, "day": {"type": "string"}},
        "required": ["clinic", "day"],
    },
)


@dataclass
class Backend:
    base: str
    hits: dict[str, int] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)


class FakeCall:
    call_id = "call-http"

    async def hangup_after_playout(self, reason: str) -> None: ...

    async def transfer(self, target: str) -> tuple[bool, str]:
        return False, "no"

    async def send_dtmf(self, digits: str) -> None: ...


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    state = Backend(base="")

    def count(name: str) -> int:
        state.hits[name] = state.hits.get(name, 0) + 1
        return state.hits[name]

    async def slots(request: web.Request) -> web.Response:
        count("slots")
        state.requests.append(
            {
                "raw_path": request.raw_path,
                "clinic": request.match_info["clinic"],
                "query": dict(request.query),
                "headers": dict(request.headers),
                "body": await request.json() if request.can_read_body else None,
            }
        )
        return web.json_response(
            {"data": {"slots": ["09:00", "11:30"], "items": [{"name": "Dr. Who"}]}, "x": 1}
        )

    async def slow(request: web.Request) -> web.Response:
        count("slow")
        try:
            await asyncio.wait_for(state.release.wait(), timeout=5)
        except TimeoutError:
            pass
        return web.json_response({"late": True})

    async def flaky(request: web.Request) -> web.Response:
        if count("flaky") <= 2:
            return web.Response(status=500, text="boom")
        return web.json_response({"ok": True, "attempt": state.hits["flaky"]})

    async def broken(request: web.Request) -> web.Response:
        count("broken")
        return web.Response(status=503, text="down for maintenance")

    async def missing(request: web.Request) -> web.Response:
        count("missing")
        return web.json_response({"error": "no such clinic"}, status=404)

    async def garbage(request: web.Request) -> web.Response:
        count("garbage")
        return web.Response(
            body=bytes([0xFF, 0xFE, 0x00, 0x81, 0x9C, 0xC3, 0x28]) * 20,
            content_type="application/octet-stream",
        )

    async def huge(request: web.Request) -> web.Response:
        count("huge")
        return web.json_response({"blob": "x" * 100_000})

    async def huge_chunked(request: web.Request) -> web.StreamResponse:
        count("huge_chunked")
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(50):
            await resp.write(b"y" * 1000)
        await resp.write_eof()
        return resp

    async def text(request: web.Request) -> web.Response:
        count("text")
        return web.Response(text="  Your balance is 12 EUR.\n\n")

    app = web.Application()
    app.router.add_post("/clinics/{clinic}/slots", slots)
    app.router.add_get("/clinics/{clinic}/slots", slots)
    app.router.add_post("/slow", slow)
    app.router.add_post("/flaky", flaky)
    app.router.add_post("/broken", broken)
    app.router.add_post("/missing", missing)
    app.router.add_get("/garbage", garbage)
    app.router.add_get("/huge", huge)
    app.router.add_get("/huge-chunked", huge_chunked)
    app.router.add_get("/text", text)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.base = f"http://127.0.0.1:{server.port}"
    try:
        yield state
    finally:
        state.release.set()
        await close_sessions()
        await server.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ARGS = {"clinic": "north side/2", "day": "2025-03-14"}


async def test_success_fills_url_body_headers_and_extracts_path(backend: Backend) -> None:
    tool = http_tool(
        SPEC,
        url=backend.base + "/clinics/{clinic}/slots",
        headers={"Authorization": "Bearer s3cret", "X-Tenant": "acme"},
        response_path="data.slots",
        timeout_s=3,
    )
    assert await tool.run(dict(ARGS), FakeCall()) == ["09:00", "11:30"]
    [req] = backend.requests
    assert req["raw_path"] == "/clinics/north%20side%2F2/slots"  # quoted: one path segment
    assert req["clinic"] == "north side/2"
    assert req["body"] == {"day": "2025-03-14"}
    assert req["query"] == {}
    assert req["headers"]["Authorization"] == "Bearer s3cret"
    assert req["headers"]["X-Tenant"] == "acme"
    assert "s3cret" not in repr(tool.meta)


async def test_get_sends_remaining_args_in_query_and_list_index_path(backend: Backend) -> None:
    tool = http_tool(
        SPEC,
        method="GET",
        url=backend.base + "/clinics/{clinic}/slots",
        response_path="data.items.0.name",
        timeout_s=3,
    )
    assert await tool.run(dict(ARGS), FakeCall()) == "Dr. Who"
    [req] = backend.requests
    assert req["query"] == {"day": "2025-03-14"}
    assert req["body"] is None


async def test_missing_response_path_names_the_path(backend: Backend) -> None:
    tool = http_tool(SPEC, url=backend.base + "/clinics/{clinic}/slots", response_path="data.x")
    with pytest.raises(ToolError, match="'data.x'"):
        await tool.run(dict(ARGS), FakeCall())


async def test_plain_text_is_returned_trimmed(backend: Backend) -> None:
    tool = http_tool(SPEC, method="GET", url=backend.base + "/text")
    assert await tool.run({}, FakeCall()) == "Your balance is 12 EUR."


async def test_slow_service_times_out_through_the_executor(backend: Backend) -> None:
    tool = http_tool(SPEC, url=backend.base + "/slow", timeout_s=1.0)
    executor = ToolExecutor({SPEC.name: tool}, FakeCall(), filler_after_ms=200)
    t0 = time.monotonic()
    result = await executor.run(FunctionCall("fc1", SPEC.name, json.dumps(ARGS)))
    elapsed = time.monotonic() - t0
    assert not result.ok
    error = json.loads(result.output)["error"]
    assert "within 1 s" in error
    assert 0.9 <= elapsed < 1.6
    assert backend.hits["slow"] == 1  # a timeout is not retried


async def test_5xx_is_retried_until_success(backend: Backend) -> None:
    tool = http_tool(SPEC, url=backend.base + "/flaky", retries=2, timeout_s=4)
    t0 = time.monotonic()
    assert await tool.run({}, FakeCall()) == {"ok": True, "attempt": 3}
    assert backend.hits["flaky"] == 3
    assert time.monotonic() - t0 >= 0.65  # backoff 0.2 s + 0.5 s


async def test_5xx_always_gives_up_after_retries(backend: Backend) -> None:
    tool = http_tool(SPEC, url=backend.base + "/broken", retries=2, timeout_s=4)
    with pytest.raises(ToolError, match=r"503 Service Unavailable \(after 3 attempts\)"):
        await tool.run({}, FakeCall())
    assert backend.hits["broken"] == 3


async def test_4xx_is_not_retried_and_explained(backend: Backend) -> None:
    tool = http_tool(SPEC, url=backend.base + "/missing", retries=2, timeout_s=4)
    with pytest.raises(ToolError) as err:
        await tool.run({}, FakeCall())
    assert str(err.value).startswith("the service refused: 404 Not Found")
    assert "no such clinic" in str(err.value)
    assert backend.hits["missing"] == 1


async def test_garbage_bytes_are_unreadable(backend: Backend) -> None:
    tool = http_tool(SPEC, method="GET", url=backend.base + "/garbage")
    with pytest.raises(ToolError, match="unreadable response"):
        await tool.run({}, FakeCall())


@pytest.mark.parametrize("path", ["/huge", "/huge-chunked"])
async def test_oversized_response_is_refused(backend: Backend, path: str) -> None:
    tool = http_tool(SPEC, method="GET", url=backend.base + path, max_bytes=4096)
    with pytest.raises(ToolError, match=r"response too large \(> 4096 bytes\)"):
        await tool.run({}, FakeCall())


async def test_connection_refused_is_retried_then_reported() -> None:
    tool = http_tool(SPEC, url=f"http://127.0.0.1:{closed_port()}/x", retries=2, timeout_s=4)
    t0 = time.monotonic()
    try:
        with pytest.raises(ToolError, match=r"cannot reach 127\.0\.0\.1:\d+.*after 3 attempts"):
            await tool.run({}, FakeCall())
    finally:
        await close_sessions()
    assert 0.65 <= time.monotonic() - t0 < 3


async def test_retries_stop_at_the_tool_deadline(backend: Backend) -> None:
    tool = http_tool(SPEC, url=backend.base + "/broken", retries=5, timeout_s=0.5)
    t0 = time.monotonic()
    with pytest.raises(ToolError, match="after 2 attempts"):
        await tool.run({}, FakeCall())
    assert time.monotonic() - t0 < 0.6
