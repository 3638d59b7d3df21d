"""The supervisor's admin API over two workers' internal admin apps (real aiohttp servers
on loopback, fake Controls): merged calls, commands sent to the owning worker, originate to
the worker with room, health of all workers, and the merged event stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from telephony_bot.admin.backend import WorkerBackend
from telephony_bot.admin.cluster import (
    ClusterBackend,
    SseParser,
    WorkerApi,
    event_from_json,
    pick_worker,
)
from telephony_bot.admin.health import Check
from telephony_bot.admin.server import build_app
from telephony_bot.events.bus import Bus
from tests.unit.test_admin_api import AUTH, TOKEN, FakeControl, FakeHealth


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def cluster() -> AsyncIterator[dict[str, Any]]:
    controls, buses, healths, runners, apis = [], [], [], [], []
    for i in range(2):
        c, b, h = FakeControl(), Bus(), FakeHealth()
        if i == 1:
            c.live = {"c9": {"call_id": "c9", "called": "200", "caller": "9", "route": "sales",
                             "state": "answered", "transcript": [], "started_at": 5.0}}  # fmt: skip
        runner, url = await _serve(build_app(WorkerBackend(c, b, h, worker=i), TOKEN))
        controls.append(c), buses.append(b), healths.append(h), runners.append(runner)
        apis.append(WorkerApi(i, url))
    backend = ClusterBackend(apis, TOKEN)
    await backend.start()
    client = TestClient(TestServer(build_app(backend, TOKEN)))
    await client.start_server()
    yield {"client": client, "controls": controls, "buses": buses, "healths": healths,
           "backend": backend, "runners": runners}  # fmt: skip
    await client.close()
    await backend.stop()
    for r in runners:
        await r.cleanup()


async def test_calls_are_merged_and_commands_reach_the_owning_worker(cluster) -> None:
    client, controls = cluster["client"], cluster["controls"]
    r = await client.get("/calls", headers=AUTH)
    calls = (await r.json())["calls"]
    assert {(c["call_id"], c["worker"]) for c in calls} == {("c1", 0), ("c9", 1)}
    r = await client.get("/calls/c9", headers=AUTH)
    assert (await r.json())["route"] == "sales"
    r = await client.post("/calls/c9/hangup", headers=AUTH, json={"reason": "sup"})
    assert r.status == 200 and (await r.json())["worker"] == 1
    assert controls[1].done == [("hangup", "c9", "sup")] and controls[0].done == []
    r = await client.post("/calls/c9/transfer", headers=AUTH, json={"target": "sip:1@x"})
    assert r.status == 409 and "486" in (await r.json())["reason"]
    r = await client.post("/calls/nope/say", headers=AUTH, json={"text": "hi"})
    assert r.status == 404


async def test_originate_goes_to_a_ready_worker_with_room(cluster) -> None:
    client, controls, healths = cluster["client"], cluster["controls"], cluster["healths"]
    healths[0].checks.append(Check("provider openai", False, "unreachable"))
    r = await client.post("/originate", headers=AUTH, json={"to": "+4930"})
    assert r.status == 200 and (await r.json())["worker"] == 1
    assert controls[1].done == [("originate", "+4930", "None", "None")]


async def test_health_is_every_workers_health(cluster) -> None:
    client, healths, runners = cluster["client"], cluster["healths"], cluster["runners"]
    r = await client.get("/health")
    body = await r.json()
    assert r.status == 200 and body["calls"] == 2 and body["max_calls"] == 8
    healths[1].checks[1] = Check("dialplan", False, "does not load")
    body = await (await client.get("/health")).json()
    assert body["reasons"] == ["worker 1: dialplan: does not load"]
    await runners[0].cleanup()  # worker 0's API is gone (a crashed worker)
    r = await client.post("/calls/c1/hangup", headers=AUTH)  # c1 was on worker 0
    assert r.status == 503 and "worker(s) 0 did not answer" in (await r.json())["reason"]
    r = await client.get("/health")
    body = await r.json()
    assert r.status == 503
    assert body["reasons"][0].startswith("worker 0: admin API unreachable")


async def test_event_streams_are_merged_and_tagged(cluster) -> None:
    client, buses, backend = cluster["client"], cluster["buses"], cluster["backend"]
    r = await client.get("/events", headers=AUTH)
    await r.content.readuntil(b"\n\n")
    for _ in range(100):  # the relays connect in the background
        if all(backend.relay_connected.values()):
            break
        await asyncio.sleep(0.05)
    buses[1].emit("turn.user", "c9", text="I need a plumber", item_id="u1")
    buses[0].emit("call.ended", "c1", ended_by="remote", reason="", duration_s=3.0)
    got = []
    for _ in range(2):
        frame = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 5)
        got.append(json.loads(frame.decode().splitlines()[1].removeprefix("data: ")))
    assert {(e["type"], e["call_id"], e["worker"]) for e in got} == {
        ("turn.user", "c9", 1),
        ("call.ended", "c1", 0),
    }
    r.close()


def test_pick_worker_prefers_the_least_loaded_ready_worker() -> None:
    a, b, c = WorkerApi(0, "a"), WorkerApi(1, "b"), WorkerApi(2, "c")
    ready = {"ready": True, "max_calls": 4}
    assert pick_worker([(a, {**ready, "calls": 2}), (b, {**ready, "calls": 1})]) is b
    assert pick_worker([(a, {**ready, "calls": 4}), (b, None)]) is None
    assert pick_worker([(a, {"ready": False, "calls": 0, "max_calls": 4}),
                        (c, {**ready, "calls": 3})]) is c  # fmt: skip


def test_sse_parser_and_event_rebuild() -> None:
    p = SseParser()
    lines = ["retry: 2000\n", ": ping\n", "\n", "event: dtmf\n"]
    lines += ['data: {"type":"dtmf",\n', 'data: "call_id":"c"}\n', "\n"]
    out = [p.feed(x) for x in lines]
    assert [o for o in out if o] == ['{"type":"dtmf",\n"call_id":"c"}']
    ev = event_from_json({"type": "dtmf", "call_id": "c", "ts": 5.0, "seq": 9, "digit": "1"}, 3)
    assert ev is not None and ev.ts == 5.0 and ev.data == {"digit": "1", "worker": 3}
    assert event_from_json({"type": "dtmf"}, 0) is None
