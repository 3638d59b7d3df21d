"""`telephony-bot serve`: start N worker processes, restart crashed ones, stop them cleanly.

With one worker, it listens on the public port (`--sip-port`) itself. With several, the
front door (Kamailio, see `frontdoor/`) listens there and the workers on consecutive private
ports, with disjoint RTP port ranges. SIGTERM/SIGINT is passed on to every worker, which
refuses new calls with 503 and lets running calls finish for the grace period before hanging
them up; the front door stops last, so the BYEs of those calls still reach their workers.

With an admin port, the supervisor serves the admin API for all workers (admin/cluster.py);
every worker then has its own internal admin API on 127.0.0.1 at admin port + 1 + index, and
all of them write their metrics into one fresh `PROMETHEUS_MULTIPROC_DIR`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from telephony_bot import log
from telephony_bot.events.metrics import mark_process_dead

_log = log.get("supervisor")

RESTART_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0)
READY_WAIT_S = 60.0  # how long the workers wait for a process they depend on to be ready
READY_POLL_S = 0.05


@dataclass(frozen=True)
class WorkerSpec:
    index: int
    argv: tuple[str, ...]
    sip_port: int  # 0: not a SIP worker (the local engine)
    name: str = "worker"
    # stdout and stderr go through this, line by line (else they are inherited as they are)
    output: Callable[[str], None] | None = None
    stop_last: bool = False  # stopped once every other process has stopped (the front door)
    # The process forks children of its own (Kamailio): it runs in its own process group, gets
    # SIGTERM if the supervisor dies (setpriv --pdeathsig), and whatever is left of its group
    # is killed when it exits, so no orphan keeps its ports.
    own_group: bool = False
    # A process the others need (the local engine): it starts first, and the rest start once
    # this TCP port on 127.0.0.1 accepts connections (0: no such wait).
    ready_port: int = 0


class Service(Protocol):
    """Something that runs beside the workers (the admin API)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Supervisor:
    def __init__(
        self,
        specs: list[WorkerSpec],
        grace_seconds: float,
        admin: Service | None = None,
        background: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        self.specs = specs
        self.grace = grace_seconds
        self.admin = admin
        self.background = background  # run while serving, cancelled at stop (monitors)
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.restarts: dict[int, int] = {s.index: 0 for s in specs}
        self._stopping = False
        self._readers: set[asyncio.Task[None]] = set()

    async def _spawn(self, spec: WorkerSpec) -> asyncio.subprocess.Process:
        argv = spec.argv
        kwargs: dict[str, Any] = {}
        if spec.own_group:
            kwargs["process_group"] = 0
            setpriv = shutil.which("setpriv")
            if setpriv:
                argv = (setpriv, "--pdeathsig", "TERM", *argv)
        read_fd = write_fd = -1
        if spec.output is not None:
            # A plain pipe, not asyncio's: the process's exit is seen even while a child of
            # its own still holds the write end.
            read_fd, write_fd = os.pipe()
            kwargs.update(stdout=write_fd, stderr=write_fd)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, **kwargs
            )
        finally:
            if write_fd >= 0:
                os.close(write_fd)
        self.procs[spec.index] = proc
        if spec.output is not None:
            task = asyncio.create_task(_forward(read_fd, spec.output))
            self._readers.add(task)
            task.add_done_callback(self._readers.discard)
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
            if spec.own_group:
                _kill_group(proc.pid)
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
        first = [s for s in self.specs if s.ready_port]
        keepers = [asyncio.create_task(self._keep(s)) for s in first]
        if first:
            ready = asyncio.create_task(self._ready(first))
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
            for t in (ready, stopped):
                t.cancel()
        if not stop.is_set():  # stopped while it waited: no worker to start just to stop
            keepers += [asyncio.create_task(self._keep(s)) for s in self.specs if not s.ready_port]
        if self.admin is not None:
            await self.admin.start()
        extras = [asyncio.create_task(_guard(fn)) for fn in self.background]
        _log.info(
            "serving",
            workers=sum(1 for s in self.specs if s.name == "worker"),
            sip_ports=",".join(str(s.sip_port) for s in self.specs if s.sip_port),
        )
        await stop.wait()
        self._stopping = True
        _log.info("stopping workers", grace_seconds=self.grace)
        first = [s.index for s in self.specs if not s.stop_last]
        last = [s.index for s in self.specs if s.stop_last]
        pending = await self._stop(first, self.grace + 10)
        pending |= await self._stop(last, 10)
        for k in [*keepers, *extras]:
            k.cancel()
        await asyncio.gather(*keepers, *extras, *pending, return_exceptions=True)
        if self._readers:
            await asyncio.wait(set(self._readers), timeout=2)
        if self.admin is not None:
            await self.admin.stop()
        _log.info("stopped")
        return 0

    async def _ready(self, specs: list[WorkerSpec]) -> None:
        """Until every one of `specs` accepts connections on its port (or READY_WAIT_S): a
        worker must not take calls its route's engine cannot answer yet."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for spec in specs:
            while not await _accepts(spec.ready_port):
                if loop.time() - t0 > READY_WAIT_S:
                    _log.warning(
                        f"{spec.name} not ready: starting the workers anyway",
                        port=spec.ready_port,
                        waited_s=round(loop.time() - t0, 1),
                    )
                    break
                await asyncio.sleep(READY_POLL_S)
            else:
                _log.info(
                    f"{spec.name} ready", port=spec.ready_port, after_s=round(loop.time() - t0, 2)
                )

    async def _stop(self, indexes: list[int], timeout: float) -> set[asyncio.Future[int]]:
        procs = [self.procs[i] for i in indexes if i in self.procs]
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        waits = {asyncio.ensure_future(p.wait()) for p in procs if p.returncode is None}
        pending: set[asyncio.Future[int]] = set()
        if waits:
            _, pending = await asyncio.wait(waits, timeout=timeout)
        for proc in procs:
            if proc.returncode is None:
                _log.warning("process did not stop in time; killing", pid=proc.pid)
                proc.kill()
        for i in indexes:
            spec = next(s for s in self.specs if s.index == i)
            if spec.own_group and i in self.procs:
                _kill_group(self.procs[i].pid)
        return pending


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def _forward(fd: int, output: Callable[[str], None]) -> None:
    """Hand a child's output (the read end of its pipe) to `output` line by line until EOF."""
    loop = asyncio.get_running_loop()
    stream = asyncio.StreamReader()
    pipe = os.fdopen(fd, "rb", buffering=0)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream), pipe)
    try:
        await _lines(stream, output)
    finally:
        transport.close()


async def _lines(stream: asyncio.StreamReader, output: Callable[[str], None]) -> None:
    while True:
        try:
            line = await stream.readline()
        except ValueError:  # a line longer than the stream limit: drop it, keep reading
            continue
        if not line:
            return
        with contextlib.suppress(Exception):
            output(line.decode(errors="replace"))


async def _accepts(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _guard(fn: Callable[[], Awaitable[None]]) -> None:
    """Run a background task; its failure is logged, never fatal to serving."""
    try:
        await fn()
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - a monitor must not take the service down
        _log.error("background task failed", error=str(exc), task=getattr(fn, "__name__", ""))


def worker_argv(base_args: list[str], command: str = "worker") -> tuple[str, ...]:
    return (sys.executable, "-m", "telephony_bot.cli", command, *base_args)
