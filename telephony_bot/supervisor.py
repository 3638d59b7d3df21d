"""`telephony-bot serve`: start N worker processes, restart crashed ones, stop them cleanly.

Workers listen on consecutive SIP ports from `--sip-port` (with one worker, it listens on
the public port itself) and on disjoint RTP port ranges. SIGTERM/SIGINT is passed on to
every worker, which refuses new calls with 503 and lets running calls finish for the grace
period before hanging them up.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from dataclasses import dataclass

from telephony_bot import log

_log = log.get("supervisor")

RESTART_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0)


@dataclass(frozen=True)
class WorkerSpec:
    index: int
    argv: tuple[str, ...]
    sip_port: int  # 0: not a SIP worker (the local engine)
    name: str = "worker"


class Supervisor:
    def __init__(self, specs: list[WorkerSpec], grace_seconds: float) -> None:
        self.specs = specs
        self.grace = grace_seconds
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
        _log.info("stopped")
        return 0


def worker_argv(base_args: list[str], command: str = "worker") -> tuple[str, ...]:
    return (sys.executable, "-m", "telephony_bot.cli", command, *base_args)
