"""A worker process: one carrier (SIP today), at most 4 calls, one session task per call.

The worker knows calls only through the `callport` seam (`Carrier`, `CallPort`): the
composition root (cli) builds the carrier and hands it in. Each call is routed by the
dialplan current when it arrives (hot reload swaps the plan for new calls only); a call no
route takes is refused with 404. The worker owns the process's event bus (`bus`), the verbs
integrators call (`control`), the CDR file and the MQTT link.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
import signal
import time
from datetime import UTC, datetime

from telephony_bot import app, log, price_table
from telephony_bot.app import CallSetup
from telephony_bot.callport import CallPort, Carrier
from telephony_bot.config import EngineSettings, SipSettings
from telephony_bot.dialplan.reload import PlanWatcher
from telephony_bot.dialplan.router import CallInfo
from telephony_bot.errors import CarrierError, ConfigError
from telephony_bot.events.bus import Bus, Event
from telephony_bot.events.cdr import CdrFile, build_record
from telephony_bot.events.control import CommandResult
from telephony_bot.outbound import NUMBER_RE, number_allowed
from telephony_bot.session.lifecycle import CallSession
from telephony_bot.session.result import CallResult
from telephony_bot.session.settings import CallLimits, CallMeta
from telephony_bot.sliding_window import SlidingWindowLimit
from telephony_bot.worker_control import WorkerControl

_log = log.get("worker")


class Worker:
    def __init__(
        self,
        settings: SipSettings,
        setup: CallSetup | None = None,
        idle_seconds: float = 0,
        *,
        carrier: Carrier,
        plans: PlanWatcher | None = None,
        provider_override: str | None = None,
        engine: EngineSettings | None = None,
        prewarm: bool = True,
        node_workers: int = 1,
    ) -> None:
        """Calls get `setup` as it is, or are routed by the dialplan `plans` holds.
        `prewarm=False` turns pre-warming off for every call, whatever the routes say.
        `carrier` brings the calls; `settings` gives the limits (calls, ring, duration, drain).
        `node_workers`: the workers of this node, which share outbound.max_per_minute."""
        self.settings = settings
        self.carrier = carrier
        self.engine = engine or EngineSettings()
        self.prices = price_table.load(self.engine.prices.file)  # ConfigError at start
        self.node = self.engine.mqtt.node if self.engine.mqtt else ""
        self.bus = Bus()
        self.sessions: dict[str, CallSession] = {}  # live calls' sessions, by call_id
        self.control = WorkerControl(self)
        self.cdr = CdrFile(self.engine.cdr.path) if self.engine.cdr.path else None
        self.mqtt: object | None = None  # events.mqtt.MqttLink while running
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
        self.calls_total = 0
        # originate: this worker's share of the node's calls a minute (toll fraud, runaways)
        per_minute = self.engine.outbound.max_per_minute
        self.originate_limit = SlidingWindowLimit(max(1, per_minute // max(1, node_workers)))
        self.node_workers = max(1, node_workers)
        self._calls: dict[str, CallPort] = {}
        carrier.watch_registrations(self._on_registration)

    def _on_registration(self, state: dict[str, object]) -> None:
        """A trunk's registration changed: an event (MQTT status, metrics, admin page)."""
        self.bus.publish(Event("trunk.registration", "", dict(state)))

    @property
    def provider_name(self) -> str:
        if self.setup is not None:
            return self.setup.provider.name
        return self.provider_override or "dialplan"

    def _route(self, call: CallPort) -> tuple[CallSetup | None, str]:
        if self.plans is None:
            assert self.setup is not None
            return self.setup, "fixed setup"
        offer = call.offer
        info = CallInfo(offer.called, offer.caller, offer.headers, datetime.now(UTC), offer.trunk)
        return app.for_call(
            self.plans.current,
            info,
            self.provider_override,
            mqtt=self.engine.mqtt,
            prices=self.prices,
        )

    def _on_call(self, call: CallPort) -> None:
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
            task = self._start_session(call, setup, limits, "inbound")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._calls[call.call_id] = call
        task.add_done_callback(lambda _t, cid=call.call_id: self._calls.pop(cid, None))

    def _start_session(
        self, call: CallPort, setup: CallSetup, limits: CallLimits, direction: str
    ) -> asyncio.Task[object]:
        meta = CallMeta(
            direction=direction,
            route=setup.route,
            plan_version=setup.plan_version,
            provider=setup.config.provider,
        )
        options = setup.options
        # Pre-warm is for calls that ring here; an outbound call's far end answers when it will.
        if options.prewarm and (not self.prewarm or direction == "outbound"):
            options = dataclasses.replace(options, prewarm=False)
        # transfers to numbers: those outbound.allow permits, through the outbound trunk
        ob = self.engine.outbound
        transfers = dataclasses.replace(options.transfers, allow=ob.allow, trunk=ob.trunk)
        options = dataclasses.replace(options, transfers=transfers)
        if self.engine.logging.transcripts:  # the engine's config: transcripts at info level
            privacy = dataclasses.replace(options.privacy, log_transcripts=True)
            options = dataclasses.replace(options, privacy=privacy)
        session = CallSession(
            call, setup.provider, setup.config, options, limits, bus=self.bus, meta=meta
        )
        self.sessions[call.call_id] = session
        return asyncio.create_task(self._run_session(session), name=f"call-{call.call_id}")

    async def _run_session(self, session: CallSession) -> CallResult:
        try:
            result = await session.run()
        finally:
            self.sessions.pop(session.call_id, None)
        self._record(session, result)
        return result

    def _record(self, session: CallSession, result: CallResult) -> None:
        """The call's CDR: appended to the CDR file and published on the bus (→ MQTT)."""
        try:
            record = build_record(
                result, session.call.offer, session.meta,
                node=self.node, worker=self.settings.worker_id,
            )  # fmt: skip
            if self.cdr is not None and not self.cdr.append(record):
                _log.error("CDR not written", call_id=session.call_id, path=str(self.cdr.path))
            data = {k: v for k, v in record.items() if k != "call_id"}
            self.bus.publish(Event("cdr", session.call_id, data))
        except Exception:  # noqa: BLE001 - a record must never take the worker down
            _log.exception("CDR failed", call_id=session.call_id)

    # ---- outbound ----

    async def originate(self, to: str, from_: str | None, route: str | None) -> CommandResult:
        """Dial `to` through the carrier (SIP: the outbound trunk) and run a session on it."""
        ob = self.engine.outbound
        if not self.carrier.capabilities.originate:
            return CommandResult(False, "outbound calling is not configured (outbound.trunk)")
        if not NUMBER_RE.match(to):
            return CommandResult(False, f"'to' must be a number or SIP user, got {to!r}")
        if not number_allowed(to, ob.allow):
            return CommandResult(False, f"{to} is not allowed by the outbound allow list")
        fixed = self.carrier.outbound_caller()
        if fixed is not None and from_ and from_ != fixed:
            return CommandResult(
                False,
                f"calls go out through trunk {ob.trunk} as its user {fixed}: "
                f"'from' cannot be {from_}",
            )
        caller = fixed or from_ or ob.from_user
        if not NUMBER_RE.match(caller):
            return CommandResult(False, f"'from' must be a number or SIP user, got {caller!r}")
        if self.carrier.draining:
            return CommandResult(False, "the worker is not taking calls")
        if self.carrier.active_calls >= self.settings.max_calls:
            return CommandResult(False, f"the worker is full ({self.settings.max_calls} calls)")
        if self.plans is None:
            if self.setup is None:
                return CommandResult(False, "no dialplan to run the call with")
            setup = self.setup
        else:
            info = CallInfo(to, caller, {}, datetime.now(UTC), ob.via_trunk or "")
            try:
                setup = app.for_named_route(
                    self.plans.current,
                    route or ob.route,
                    info,
                    self.provider_override,
                    mqtt=self.engine.mqtt,
                    prices=self.prices,
                )
            except ConfigError as exc:
                return CommandResult(False, str(exc))
        wait_s = self.originate_limit.acquire(time.monotonic())
        if wait_s > 0:
            limit = self.originate_limit.limit
            where = (
                "on this node"
                if self.node_workers == 1
                else f"on this worker (the node's {ob.max_per_minute} shared by "
                f"{self.node_workers} workers)"
            )
            retry = math.ceil(wait_s)
            _log.warning("originate refused: rate limit", to=to, limit=limit, retry_after_s=retry)
            calls = f"{limit} call{'s' if limit > 1 else ''}"
            why = (
                f"originate refused: at most {calls} a minute {where} "
                f"(outbound.max_per_minute); try again in {retry} s"
            )
            return CommandResult(False, why, {"rate_limited": True, "retry_after_s": retry})
        try:
            call = await self.carrier.originate(to, caller=caller, ring_timeout_s=ob.ring_timeout_s)
        except CarrierError as exc:
            return CommandResult(False, str(exc))
        uri = call.offer.to_uri
        self.calls_total += 1
        limits = CallLimits(
            ring_ms=0,
            max_call_seconds=self.limits.max_call_seconds
            or (setup.limits.max_call_seconds if setup.limits else 0),
            idle_seconds=self.limits.idle_seconds
            or (setup.limits.idle_seconds if setup.limits else 0),
        )
        task = self._start_session(call, setup, limits, "outbound")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._calls[call.call_id] = call
        task.add_done_callback(lambda _t, cid=call.call_id: self._calls.pop(cid, None))
        _log.info("originated", call_id=call.call_id, to=to, uri=uri, route=setup.route)
        return CommandResult(True, data={"call_id": call.call_id, "uri": uri})

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        from telephony_bot.admin.worker_app import for_worker

        # metrics and the MQTT link listen to the bus before the carrier starts: the first
        # trunk registration events come while it starts
        admin = for_worker(self)  # metrics on the bus; the admin API when a port is set
        link = None
        if self.engine.mqtt is not None:
            from telephony_bot.events.mqtt import MqttLink

            link = self.mqtt = MqttLink(
                self.engine.mqtt, self.bus, self.control, worker_id=s.worker_id
            )
        await self.carrier.start(self._on_call)
        _log.info(
            "worker listening",
            **self.carrier.describe(),
            max_calls=s.max_calls,
            provider=self.provider_name,
            plan_version=self.plans.current.version if self.plans else None,
            pid=os.getpid(),
            **self.engine.describe(),
        )
        watcher = asyncio.create_task(self.plans.run()) if self.plans is not None else None
        await admin.start()
        if link is not None:
            link.start()
        try:
            await stop.wait()
        finally:
            if watcher is not None:
                watcher.cancel()
            await self._drain()
            await admin.stop()
            if link is not None:
                await link.stop()

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        grace = self.settings.drain_grace_seconds
        deadline = loop.time() + grace
        await self.carrier.drain(grace)  # no new calls; the active ones get the grace period
        if self._tasks:  # sessions still finishing (CDR) after their calls ended
            await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline - loop.time()))
        for call in list(self._calls.values()):
            session = self.sessions.get(call.call_id)
            with contextlib.suppress(Exception):
                if session is not None:
                    await session.control.hangup_now("shutdown")
                else:
                    await call.hangup("shutdown")
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        await self.carrier.stop()
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
