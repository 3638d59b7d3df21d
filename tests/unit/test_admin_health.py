"""Readiness: SIP, the dialplan file on disk, provider reachability."""

from __future__ import annotations

from pathlib import Path

from telephony_bot.admin.health import Check, HealthMonitor, Target, probe, target_of
from telephony_bot.dialplan import loader
from telephony_bot.dialplan.reload import PlanWatcher

GOOD = """version: 1
defaults:
  provider: echo
routes:
  - name: desk
    match: {number: "+4930100"}
"""


def _watcher(tmp: Path) -> tuple[PlanWatcher, Path]:
    p = tmp / "plan.yaml"
    p.write_text(GOOD)
    return PlanWatcher([p], loader.load), p


def test_dialplan_check_follows_the_file_on_disk(tmp_path: Path) -> None:
    plans, path = _watcher(tmp_path)
    mon = HealthMonitor(lambda: Check("sip", True), plans)
    assert mon.dialplan().ok
    path.write_text(GOOD + "  - name: [broken\n")
    plans.check()
    bad = mon.dialplan()
    assert not bad.ok and "does not load" in bad.detail and plans.current.version in bad.detail
    path.write_text(GOOD)  # back to exactly the plan in use: loadable again
    plans.check()
    assert mon.dialplan().ok


async def test_report_needs_a_probe_and_echo_needs_no_network(tmp_path: Path) -> None:
    plans, _ = _watcher(tmp_path)
    mon = HealthMonitor(lambda: Check("sip", True, "udp"), plans, info=lambda: {"calls": 0})
    r = mon.report()
    assert not r.ready and r.reasons == ["providers: not probed yet"]
    assert await mon.probe_providers() == []  # echo: nothing to reach
    r = mon.report()
    assert r.ready and r.to_json()["calls"] == 0


async def test_probe_gets_any_http_answer_and_names_a_closed_port() -> None:
    from aiohttp import web

    app = web.Application()  # answers 404 to everything, like a Realtime server off-path
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    ok = await probe(target_of("local", f"ws://127.0.0.1:{port}/v1/realtime"))
    assert ok.ok and ok.name == "provider local" and "HTTP 404" in ok.detail
    await runner.cleanup()
    bad = await probe(target_of("local", f"ws://127.0.0.1:{port}/v1/realtime"))
    assert not bad.ok and f"127.0.0.1:{port} unreachable" in bad.detail


def test_target_of_urls() -> None:
    t = target_of("openai", "wss://api.openai.com/v1/realtime?model=x")
    assert t == Target("openai", "api.openai.com", 443, "https://api.openai.com:443/v1/")
    t = target_of("local", "ws://127.0.0.1:8765/v1/realtime")
    assert t.url == "http://127.0.0.1:8765/v1/" and t.where == "127.0.0.1:8765"


def test_each_registered_trunk_is_a_check_and_its_state_is_in_the_report() -> None:
    from telephony_bot.admin.health import HealthMonitor

    states = [
        {"trunk": "pbx", "state": "registered", "detail": "registered as 2001 at sip:pbx"},
        {"trunk": "sip_a", "state": "failed", "detail": "registration as 9 at sip:a failed: 403"},
        {"trunk": "sip_b", "state": "off", "detail": "registered by another worker"},
    ]
    monitor = HealthMonitor(lambda: Check("sip", True, "udp"), trunks=lambda: states)
    monitor._providers = []
    report = monitor.report()
    assert [c.name for c in report.checks] == ["sip", "dialplan", "trunk pbx", "trunk sip_a"]
    assert not report.ready
    assert report.reasons == ["trunk sip_a: registration as 9 at sip:a failed: 403"]
    assert report.to_json()["trunks"] == states
