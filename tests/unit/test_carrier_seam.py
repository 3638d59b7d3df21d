"""The carrier seam: the worker runs on any `Carrier`, the bridge is a `CallMedia`, and the
worker side imports no SIP module (nor do worker and control import each other)."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import Any

from telephony_bot.app import CallSetup
from telephony_bot.callport import CallMedia, CallPort, Carrier, CarrierCapabilities
from telephony_bot.config import SipSettings
from telephony_bot.media.bridge import MediaBridge
from telephony_bot.providers.base import SessionConfig
from telephony_bot.providers.echo import EchoProvider
from telephony_bot.session.settings import SessionOptions
from telephony_bot.sip.carrier import SipCarrier
from telephony_bot.worker import Worker

PKG = Path(__file__).resolve().parents[2] / "telephony_bot"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_worker_and_its_control_import_no_sip_module_and_not_each_other() -> None:
    worker, control = _imports(PKG / "worker.py"), _imports(PKG / "worker_control.py")
    for names in (worker, control):
        assert not {n for n in names if n.startswith("telephony_bot.sip") or "pjsua2" in n}
    assert "telephony_bot.worker" not in control


async def test_the_media_bridge_is_a_call_media() -> None:
    bridge = MediaBridge(asyncio.get_running_loop(), sample_rate=24000, port_rate=8000)
    assert isinstance(bridge, CallMedia)
    assert bridge.sample_rate == 24000 and bridge.played_ms == 0


def _members(proto: type) -> set[str]:
    return {n for n in vars(proto) if not n.startswith("_")} | set(
        getattr(proto, "__annotations__", {})
    )


def test_the_sip_carrier_has_every_carrier_member() -> None:
    carrier = SipCarrier(SipSettings(), trunk="sip:127.0.0.1:5070")
    assert not _members(Carrier) - set(dir(carrier))
    assert carrier.name == "sip" and carrier.capabilities.originate
    assert not SipCarrier(SipSettings()).capabilities.originate  # no trunk: no outbound calls
    assert carrier.health() == (False, "the SIP stack is not running")
    assert carrier.draining and carrier.active_calls == 0


class FakeCarrier:
    """A carrier that takes no calls: records what the worker asks of it."""

    name = "fake"
    capabilities = CarrierCapabilities()

    def __init__(self) -> None:
        self.done: list[str] = []
        self.on_call: Any = None

    async def start(self, on_call: Any) -> None:
        self.on_call = on_call
        self.done.append("start")

    async def originate(self, to: str, *, caller: str, ring_timeout_s: float) -> CallPort:
        raise AssertionError("not configured")

    async def drain(self, grace_s: float) -> None:
        self.done.append(f"drain {grace_s}")

    async def stop(self) -> None:
        self.done.append("stop")

    @property
    def draining(self) -> bool:
        return "stop" in self.done

    @property
    def active_calls(self) -> int:
        return 0

    def health(self) -> tuple[bool, str]:
        return True, "fake"

    def describe(self) -> dict[str, Any]:
        return {"carrier": "fake"}

    def outbound_caller(self) -> str | None:
        return None

    def registration_states(self) -> list[dict[str, Any]]:
        return []

    def watch_registrations(self, fn: Any) -> None:
        pass


async def test_the_worker_runs_on_any_carrier() -> None:
    carrier = FakeCarrier()
    setup = CallSetup(EchoProvider(), SessionConfig(), SessionOptions())
    worker = Worker(SipSettings(drain_grace_seconds=1), setup, carrier=carrier)
    r = await worker.originate("100", None, None)
    assert not r.ok and r.reason == "outbound calling is not configured (outbound.trunk)"
    stop = asyncio.Event()
    stop.set()
    await worker.run(stop)
    assert carrier.done == ["start", "drain 1", "stop"]
    assert carrier.on_call == worker._on_call


async def test_calls_out_through_a_registered_trunk_keep_its_user_as_caller_id() -> None:
    from telephony_bot.config import EngineSettings, OutboundSettings
    from telephony_bot.trunk_config import Trunk, TrunkRegister

    class TrunkCarrier(FakeCarrier):
        capabilities = CarrierCapabilities(originate=True)

        def outbound_caller(self) -> str | None:
            return "2001"

        async def originate(self, to: str, *, caller: str, ring_timeout_s: float) -> CallPort:
            self.done.append(f"originate {to} as {caller}")
            raise CarrierError("the test stops here")

    from telephony_bot.errors import CarrierError

    reg = TrunkRegister(registrar="sip:pbx.example.com", user="2001", password_env="X")
    engine = EngineSettings(
        trunks={"pbx": Trunk(register=reg)}, outbound=OutboundSettings(trunk="pbx", allow=("5*",))
    )
    carrier = TrunkCarrier()
    setup = CallSetup(EchoProvider(), SessionConfig(), SessionOptions())
    worker = Worker(SipSettings(), setup, carrier=carrier, engine=engine)
    r = await worker.originate("555", "4930", None)
    assert (
        not r.ok
        and r.reason == "calls go out through trunk pbx as its user 2001: 'from' cannot be 4930"
    )
    r = await worker.originate("555", None, None)
    assert carrier.done == ["originate 555 as 2001"] and r.reason == "the test stops here"
    assert (await worker.originate("555", "2001", None)).reason == "the test stops here"
