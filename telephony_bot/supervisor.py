"""`telephony-bot serve`: start N worker processes, restart crashed ones, stop them cleanly.

Workers listen on consecutive SIP ports from `--sip-port` (with one worker, it listens on
the public port itself) and on disjoint RTP port ranges. SIGTERM/SIGINT is passed on to
every worker, which refuses new calls with 503 and lets running calls finish for the grace
period before hanging them up.

With an admin port, the supervisor serves the admin API for all workers (admin/cluster.py);
every worker then has its own internal admin API on 127.0.0.1 at admin port + 1 + index, and
all of them write their metrics into one fresh `PROMETHEUS_MULTIPROC_DIR`.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from dataclasses import dataclass
from typing import Protocol

from telephony_bot import log
from telephony_bot.events.metrics import mark_process_dead

_log = log.get("supervisor")

RESTART_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0)


@dataclass(frozen=True)
class WorkerSpec:
    index: int
    argv: tuple[str, ...]
    sip_port: int  # 0: not a SIP worker (the local engine)
    name: str = "worker"


class Service(Protocol):
    """Something that runs beside the workers (the admin API)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Supervisor:
    def __init__(
        self, specs: list[WorkerSpec], grace_seconds: float, admin: Service | None = None
    ) -> None:
        self.specs = specs
        self.grace = grace_seconds
        self.admin = admin
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.restarts: dict[int, int] = {s.index: 0 for s in specs}
        self._stopping = False

    async def _spawn(self, spec: WorkerSpec) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(*spec.argv, stdin=asyncio.subprocess.DEVNULL)
        self.procs[spec.index] = proc
        _log.info(f"{spec.name} started", worker=spec.index, pid=proc.pid, sip_port=spec.sip_port)
        return proc

    async def _keep(self, spec: WorkerSpec) -> None:
        """Run one worker for as long as the supervisor runs; restart it when it dies."""
        failures = 0
        while not self._stopping:
            started = time.monotonic()
            proc = await self._spawn(spec)
            code = await proc.wait()
            mark_process_dead(proc.pid)  # its live gauges (calls in progress) stop counting
            if self._stopping:
                return
            if time.monotonic() - started > 30:
                failures = 0
            delay = RESTART_BACKOFF[min(failures, len(RESTART_BACKOFF) - 1)]
            failures += 1
            self.restarts[spec.index] += 1
            _log.error(
                f"{spec.name} exited; restarting",
                worker=spec.index,
                pid=proc.pid,
                exit_code=code,
                restart_in_s=delay,
                restarts=self.restarts[spec.index],
            )
            await asyncio.sleep(delay)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        keepers = [asyncio.create_task(self._keep(s)) for s in self.specs]
        if self.admin is not None:
            await self.admin.start()
        _log.info(
            "serving",
            workers=len(self.specs),
            sip_ports=",".join(str(s.sip_port) for s in self.specs if s.sip_port),
        )
        await stop.wait()
        self._stopping = True
        _log.info("stopping workers", grace_seconds=self.grace)
        for proc in self.procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        waits = [p.wait() for p in self.procs.values() if p.returncode is None]
        done, pending = await asyncio.wait(
            [asyncio.ensure_future(w) for w in waits], timeout=self.grace + 10
        )
        for proc in self.procs.values():
            if proc.returncode is None:
                _log.warning("worker did not stop in time; killing", pid=proc.pid)
                proc.kill()
        for k in keepers:
            k.cancel()
        await asyncio.gather(*keepers, *pending, return_exceptions=True)
        if self.admin is not None:
            await self.admin.stop()
        _log.info("stopped")
        return 0


def worker_argv(base_args: list[str], command: str = "worker") -> tuple[str, ...]:
    return (sys.executable, "-m", "telephony_bot.cli", command, *base_args)
