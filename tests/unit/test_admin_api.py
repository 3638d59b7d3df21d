"""The admin HTTP API over a worker backend with a fake `Control`: auth, JSON shapes, command
errors, server-sent events, call records, and no token in any log line."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from telephony_bot.admin.backend import WorkerBackend
from telephony_bot.admin.health import Check, HealthReport
from telephony_bot.admin.records import last_records
from telephony_bot.admin.server import authorized, build_app, check_bind, sse_frame
from telephony_bot.errors import ConfigError
from telephony_bot.events.bus import Bus
from telephony_bot.events.control import CommandResult

TOKEN = "s3cret-admin-token-xyz"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class FakeControl:
    def __init__(self) -> None:
        self.live: dict[str, dict[str, Any]] = {
            "c1": {"call_id": "c1", "called": "100", "caller": "555", "route": "desk",
                   "state": "answered", "transcript": [{"role": "user", "text": "hi"}]},
        }  # fmt: skip
        self.done: list[tuple[str, ...]] = []

    def calls(self) -> list[dict[str, Any]]:
        return list(self.live.values())

    def call(self, call_id: str) -> dict[str, Any] | None:
        return self.live.get(call_id)

    async def hangup(self, call_id: str, reason: str = "") -> CommandResult:
        self.done.append(("hangup", call_id, reason))
        return CommandResult(True, data={"call_id": call_id})

    async def transfer(self, call_id: str, target: str) -> CommandResult:
        self.done.append(("transfer", call_id, target))
        return CommandResult(False, "transfer failed: 486 Busy Here")

    async def say(self, call_id: str, text: str, *, interrupt: bool = False) -> CommandResult:
        self.done.append(("say", call_id, text, str(interrupt)))
        return CommandResult(True, data={"call_id": call_id})

    async def inject(self, call_id: str, **kw: Any) -> CommandResult:
        return CommandResult(False, "not here")

    async def originate(self, to: str, from_: str | None, route: str | None) -> CommandResult:
        self.done.append(("originate", to, str(from_), str(route)))
        return CommandResult(True, data={"call_id": "out-1"})


class FakeHealth:
    def __init__(self) -> None:
        self.checks = [Check("sip", True, "udp 5060"), Check("dialplan", True, "v1")]

    def report(self) -> HealthReport:
        return HealthReport(tuple(self.checks), (("calls", 1), ("max_calls", 4)))


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[TestClient, FakeControl, Bus, FakeHealth]]:
    control, bus, health = FakeControl(), Bus(), FakeHealth()
    records = tmp_path / "cdr.jsonl"
    records.write_text("".join(json.dumps({"call_id": f"r{i}", "caller": "x"}) + "\n"
                               for i in range(5)))  # fmt: skip
    app = build_app(WorkerBackend(control, bus, health, worker=2), TOKEN, records)
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client, control, bus, health
    await client.close()


async def test_auth_refuses_missing_and_wrong_tokens_but_health_and_page_are_open(setup) -> None:
    client, *_ = setup
    for path in ("/calls", "/calls/c1", "/metrics", "/events", "/records"):
        r = await client.get(path)
        assert r.status == 401, path
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        r = await client.get(path, headers={"Authorization": "Bearer wrong"})
        assert r.status == 401, path
    r = await client.post("/calls/c1/hangup", headers={"Authorization": f"Basic {TOKEN}"})
    assert r.status == 401
    assert (await client.get("/health")).status == 200
    page = await client.get("/?token=abc")
    assert page.status == 200 and "live calls" in await page.text()
    assert (await client.get("/static/admin.js")).status == 200
    assert (await client.get("/static/server.py")).status == 404  # only the page's files


async def test_calls_and_one_call_with_its_transcript(setup) -> None:
    client, control, *_ = setup
    r = await client.get("/calls", headers=AUTH)
    body = await r.json()
    assert [c["call_id"] for c in body["calls"]] == ["c1"]
    assert body["calls"][0]["worker"] == 2
    r = await client.get("/calls/c1", headers=AUTH)
    assert (await r.json())["transcript"] == [{"role": "user", "text": "hi"}]
    r = await client.get("/calls/nope", headers=AUTH)
    assert r.status == 404


async def test_commands_map_to_control_and_refusals_carry_reasons(setup) -> None:
    client, control, *_ = setup
    r = await client.post("/calls/c1/hangup", headers=AUTH, json={"reason": "supervisor"})
    assert r.status == 200 and (await r.json())["ok"] is True
    r = await client.post("/calls/c1/hangup", headers=AUTH)  # no body: a default reason
    assert r.status == 200
    r = await client.post("/calls/c1/transfer", headers=AUTH, json={"target": "sip:9@x"})
    assert r.status == 409 and (await r.json())["reason"] == "transfer failed: 486 Busy Here"
    r = await client.post("/calls/c1/say", headers=AUTH, json={"text": "One moment."})
    assert r.status == 200
    r = await client.post("/calls/c1/say", headers=AUTH, json={"text": ""})
    assert r.status == 400 and "text" in (await r.json())["reason"]
    r = await client.post("/calls/c1/say", headers=AUTH, data=b"not json")
    assert r.status == 400
    r = await client.post("/calls/zz/hangup", headers=AUTH)
    assert r.status == 404 and "zz" in (await r.json())["reason"]
    r = await client.post("/calls/c1/explode", headers=AUTH)
    assert r.status == 404
    r = await client.post("/originate", headers=AUTH, json={"to": "+4930123", "route": "desk"})
    assert r.status == 200 and (await r.json()) == {"ok": True, "call_id": "out-1", "worker": 2}
    assert control.done == [
        ("hangup", "c1", "supervisor"), ("hangup", "c1", "admin"),
        ("transfer", "c1", "sip:9@x"), ("say", "c1", "One moment.", "False"),
        ("originate", "+4930123", "None", "desk"),
    ]  # fmt: skip


async def test_health_is_503_with_reasons_when_a_check_fails(setup) -> None:
    client, _, _, health = setup
    health.checks[1] = Check("dialplan", False, "the file on disk does not load: line 3")
    r = await client.get("/health")
    body = await r.json()
    assert r.status == 503 and body["ready"] is False
    assert body["reasons"] == ["dialplan: the file on disk does not load: line 3"]
    assert body["calls"] == 1 and body["max_calls"] == 4


async def test_events_stream_live_call_events(setup) -> None:
    client, _, bus, _ = setup
    r = await client.get("/events", headers=AUTH)
    assert r.status == 200 and r.headers["Content-Type"] == "text/event-stream"
    assert (await r.content.readuntil(b"\n\n")).startswith(b"retry:")
    bus.emit("turn.agent", "c1", text="Your slot is at nine.", item_id="i1")
    frame = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 5)
    lines = frame.decode().splitlines()
    assert lines[0] == "event: turn.agent"
    data = json.loads(lines[1].removeprefix("data: "))
    assert data["text"] == "Your slot is at nine." and data["worker"] == 2
    r.close()


async def test_records_newest_first(setup) -> None:
    client, *_ = setup
    r = await client.get("/records?limit=3", headers=AUTH)
    assert [x["call_id"] for x in (await r.json())["records"]] == ["r4", "r3", "r2"]
    assert (await client.get("/records?limit=x", headers=AUTH)).status == 400


def test_last_records_reads_from_the_end_and_skips_torn_lines(tmp_path: Path) -> None:
    p = tmp_path / "cdr.jsonl"
    assert last_records(p) == []
    lines = [json.dumps({"n": i, "pad": "x" * 300}) for i in range(1000)]
    p.write_text("\n".join(lines) + "\n" + '{"n": 1000, "to')  # a torn last write
    got = last_records(p, 3)
    assert [r["n"] for r in got] == [999, 998, 997]
    assert len(last_records(p, 400)) == 400


def test_auth_header_parsing_and_bind_rule() -> None:
    assert authorized(f"Bearer {TOKEN}", TOKEN)
    assert authorized(f"bearer  {TOKEN} ", TOKEN)
    assert not authorized(None, TOKEN) and not authorized("Bearer", TOKEN)
    assert not authorized(f"Token {TOKEN}", TOKEN)
    assert authorized(None, "")  # no token configured
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", TOKEN)
    with pytest.raises(ConfigError, match="needs a token"):
        check_bind("0.0.0.0", None)


def test_sse_frame() -> None:
    assert sse_frame({"type": "dtmf", "digit": "5"}) == (
        b'event: dtmf\ndata: {"type":"dtmf","digit":"5"}\n\n'
    )


async def test_a_busy_port_is_a_clear_error() -> None:
    import socket

    from telephony_bot.admin.server import AdminServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        app = build_app(WorkerBackend(FakeControl(), Bus(), FakeHealth()), TOKEN)
        with pytest.raises(ConfigError, match=f"admin API cannot listen on 127.0.0.1:{port}"):
            await AdminServer(app, "127.0.0.1", port).start()
