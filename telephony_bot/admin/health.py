"""Readiness: a worker is ready when its SIP transport listens, the providers its routes use
answer HTTP at their address, and the dialplan file on disk loads.

A provider is probed with a plain HTTP(S) GET beside its WebSocket path (no credentials):
any HTTP answer, a 404 included, means the server is there. Not a bare TCP connect: a
WebSocket server logs every connection that closes without a request as an error.

The provider probe runs in the background (`HealthMonitor.run`) so `/health` answers at
once from the last results; a provider not probed yet counts as not ready.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from telephony_bot import log
from telephony_bot.errors import ConfigError

_log = log.get("admin")

PROBE_INTERVAL_S = 10.0
PROBE_TIMEOUT_S = 2.0
_DEFAULT_PORTS = {"ws": 80, "http": 80, "wss": 443, "https": 443}


@dataclass(frozen=True)
class Check:
    name: str  # "sip", "dialplan", "provider local", ...
    ok: bool
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class HealthReport:
    checks: tuple[Check, ...]
    info: tuple[tuple[str, Any], ...] = ()  # e.g. calls, max_calls, worker

    @property
    def ready(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def reasons(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": "ready" if self.ready else "unready",
            "ready": self.ready,
            "reasons": self.reasons,
            "checks": [c.to_json() for c in self.checks],
        }
        out.update(dict(self.info))
        return out


@dataclass(frozen=True)
class Target:
    """A provider endpoint to probe: where its WebSocket listens."""

    provider: str
    host: str
    port: int
    url: str = ""  # what the probe GETs: http(s), beside the WebSocket path

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def target_of(provider: str, url: str) -> Target:
    parts = urlsplit(url)
    if not parts.hostname:
        raise ConfigError(f"provider {provider}: URL has no host: {url!r}")
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 443)
    scheme = "https" if parts.scheme in ("wss", "https") else "http"
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    path = parts.path.rsplit("/", 1)[0] + "/"
    return Target(provider, parts.hostname, port, f"{scheme}://{host}:{port}{path}")


def provider_targets(loaded: Any, provider_override: str | None = None) -> list[Check | Target]:
    """What the plan's routes connect to: a Target per network provider, or a failed Check
    when a route's provider cannot even be built (a missing key)."""
    from telephony_bot import app
    from telephony_bot.dialplan.router import effective

    out: dict[str, Check | Target] = {}
    for r in loaded.plan.routes or [None]:
        eff = effective(loaded.plan, r)
        if provider_override is None:
            choices = [(eff.provider_name, eff.provider), *eff.fallbacks]  # each may serve
        else:
            choices = [(provider_override, app._override(loaded.plan, provider_override))]
        for name, pdef in choices:
            try:
                provider = app.build_provider(pdef, eff)
            except ConfigError as exc:
                out[name] = Check(f"provider {name}", False, str(exc))
                continue
            endpoint = getattr(provider, "endpoint", None)
            if endpoint is None:  # echo: nothing to reach
                continue
            try:
                out.setdefault(name, target_of(name, endpoint.url))
            except ConfigError as exc:
                out[name] = Check(f"provider {name}", False, str(exc))
    return list(out.values())


async def probe(target: Target, timeout: float = PROBE_TIMEOUT_S) -> Check:
    name = f"provider {target.provider}"
    where = target.where
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(
                target.url, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as resp:
                status = resp.status
    except TimeoutError:
        return Check(name, False, f"{where} did not answer within {timeout:g} s")
    except aiohttp.ClientConnectorError as exc:
        err = exc.os_error
        why = os.strerror(err.errno) if err.errno else (err.strerror or str(err))
        return Check(name, False, f"{where} unreachable: {why}")
    except aiohttp.ClientError as exc:
        return Check(name, False, f"{where} unreachable: {exc}")
    return Check(name, True, f"{where} answers (HTTP {status})")


def trunk_checks(states: list[dict[str, Any]]) -> list[Check]:
    """One check per trunk this worker registers: ready while registered. A trunk another
    worker registers (state `off`) is that worker's to report."""
    return [
        Check(f"trunk {s['trunk']}", s.get("state") == "registered", str(s.get("detail", "")))
        for s in states
        if s.get("state") != "off"
    ]


class HealthMonitor:
    """A worker's readiness: `sip()` says whether SIP listens; `trunks()` gives the trunks'
    registrations (each must be registered); `plans` is the PlanWatcher (None: a fixed
    setup); provider reachability is probed every `interval_s`."""

    def __init__(
        self,
        sip: Callable[[], Check],
        plans: Any | None = None,
        provider_override: str | None = None,
        info: Callable[[], dict[str, Any]] | None = None,
        interval_s: float = PROBE_INTERVAL_S,
        trunks: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> None:
        self._sip = sip
        self._trunks = trunks
        self.plans = plans
        self.provider_override = provider_override
        self._info = info
        self.interval_s = interval_s
        self._providers: list[Check] | None = None
        self.probed_at = 0.0

    def dialplan(self) -> Check:
        if self.plans is None:
            return Check("dialplan", True, "fixed setup")
        version = self.plans.current.version
        err = getattr(self.plans, "last_error", "")
        if err:
            first = err.strip().splitlines()[0] if err.strip() else err
            return Check(
                "dialplan",
                False,
                f"the file on disk does not load (calls still use the last good plan "
                f"{version}): {first}",
            )
        return Check("dialplan", True, f"version {version}")

    async def probe_providers(self) -> list[Check]:
        if self.plans is None:
            self._providers = []
            return []
        items = provider_targets(self.plans.current, self.provider_override)
        checks = [i for i in items if isinstance(i, Check)]
        targets = [i for i in items if isinstance(i, Target)]
        checks += await asyncio.gather(*(probe(t) for t in targets))
        if self._providers is not None:
            before = {c.name: c.ok for c in self._providers}
            for c in checks:
                if before.get(c.name) != c.ok:
                    _log.warning("provider reachability changed", provider=c.name, ok=c.ok,
                                 detail=c.detail)  # fmt: skip
        self._providers = checks
        self.probed_at = time.time()
        return checks

    def report(self) -> HealthReport:
        checks = [self._sip(), self.dialplan()]
        trunks = self._trunks() if self._trunks else []
        checks += trunk_checks(trunks)
        if self._providers is None:
            checks.append(Check("providers", False, "not probed yet"))
        else:
            checks += self._providers
        info = tuple(self._info().items()) if self._info else ()
        if trunks:
            info += (("trunks", trunks),)
        return HealthReport(tuple(checks), info)

    async def run(self) -> None:
        while True:
            try:
                await self.probe_providers()
            except Exception as exc:  # noqa: BLE001 - readiness must outlive a bad plan
                self._providers = [Check("providers", False, f"probe failed: {exc}")]
            await asyncio.sleep(self.interval_s)
