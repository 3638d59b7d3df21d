"""The SIP carrier: `callport.Carrier` over one `SipEndpoint` (pjsua2).

Incoming INVITEs become `SipCall`s handed to the worker; `originate()` dials a number
through the outbound trunk; `drain()` makes the endpoint answer new calls with 503 and
waits for the calls still up.
"""

from __future__ import annotations

import asyncio
from typing import Any

from telephony_bot import log
from telephony_bot.admission import Admission
from telephony_bot.callport import CarrierCapabilities, IncomingCall
from telephony_bot.config import SipSettings
from telephony_bot.errors import SipError
from telephony_bot.sip.call import SipCall
from telephony_bot.sip.early import CallTimers
from telephony_bot.sip.endpoint import SipEndpoint

_log = log.get("sip")

DRAIN_POLL_S = 0.05


def trunk_uri(trunk: str, number: str) -> str:
    """`sip:HOST[:PORT][;params]` and a number → `sip:NUMBER@HOST[:PORT][;params]`."""
    scheme, rest = trunk.split(":", 1)
    return f"{scheme}:{number}@{rest}"


class SipCarrier:
    """Implements `callport.Carrier`; `trunk` (outbound.trunk) enables `originate()`."""

    name = "sip"

    def __init__(
        self,
        settings: SipSettings,
        *,
        trunk: str = "",
        admission: Admission | None = None,
        timers: CallTimers | None = None,
    ) -> None:
        self.settings = settings
        self.trunk = trunk
        self.admission = admission  # None: the defaults (private sources, default rates)
        self.timers = timers
        self.capabilities = CarrierCapabilities(originate=bool(trunk))
        self.endpoint: SipEndpoint | None = None

    async def start(self, on_call: IncomingCall) -> None:
        self.endpoint = SipEndpoint(
            self.settings,
            asyncio.get_running_loop(),
            on_call,
            admission=self.admission,
            timers=self.timers,
        )
        await self.endpoint.start()

    def refusals(self) -> dict[str, int]:
        """INVITEs refused so far by reason (metrics: invites_refused_total{reason})."""
        return self.endpoint.refusals() if self.endpoint is not None else {}

    async def originate(self, to: str, *, caller: str, ring_timeout_s: float) -> SipCall:
        if not self.trunk:
            raise SipError("outbound calling is not configured (outbound.trunk)")
        if self.endpoint is None:
            raise SipError("SIP endpoint is not running")
        call = await self.endpoint.make_call(trunk_uri(self.trunk, to), caller=caller, called=to)
        call.ring_timeout_s = ring_timeout_s
        return call

    async def drain(self, grace_s: float) -> None:
        ep = self.endpoint
        if ep is None:
            return
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
        return True, f"{'+'.join(s.transports)} on {s.host}:{s.port}"

    def describe(self) -> dict[str, Any]:
        s = self.settings
        ep = self.endpoint
        return {
            "sip_host": s.host,
            "sip_port": s.port,
            "transports": ",".join(s.transports),
            "codecs": ",".join(ep.codecs) if ep is not None else "",
            "rtp_ports": f"{s.rtp_port}-{s.rtp_port + s.rtp_port_range - 1}",
            "fast_frames": ep.frames.fast if ep is not None else None,
        }
