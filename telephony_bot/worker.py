"""A SIP worker process: one pjsua2 Endpoint, at most 4 calls, one session task per call."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from telephony_bot import log
from telephony_bot.app import CallSetup
from telephony_bot.config import SipSettings
from telephony_bot.session.core import CallLimits, run_call
from telephony_bot.sip.call import SipCall
from telephony_bot.sip.endpoint import SipEndpoint

_log = log.get("worker")


class Worker:
    def __init__(self, settings: SipSettings, setup: CallSetup, idle_seconds: float = 0) -> None:
        self.settings = settings
        self.setup = setup
        self.provider = setup.provider
        self.limits = CallLimits(
            ring_ms=settings.ring_ms,
            max_call_seconds=settings.max_call_seconds,
            idle_seconds=idle_seconds,
        )
        self._tasks: set[asyncio.Task[object]] = set()
        self.endpoint: SipEndpoint | None = None
        self.calls_total = 0
        self._calls: dict[str, SipCall] = {}

    def _on_call(self, call: SipCall) -> None:
        self.calls_total += 1
        task = asyncio.create_task(
            run_call(call, self.provider, self.setup.config, self.limits, self.setup.options),
            name=f"call-{call.call_id}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._calls[call.call_id] = call
        task.add_done_callback(lambda _t, cid=call.call_id: self._calls.pop(cid, None))

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        s = self.settings
        self.endpoint = SipEndpoint(s, loop, self._on_call)
        await self.endpoint.start()
        _log.info(
            "worker listening",
            sip_host=s.host,
            sip_port=s.port,
            transports=",".join(s.transports),
            max_calls=s.max_calls,
            provider=self.provider.name,
            codecs=",".join(self.endpoint.codecs),
            rtp_ports=f"{s.rtp_port}-{s.rtp_port + s.rtp_port_range - 1}",
            fast_frames=self.endpoint.frames.fast,
            pid=os.getpid(),
        )
        try:
            await stop.wait()
        finally:
            await self._drain()

    async def _drain(self) -> None:
        ep = self.endpoint
        if ep is None:
            return
        ep.draining = True
        grace = self.settings.drain_grace_seconds
        if self._tasks:
            _log.info("draining: new calls get 503", active=len(self._tasks), grace_seconds=grace)
            await asyncio.wait(set(self._tasks), timeout=grace)
        for call in list(self._calls.values()):
            with contextlib.suppress(Exception):
                await call.hangup("shutdown")
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        await ep.stop()
        _log.info("worker stopped", calls_total=self.calls_total)


async def serve_worker(settings: SipSettings, setup: CallSetup, idle_seconds: float = 0) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await Worker(settings, setup, idle_seconds).run(stop)
