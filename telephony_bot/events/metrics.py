"""Prometheus metrics, fed from the event bus.

`Metrics.on_event` is a cheap synchronous bus listener (`bus.listen(metrics.on_event)`):
every number here comes from the call events a worker publishes, so the session core only
has to put a value into an event (e.g. `turn.agent`'s `latency_ms`) to have it measured.

Several worker processes: `telephony-bot serve` gives every worker the same fresh
`PROMETHEUS_MULTIPROC_DIR` (prometheus_client's multiprocess mode, chosen when
prometheus_client is first imported, so the variable must be set before the worker starts);
`render()` then aggregates all workers' files. Gauges use `livesum`: a dead worker's calls
stop counting once the supervisor calls `mark_process_dead(pid)`.

Metric names (all prefixed `telephony_bot_`):
- `calls_active{worker}`, `worker_capacity{worker}`: load per worker (sum them for the machine)
- `calls_total{result}`: ended calls by result (see `call_result`)
- `turn_latency_seconds`: caller's end of speech → first bot audio of the reply, as the
  engine sees it (`turn.agent`'s `latency_ms`: the last caller frame its VAD called speech →
  the reply's first audio queued). The network and both jitter buffers come on top: one
  test call measured 433 ms here and 600 ms on the caller's side of the wire.
- `barge_in_latency_seconds`: caller's voice onset over the bot → bot audio cleared
  (`barge_in`'s `latency_ms`; barge-ins the provider's own VAD decided carry none)
- `provider_errors_total{code}`, `provider_reconnects_total`
- `provider_failovers_total{to,ok}`: calls handed to the route's next provider
- `provider_stalls_total{provider,kind}`: providers that stopped answering mid-call
- `tool_duration_seconds{tool,ok}`: tool run time
- `turns_total{role}`: final transcript turns
- `bus_events_dropped_total`: events a slow subscriber (MQTT, an admin page) lost
- `playout_underruns_total`: times the bot's audio ran dry mid-reply (a gap the caller heard)
- `trunk_registered{trunk}`: 1 while the trunk's registration holds, 0 otherwise (from the
  worker that registers it; `trunk.registration` events)
- `trunk_registration_failures_total{trunk,status}`: failed REGISTERs by the final status
- `invites_refused_total{reason}`: INVITEs answered before any call was set up, by
  `telephony_bot.admission.REASONS` (not_allowed, auth_failed, rate_source, setup_budget,
  busy, ...) and `malformed` (messages PJSIP could not parse); behind `serve`'s front door
  also `frontdoor_invites_refused_total{reason}` (what Kamailio refused, `frontdoor/rpc.py`)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from telephony_bot.events.bus import Bus, Event

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

TURN_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0)
BARGE_IN_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.0)
TOOL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)

# Result labels of calls_total: a closed set, so dashboards can rely on them.
RESULTS = ("completed", "transferred", "error", "timeout", "rejected")


def call_result(data: dict[str, Any], transferred: bool = False) -> str:
    """The `result` label of an ended call, from `call.ended`'s data.

    An explicit `result` field wins when it is one of RESULTS; otherwise: a successful
    transfer → transferred; a provider/session failure → error; max duration or idle →
    timeout; a call refused before answer (4xx/5xx) → rejected; any other hang-up, by the
    caller or the bot, → completed.
    """
    explicit = data.get("result")
    if explicit in RESULTS:
        return str(explicit)
    if transferred:
        return "transferred"
    reason = str(data.get("reason") or "").lower()
    if "transferred" in reason:
        return "transferred"
    if any(w in reason for w in ("error", "provider unavailable", "apology")):
        return "error"
    if any(w in reason for w in ("max_call_seconds", "idle", "timeout")):
        return "timeout"
    if data.get("answered") is False or reason.startswith(("404", "486", "503", "rejected")):
        return "rejected"
    return "completed"


class Metrics:
    """The engine's metrics on `registry` (the process default unless a test gives one)."""

    def __init__(self, worker: int | str = 0, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else REGISTRY
        self.registry = reg
        self.worker = str(worker)
        p = "telephony_bot_"
        self.calls_active = Gauge(
            p + "calls_active", "Calls in progress", ["worker"],
            registry=reg, multiprocess_mode="livesum",
        )  # fmt: skip
        self.worker_capacity = Gauge(
            p + "worker_capacity", "Calls a worker can carry at once", ["worker"],
            registry=reg, multiprocess_mode="livesum",
        )  # fmt: skip
        self.calls_total = Counter(p + "calls", "Ended calls by result", ["result"], registry=reg)
        self.turn_latency = Histogram(
            p + "turn_latency_seconds",
            "Caller's end of speech to the first bot audio of the reply",
            buckets=TURN_BUCKETS, registry=reg,
        )  # fmt: skip
        self.barge_in_latency = Histogram(
            p + "barge_in_latency_seconds",
            "Caller's voice onset over the bot to the bot's audio stopping",
            buckets=BARGE_IN_BUCKETS, registry=reg,
        )  # fmt: skip
        self.provider_errors = Counter(
            p + "provider_errors", "Errors reported by the provider", ["code"], registry=reg
        )
        self.provider_reconnects = Counter(
            p + "provider_reconnects", "Provider sessions re-established", registry=reg
        )
        self.provider_failovers = Counter(
            p + "provider_failovers",
            "Calls handed to the route's next provider",
            ["to", "ok"],
            registry=reg,
        )
        self.provider_stalls = Counter(
            p + "provider_stalls",
            "Providers that stopped answering mid-call (no reply, or a reply's audio stopped)",
            ["provider", "kind"],
            registry=reg,
        )
        self.tool_duration = Histogram(
            p + "tool_duration_seconds", "Tool run time", ["tool", "ok"],
            buckets=TOOL_BUCKETS, registry=reg,
        )  # fmt: skip
        self.turns = Counter(p + "turns", "Final transcript turns", ["role"], registry=reg)
        self.bus_dropped = Counter(
            p + "bus_events_dropped", "Events dropped for slow bus subscribers", registry=reg
        )
        self.underruns = Counter(
            p + "playout_underruns", "Bot audio ran dry mid-reply (a gap heard)", registry=reg
        )
        self.transfers_refused = Counter(
            p + "transfers_refused",
            "Transfers to a target the call may not go to (no REFER sent): toll fraud tries",
            ["by"],
            registry=reg,
        )
        self.trunk_registered = Gauge(
            p + "trunk_registered", "1 while the trunk's registration holds", ["trunk"],
            registry=reg, multiprocess_mode="livemax",
        )  # fmt: skip
        self.trunk_failures = Counter(
            p + "trunk_registration_failures", "Failed trunk registrations by final status",
            ["trunk", "status"], registry=reg,
        )  # fmt: skip
        self.invites_refused = Counter(
            p + "invites_refused",
            "INVITEs refused before a call was set up, by reason",
            ["reason"],
            registry=reg,
        )
        self._active: set[str] = set()
        self._transferred: set[str] = set()
        self._bus: Bus | None = None
        self._dropped_seen = 0
        self._refusals: Callable[[], dict[str, int]] | None = None
        self._refused_seen: dict[str, int] = {}
        self.calls_active.labels(self.worker).set(0)

    def attach(
        self,
        bus: Bus,
        capacity: int | None = None,
        refusals: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        """Listen to `bus`; `capacity` is the worker's maximum of concurrent calls;
        `refusals()` the carrier's running count of refused INVITEs by reason."""
        self._bus = bus
        self._refusals = refusals
        self._dropped_seen = bus.dropped_total
        if capacity is not None:
            self.worker_capacity.labels(self.worker).set(capacity)
        bus.listen(self.on_event)

    def sync(self) -> None:
        """Bring counters kept outside events (bus drops, refused INVITEs) up to date."""
        if self._refusals is not None:
            for reason, total in self._refusals().items():
                new = total - self._refused_seen.get(reason, 0)
                if new > 0:
                    self.invites_refused.labels(reason).inc(new)
                    self._refused_seen[reason] = total
        bus = self._bus
        if bus is None:
            return
        new = bus.dropped_total - self._dropped_seen
        if new > 0:
            self.bus_dropped.inc(new)
            self._dropped_seen = bus.dropped_total

    def on_event(self, ev: Event) -> None:
        self.sync()
        d = ev.data
        t = ev.type
        if t == "call.started":
            if ev.call_id not in self._active:
                self._active.add(ev.call_id)
                self.calls_active.labels(self.worker).inc()
        elif t == "call.ended":
            if ev.call_id in self._active:
                self._active.discard(ev.call_id)
                self.calls_active.labels(self.worker).dec()
            result = call_result(d, ev.call_id in self._transferred)
            self._transferred.discard(ev.call_id)
            self.calls_total.labels(result).inc()
            underruns = _number(d.get("underruns", (d.get("media") or {}).get("underruns")))
            if underruns:
                self.underruns.inc(underruns)
        elif t in ("turn.user", "turn.agent"):
            self.turns.labels("user" if t == "turn.user" else "agent").inc()
            latency = _number(d.get("latency_ms"))
            if t == "turn.agent" and latency is not None:
                self.turn_latency.observe(latency / 1000)
        elif t == "barge_in":
            latency = _number(d.get("latency_ms"))
            if latency is not None:
                self.barge_in_latency.observe(latency / 1000)
        elif t == "tool.result":
            ms = _number(d.get("duration_ms"))
            if ms is not None:
                ok = "true" if d.get("ok") else "false"
                self.tool_duration.labels(str(d.get("tool") or "?"), ok).observe(ms / 1000)
        elif t == "transfer.completed":
            self._transferred.add(ev.call_id)
        elif t == "transfer.refused":
            self.transfers_refused.labels(str(d.get("by") or "?")).inc()
        elif t == "provider.error":
            self.provider_errors.labels(str(d.get("code") or "unknown")).inc()
        elif t == "provider.reconnected":
            self.provider_reconnects.inc()
        elif t == "provider.failover":
            ok = "true" if d.get("ok") else "false"
            self.provider_failovers.labels(str(d.get("to") or "?"), ok).inc()
        elif t == "trunk.registration":
            trunk, state = str(d.get("trunk") or "?"), d.get("state")
            if state == "off":
                return  # another worker registers it
            self.trunk_registered.labels(trunk).set(1 if state == "registered" else 0)
            if state == "failed":
                self.trunk_failures.labels(trunk, str(d.get("status_code") or 0)).inc()
        elif t == "provider.stalled":
            kind = str(d.get("kind") or "?")
            self.provider_stalls.labels(str(d.get("provider") or "?"), kind).inc()


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if v >= 0 else None


def multiproc_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def render(registry: CollectorRegistry | None = None) -> tuple[bytes, str]:
    """The Prometheus text exposition: every worker's metrics in multiprocess mode, else
    this process's `registry`."""
    path = multiproc_dir()
    if path and registry is None:
        from prometheus_client import multiprocess

        reg = CollectorRegistry()
        multiprocess.MultiProcessCollector(reg, path=path)
        return generate_latest(reg), CONTENT_TYPE_LATEST
    return generate_latest(registry if registry is not None else REGISTRY), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """A worker exited: drop its live gauges (its counters and histograms stay summed)."""
    if multiproc_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
