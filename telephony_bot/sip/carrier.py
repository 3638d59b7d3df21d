"""The SIP carrier: `callport.Carrier` over one `SipEndpoint` (pjsua2).

Incoming INVITEs become `SipCall`s handed to the worker; `originate()` dials a number
through the outbound trunk (an IP trunk's URI, or a registered trunk's account); the
trunks of `trunks:` with a `register` section are registered at start (`registrations`);
`drain()` unregisters them, makes the endpoint answer new calls with 503 and waits for the
calls still up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from telephony_bot import log
from telephony_bot.admission import Admission
from telephony_bot.callport import CarrierCapabilities, IncomingCall
from telephony_bot.config import SipSettings
from telephony_bot.errors import SipError
from telephony_bot.outbound import trunk_uri
from telephony_bot.sip.call import SipCall
from telephony_bot.sip.early import CallTimers
from telephony_bot.sip.endpoint import SipEndpoint, TrunkOf
from telephony_bot.sip.registrations import Registrations
from telephony_bot.sip.trunk_accounts import trunk_lines
from telephony_bot.trunk_config import Trunk

_log = log.get("sip")

DRAIN_POLL_S = 0.05


class SipCarrier:
    """Implements `callport.Carrier`; `trunk` (outbound.trunk: an IP trunk's `sip:` URI or
    the name of a registered trunk) enables `originate()`; `trunks` (the engine config's)
    are registered with at start (this worker registers unless `settings.register_trunks`
    is off). Reading the trunks' secrets fails here, before anything starts."""

    name = "sip"

    def __init__(
        self,
        settings: SipSettings,
        *,
        trunk: str = "",
        trunks: Mapping[str, Trunk] | None = None,
        trunk_of: TrunkOf | None = None,
        admission: Admission | None = None,
        timers: CallTimers | None = None,
    ) -> None:
        """`trunk_of` names the trunk of an incoming request that no registration brought
        in (its SRTP mode applies); `admission`: who may call in (None: the defaults,
        private sources and default rates)."""
        self.settings = settings
        self.trunk = trunk
        self.trunk_of = trunk_of
        self.admission = admission
        self.timers = timers
        self.capabilities = CarrierCapabilities(originate=bool(trunk))
        self.lines = trunk_lines(trunks or {})
        if trunk and not trunk.startswith(("sip:", "sips:")) and trunk not in self.lines:
            raise SipError(f"outbound.trunk {trunk!r} is not a registered trunk")
        self.registrations = Registrations(self.lines, register=settings.register_trunks)
        self.endpoint: SipEndpoint | None = None

    @property
    def via_trunk(self) -> str | None:
        """The registered trunk outbound calls go through (None: an IP trunk URI, or none)."""
        return self.trunk if self.trunk in self.lines else None

    async def start(self, on_call: IncomingCall) -> None:
        self.endpoint = SipEndpoint(
            self.settings, asyncio.get_running_loop(), on_call, self.lines, self.registrations,
            trunk_of=self.trunk_of, admission=self.admission, timers=self.timers,
        )  # fmt: skip
        self.registrations.attach(self.endpoint.on_trunk_account)
        await self.endpoint.start()

    def refusals(self) -> dict[str, int]:
        """INVITEs refused so far by reason (metrics: invites_refused_total{reason})."""
        return self.endpoint.refusals() if self.endpoint is not None else {}

    async def originate(self, to: str, *, caller: str, ring_timeout_s: float) -> SipCall:
        if not self.trunk:
            raise SipError("outbound calling is not configured (outbound.trunk)")
        if self.endpoint is None:
            raise SipError("SIP endpoint is not running")
        via = self.via_trunk
        if via is not None:
            uri = self.lines[via].call_uri(to)
            call = await self.endpoint.make_call(uri, caller=caller, called=to, trunk=via)
        else:
            uri = trunk_uri(self.trunk, to)
            call = await self.endpoint.make_call(uri, caller=caller, called=to)
        call.ring_timeout_s = ring_timeout_s
        return call

    def outbound_caller(self) -> str | None:
        """The caller id outbound calls must use (a registered trunk's user), else None."""
        via = self.via_trunk
        return self.lines[via].reg.user if via is not None else None

    def registration_states(self) -> list[dict[str, Any]]:
        return [s.to_json() for s in self.registrations.snapshot()]

    def watch_registrations(self, fn: Callable[[dict[str, Any]], None]) -> None:
        self.registrations.listeners.append(lambda state: fn(state.to_json()))

    async def drain(self, grace_s: float) -> None:
        ep = self.endpoint
        if ep is None:
            return
        await self.registrations.unregister()  # trunks send no new calls here
        ep.draining = True
        if ep.active_calls:
            _log.info("draining: new calls get 503", active=ep.active_calls, grace_seconds=grace_s)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while ep.active_calls and loop.time() < deadline:
            await asyncio.sleep(DRAIN_POLL_S)

    async def stop(self) -> None:
        if self.endpoint is not None:
            await self.endpoint.stop()

    @property
    def draining(self) -> bool:
        return self.endpoint is None or self.endpoint.draining

    @property
    def active_calls(self) -> int:
        return self.endpoint.active_calls if self.endpoint is not None else 0

    def health(self) -> tuple[bool, str]:
        ep, s = self.endpoint, self.settings
        if ep is None or not ep.running:
            return False, "the SIP stack is not running"
        if ep.draining:
            return False, "draining: new calls get 503"
        tls = f", tls on {s.tls.port}" if s.tls else ""
        return True, f"{'+'.join(s.transports)} on {s.host}:{s.port}{tls}"

    def describe(self) -> dict[str, Any]:
        s = self.settings
        ep = self.endpoint
        return {
            "sip_host": s.host,
            "sip_port": s.port,
            "transports": ",".join(s.transports) + (f",tls:{s.tls.port}" if s.tls else ""),
            "codecs": ",".join(ep.codecs) if ep is not None else "",
            "rtp_ports": f"{s.rtp_port}-{s.rtp_port + s.rtp_port_range - 1}",
            "fast_frames": ep.frames.fast if ep is not None else None,
        }
