"""A worker's own admin API: metrics on its bus, readiness, and the admin app over its
`Control`. Under `serve` it listens on 127.0.0.1 at `admin.port + 1 + index` for the
supervisor; a lone `telephony-bot worker --admin-port P` serves it to people directly.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from telephony_bot import log
from telephony_bot.admin.backend import WorkerBackend
from telephony_bot.admin.health import Check, HealthMonitor
from telephony_bot.admin.server import AdminServer, build_app
from telephony_bot.events.metrics import Metrics, multiproc_dir

_log = log.get("admin")

METRICS_SYNC_S = 1.0


def carrier_check(worker: Any) -> Check:
    """The worker's carrier can take calls (named after it: "sip")."""
    carrier = worker.carrier
    ok, detail = carrier.health()
    return Check(carrier.name, ok, detail)


class WorkerAdmin:
    """Everything the admin side adds to one worker; `start()` after its carrier."""

    def __init__(self, worker: Any, host: str, port: int | None, token: str | None) -> None:
        self.worker = worker
        s = worker.settings
        self.metrics: Metrics | None = None
        if port is not None or multiproc_dir():
            self.metrics = Metrics(worker=s.worker_id)
            self.metrics.attach(
                worker.bus,
                capacity=s.max_calls,
                refusals=getattr(worker.carrier, "refusals", None),
            )
        self.health = HealthMonitor(
            lambda: carrier_check(worker),
            worker.plans,
            worker.provider_override,
            info=lambda: {
                "worker": s.worker_id,
                "calls": len(worker.control.calls()),
                "max_calls": s.max_calls,
            },
            trunks=worker.carrier.registration_states,
        )
        self.server: AdminServer | None = None
        if port is not None:
            cdr = worker.engine.cdr.path
            app = build_app(
                WorkerBackend(worker.control, worker.bus, self.health, s.worker_id, self.metrics),
                token,
                cdr,
            )
            self.server = AdminServer(app, host, port, name="worker admin")
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        if self.server is not None:
            await self.server.start()
            self._tasks.append(asyncio.create_task(self.health.run(), name="health-probe"))
        if self.metrics is not None:
            self._tasks.append(asyncio.create_task(self._sync(), name="metrics-sync"))

    async def _sync(self) -> None:
        assert self.metrics is not None
        while True:
            await asyncio.sleep(METRICS_SYNC_S)
            self.metrics.sync()

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.server is not None:
            with contextlib.suppress(Exception):
                await self.server.stop()


def for_worker(worker: Any) -> WorkerAdmin:
    a = worker.engine.admin
    token = a.token.get_secret_value() if a.token is not None else None
    return WorkerAdmin(worker, a.host, a.port, token)
