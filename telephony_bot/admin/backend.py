"""What the admin HTTP API serves, whatever process it runs in.

`WorkerBackend` answers from one worker's own `Control`, `Bus` and `HealthMonitor` (the
worker's internal admin app, or `telephony-bot worker --admin-port`); the supervisor's
`ClusterBackend` (admin/cluster.py) answers by asking every worker's internal app.
"""

from __future__ import annotations

from typing import Any, Protocol

from prometheus_client import REGISTRY

from telephony_bot.admin.health import HealthReport
from telephony_bot.events.bus import Bus, Subscription
from telephony_bot.events.control import CommandResult, Control
from telephony_bot.events.metrics import Metrics, render

SSE_QUEUE = 1000  # events a slow admin page may fall behind before the oldest are dropped


class AdminBackend(Protocol):
    async def health(self) -> HealthReport: ...

    async def calls(self) -> list[dict[str, Any]]: ...

    async def call(self, call_id: str) -> dict[str, Any] | None: ...

    async def hangup(self, call_id: str, reason: str) -> CommandResult: ...

    async def transfer(self, call_id: str, target: str) -> CommandResult: ...

    async def say(self, call_id: str, text: str, interrupt: bool) -> CommandResult: ...

    async def originate(self, to: str, from_: str | None, route: str | None) -> CommandResult: ...

    def subscribe(self, name: str) -> Subscription:
        """Live call events (Event.data carries `worker`), until the subscription is closed."""
        ...

    def metrics(self) -> tuple[bytes, str]: ...


class WorkerBackend:
    """One worker: its calls, its events, its readiness."""

    def __init__(
        self,
        control: Control,
        bus: Bus,
        health: Any,  # HealthMonitor (or anything with report() -> HealthReport)
        worker: int = 0,
        metrics: Metrics | None = None,
    ) -> None:
        self.control = control
        self.bus = bus
        self.monitor = health
        self.worker = worker
        self._metrics = metrics

    def _tag(self, c: dict[str, Any]) -> dict[str, Any]:
        return {**c, "worker": self.worker}

    async def health(self) -> HealthReport:
        return self.monitor.report()  # type: ignore[no-any-return]

    async def calls(self) -> list[dict[str, Any]]:
        return [self._tag(c) for c in self.control.calls()]

    async def call(self, call_id: str) -> dict[str, Any] | None:
        c = self.control.call(call_id)
        return None if c is None else self._tag(c)

    def _missing(self, call_id: str) -> CommandResult | None:
        if self.control.call(call_id) is None:
            return CommandResult(False, f"no call {call_id} on worker {self.worker}",
                                 {"not_found": True})  # fmt: skip
        return None

    async def hangup(self, call_id: str, reason: str) -> CommandResult:
        return self._missing(call_id) or await self.control.hangup(call_id, reason)

    async def transfer(self, call_id: str, target: str) -> CommandResult:
        return self._missing(call_id) or await self.control.transfer(call_id, target)

    async def say(self, call_id: str, text: str, interrupt: bool) -> CommandResult:
        return self._missing(call_id) or await self.control.say(call_id, text, interrupt=interrupt)

    async def originate(self, to: str, from_: str | None, route: str | None) -> CommandResult:
        res = await self.control.originate(to, from_, route)
        return CommandResult(res.ok, res.reason, {**res.data, "worker": self.worker})

    def subscribe(self, name: str) -> Subscription:
        return self.bus.subscribe(name, maxsize=SSE_QUEUE)

    def metrics(self) -> tuple[bytes, str]:
        """This worker's metrics (all workers' when they share a multiprocess directory)."""
        m = self._metrics
        if m is None:
            return render()
        m.sync()
        return render(None if m.registry is REGISTRY else m.registry)
