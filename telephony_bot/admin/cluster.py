"""The supervisor's admin backend: one API over every worker process.

Calls live in the workers, so each worker serves an internal admin app on 127.0.0.1
(`admin.port + 1 + index`, same token). The supervisor's API asks them:
- `/calls` merges every worker's list; `/calls/{id}` and commands go to the worker that
  has the call;
- `/originate` goes to the ready worker with the fewest calls that still has room;
- `/health` is ready only when every worker is (an unreachable worker is unready: it is
  starting, restarting or stuck);
- `/events` relays every worker's event stream (each event tagged with `worker`) through
  a local Bus, so each page gets its own bounded queue;
- `/metrics` comes from the shared multiprocess directory, not from the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from telephony_bot import log
from telephony_bot.admin.backend import SSE_QUEUE
from telephony_bot.admin.health import Check, HealthReport
from telephony_bot.events.bus import Bus, Event, Subscription
from telephony_bot.events.control import CommandResult
from telephony_bot.events.metrics import render

_log = log.get("admin")

REQUEST_TIMEOUT_S = 5.0
RELAY_RETRY_S = 1.0


@dataclass(frozen=True)
class WorkerApi:
    index: int
    url: str  # e.g. http://127.0.0.1:8081


def worker_admin_port(admin_port: int, index: int) -> int:
    return admin_port + 1 + index


class SseParser:
    """Incremental text/event-stream parser: feed lines, get each complete event's data."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        line = line.rstrip("\r\n")
        if line == "":
            if not self._data:
                return None
            out = "\n".join(self._data)
            self._data = []
            return out
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        return None


def event_from_json(payload: dict[str, Any], worker: int) -> Event | None:
    """A relayed event, rebuilt from its JSON (`Event.to_json()`) and tagged with `worker`."""
    payload = dict(payload)
    type_ = payload.pop("type", None)
    call_id = payload.pop("call_id", None)
    if not isinstance(type_, str) or not isinstance(call_id, str):
        return None
    ts = payload.pop("ts", None)
    payload.pop("seq", None)
    payload["worker"] = worker
    if isinstance(ts, int | float):
        return Event(type_, call_id, payload, float(ts))
    return Event(type_, call_id, payload)


class ClusterBackend:
    def __init__(
        self, workers: list[WorkerApi], token: str | None, front_door_run_dir: Path | None = None
    ) -> None:
        self.workers = workers
        self.front_door_run_dir = front_door_run_dir  # its refusals join /metrics
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.bus = Bus()
        self._session: aiohttp.ClientSession | None = None
        self._relays: list[asyncio.Task[None]] = []
        self.relay_connected: dict[int, bool] = {w.index: False for w in workers}

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(headers=self._headers)
        self._relays = [
            asyncio.create_task(self._relay(w), name=f"admin-relay-{w.index}") for w in self.workers
        ]

    async def stop(self) -> None:
        for t in self._relays:
            t.cancel()
        await asyncio.gather(*self._relays, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    # ---- talking to workers

    async def _request(
        self, w: WorkerApi, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any] | None:
        """(status, JSON) from a worker, or None when it cannot be reached."""
        assert self._session is not None, "start() first"
        try:
            async with self._session.request(
                method, w.url + path, json=body,
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
            ) as resp:  # fmt: skip
                return resp.status, await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            _log.info("worker admin API unreachable", worker=w.index, path=path, error=str(exc))
            return None

    async def _each(self, path: str) -> list[tuple[WorkerApi, tuple[int, Any] | None]]:
        answers = await asyncio.gather(*(self._request(w, "GET", path) for w in self.workers))
        return list(zip(self.workers, answers, strict=True))

    async def _owner(self, call_id: str) -> tuple[WorkerApi, dict[str, Any]] | list[int]:
        """The worker that has the call and the call, or the workers that did not answer."""
        silent: list[int] = []
        for w, ans in await self._each(f"/calls/{call_id}"):
            if ans is None:
                silent.append(w.index)
            elif ans[0] == 200 and isinstance(ans[1], dict):
                return w, ans[1]
        return silent

    # ---- AdminBackend

    async def health(self) -> HealthReport:
        checks: list[Check] = []
        calls = capacity = 0
        trunks: list[dict[str, Any]] = []
        for w, ans in await self._each("/health"):
            name = f"worker {w.index}"
            if ans is None or not isinstance(ans[1], dict):
                checks.append(Check(name, False, "admin API unreachable (starting, restarting "
                                                 "or stuck)"))  # fmt: skip
                continue
            h = ans[1]
            # the registering worker's view of each trunk (the others' say "off")
            trunks += [{**t, "worker": w.index} for t in h.get("trunks") or []
                       if isinstance(t, dict) and t.get("state") != "off"]  # fmt: skip
            calls += int(h.get("calls", 0) or 0)
            capacity += int(h.get("max_calls", 0) or 0)
            if h.get("ready"):
                checks.append(Check(name, True, f"{h.get('calls', 0)}/{h.get('max_calls', '?')} "
                                                "calls"))  # fmt: skip
            else:
                checks.append(Check(name, False, "; ".join(h.get("reasons") or ["unready"])))
        info: tuple[tuple[str, Any], ...] = (
            ("calls", calls), ("max_calls", capacity), ("workers", len(self.workers)),
        )  # fmt: skip
        if trunks:
            info += (("trunks", trunks),)
        return HealthReport(tuple(checks), info)

    async def calls(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for _w, ans in await self._each("/calls"):
            if ans is not None and ans[0] == 200 and isinstance(ans[1], dict):
                out.extend(ans[1].get("calls") or [])
        out.sort(key=lambda c: c.get("started_at") or 0)
        return out

    async def call(self, call_id: str) -> dict[str, Any] | None:
        found = await self._owner(call_id)
        return found[1] if isinstance(found, tuple) else None

    async def _command(self, call_id: str, verb: str, body: dict[str, Any]) -> CommandResult:
        found = await self._owner(call_id)
        if isinstance(found, list):
            if found:  # the call may be on a worker that did not answer: not a plain 404
                workers = ", ".join(str(i) for i in found)
                why = f"call {call_id} not found, but worker(s) {workers} did not answer; retry"
                return CommandResult(False, why, {"unavailable": True})
            return CommandResult(False, f"no call {call_id} on any worker", {"not_found": True})
        w = found[0]
        ans = await self._request(w, "POST", f"/calls/{call_id}/{verb}", body)
        return _as_result(ans, w)

    async def hangup(self, call_id: str, reason: str) -> CommandResult:
        return await self._command(call_id, "hangup", {"reason": reason})

    async def transfer(self, call_id: str, target: str) -> CommandResult:
        return await self._command(call_id, "transfer", {"target": target})

    async def say(self, call_id: str, text: str, interrupt: bool) -> CommandResult:
        return await self._command(call_id, "say", {"text": text, "interrupt": interrupt})

    async def originate(self, to: str, from_: str | None, route: str | None) -> CommandResult:
        health = [(w, ans[1] if ans else None) for w, ans in await self._each("/health")]
        body: dict[str, Any] = {"to": to}
        if from_:
            body["from"] = from_
        if route:
            body["route"] = route
        res: CommandResult | None = None
        # each worker holds its share of outbound.max_per_minute: one over it, the next
        while (w := pick_worker(health)) is not None:
            res = _as_result(await self._request(w, "POST", "/originate", body), w)
            if not res.data.get("rate_limited"):
                return res
            health = [h for h in health if h[0] is not w]
        return res or CommandResult(False, "no ready worker has room for another call")

    def subscribe(self, name: str) -> Subscription:
        return self.bus.subscribe(name, maxsize=SSE_QUEUE)

    def metrics(self) -> tuple[bytes, str]:
        body, ctype = render()
        if self.front_door_run_dir is not None:
            from telephony_bot.frontdoor import rpc

            try:
                counts = rpc.refusals(self.front_door_run_dir, timeout=0.5)
            except rpc.FrontDoorUnavailableError:
                counts = {}
            body += rpc.prometheus_refusals(counts)
        return body, ctype

    # ---- the event relay

    async def _relay(self, w: WorkerApi) -> None:
        assert self._session is not None
        while True:
            try:
                async with self._session.get(
                    w.url + "/events",
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=3, sock_read=60),
                ) as resp:
                    if resp.status != 200:
                        raise aiohttp.ClientResponseError(
                            resp.request_info, (), status=resp.status, message="events refused"
                        )
                    self.relay_connected[w.index] = True
                    parser = SseParser()
                    async for raw in resp.content:
                        data = parser.feed(raw.decode("utf-8", "replace"))
                        if data is None:
                            continue
                        with contextlib.suppress(ValueError):
                            ev = event_from_json(json.loads(data), w.index)
                            if ev is not None:
                                self.bus.publish(ev)
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                _log.debug("worker event stream lost", worker=w.index, error=str(exc))
            self.relay_connected[w.index] = False
            await asyncio.sleep(RELAY_RETRY_S)


def pick_worker(health: list[tuple[WorkerApi, Any]]) -> WorkerApi | None:
    """The ready worker with the fewest calls that has room for one more."""
    best: tuple[int, int, WorkerApi] | None = None
    for w, h in health:
        if not isinstance(h, dict) or not h.get("ready"):
            continue
        calls, cap = int(h.get("calls", 0) or 0), int(h.get("max_calls", 0) or 0)
        if calls >= cap:
            continue
        key = (calls, w.index, w)
        if best is None or key[:2] < best[:2]:
            best = key
    return None if best is None else best[2]


def _as_result(ans: tuple[int, Any] | None, w: WorkerApi) -> CommandResult:
    if ans is None:
        return CommandResult(False, f"worker {w.index} did not answer")
    status, body = ans
    if not isinstance(body, dict):
        return CommandResult(False, f"worker {w.index} answered {status}")
    data = {k: v for k, v in body.items() if k not in ("ok", "reason")}
    data.setdefault("worker", w.index)
    return CommandResult(bool(body.get("ok")), str(body.get("reason", "")), data)
