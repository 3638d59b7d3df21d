"""A SIP worker process: one pjsua2 Endpoint, at most 4 calls, one session task per call.

Each call is routed by the dialplan current when it arrives (hot reload swaps the plan for
new calls only); a call no route takes is refused with 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
from datetime import UTC, datetime

from telephony_bot import app, log
from telephony_bot.app import CallSetup
from telephony_bot.config import SipSettings
from telephony_bot.dialplan.reload import PlanWatcher
from telephony_bot.dialplan.router import CallInfo
from telephony_bot.errors import ConfigError
from telephony_bot.session.core import CallLimits, run_call
from telephony_bot.sip.call import SipCall
from telephony_bot.sip.endpoint import SipEndpoint

_log = log.get("worker")


class Worker:
    def __init__(
        self,
        settings: SipSettings,
        setup: CallSetup | None = None,
        idle_seconds: float = 0,
        *,
        plans: PlanWatcher | None = None,
        provider_override: str | None = None,
        prewarm: bool = True,
    ) -> None:
        """Calls get `setup` as it is, or are routed by the dialplan `plans` holds.
        `prewarm=False` turns pre-warming off for every call, whatever the routes say."""
        self.settings = settings
        self.prewarm = prewarm
        self.setup = setup
        self.plans = plans
        self.provider_override = provider_override
        self.limits = CallLimits(
            ring_ms=settings.ring_ms,
            max_call_seconds=settings.max_call_seconds,
            idle_seconds=idle_seconds,
        )
        self._tasks: set[asyncio.Task[object]] = set()
        self.endpoint: SipEndpoint | None = None
        self.calls_total = 0
        self._calls: dict[str, SipCall] = {}

    @property
    def provider_name(self) -> str:
        if self.setup is not None:
            return self.setup.provider.name
        return self.provider_override or "dialplan"

    def _route(self, call: SipCall) -> tuple[CallSetup | None, str]:
        if self.plans is None:
            assert self.setup is not None
            return self.setup, "fixed setup"
        offer = call.offer
        info = CallInfo(offer.called, offer.caller, offer.headers, datetime.now(UTC))
        return app.for_call(self.plans.current, info, self.provider_override)

    def _on_call(self, call: SipCall) -> None:
        self.calls_total += 1
        try:
            setup, reason = self._route(call)
        except ConfigError as exc:
            setup, reason = None, f"route cannot run: {exc}"
        if setup is None:
            _log.warning("call refused: no route", call_id=call.call_id, reason=reason)
            task = asyncio.create_task(call.reject(404, "Not Found"))
        else:
            _log.info(
                "call routed",
                call_id=call.call_id,
                route=setup.route,
                plan_version=setup.plan_version,
                reason=reason,
            )
            limits = self.limits
            if setup.limits is not None:
                limits = CallLimits(
                    ring_ms=self.limits.ring_ms,
                    max_call_seconds=self.limits.max_call_seconds or setup.limits.max_call_seconds,
                    idle_seconds=self.limits.idle_seconds or setup.limits.idle_seconds,
                )
            options = setup.options
            if not self.prewarm and options.prewarm:
                options = dataclasses.replace(options, prewarm=False)
            task = asyncio.create_task(
                run_call(call, setup.provider, setup.config, limits, options),
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
            provider=self.provider_name,
            plan_version=self.plans.current.version if self.plans else None,
            codecs=",".join(self.endpoint.codecs),
            rtp_ports=f"{s.rtp_port}-{s.rtp_port + s.rtp_port_range - 1}",
            fast_frames=self.endpoint.frames.fast,
            pid=os.getpid(),
        )
        watcher = asyncio.create_task(self.plans.run()) if self.plans is not None else None
        try:
            await stop.wait()
        finally:
            if watcher is not None:
                watcher.cancel()
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
        with contextlib.suppress(Exception):
            from telephony_bot.tools.http import close_sessions

            await close_sessions()
        _log.info("worker stopped", calls_total=self.calls_total)


async def serve_worker(worker: Worker) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await worker.run(stop)
