"""Read the front door's state: JSON-RPC (Kamailio `jsonrpcs`) over its datagram socket.

`dispatcher_list(run_dir)` asks the running Kamailio for `dispatcher.list` and returns one
`WorkerState` per worker: whether it is active (answers OPTIONS keepalives), how many calls
the dispatcher counts on it, its maximum, and the keepalive latency. `refusals(run_dir)`:
the INVITEs it refused, by reason (flood, not_allowed, auth_failed, malformed, ...).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telephony_bot.errors import TelephonyBotError

RPC_SOCKET = "kamailio_rpc.sock"
_STATES = {"A": "active", "I": "inactive", "T": "trying", "D": "disabled"}
_ids = itertools.count(1)


class FrontDoorUnavailableError(TelephonyBotError):
    """Kamailio does not answer on its control socket (not running, or another run dir)."""


@dataclass(frozen=True)
class WorkerState:
    uri: str
    duid: str
    flags: str  # Kamailio's two letters, e.g. "AP" (active, probed)
    load: int  # calls the dispatcher counts on this worker
    maxload: int
    latency_ms: float  # keepalive round trip, moving average
    timeouts: int  # keepalives that timed out

    @property
    def state(self) -> str:
        return _STATES.get(self.flags[:1], self.flags)

    @property
    def probing(self) -> bool:
        return self.flags[1:2] == "P"


def call(run_dir: Path, method: str, *params: Any, timeout: float = 2.0) -> Any:
    """One JSON-RPC request; returns `result` or raises FrontDoorUnavailableError."""
    server = run_dir / RPC_SOCKET
    if not server.exists():
        raise FrontDoorUnavailableError(f"no front door control socket at {server}")
    client = run_dir / f"rpc-client-{os.getpid()}-{next(_ids)}.sock"
    req = {"jsonrpc": "2.0", "method": method, "id": 1}
    if params:
        req["params"] = list(params)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.bind(str(client))
            s.settimeout(timeout)
            s.sendto(json.dumps(req).encode(), str(server))
            data = s.recv(1 << 20)
        except OSError as exc:  # refused, timed out, socket gone
            raise FrontDoorUnavailableError(f"front door RPC {method} failed: {exc}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                client.unlink()
    try:
        reply = json.loads(data)
    except json.JSONDecodeError as exc:
        raise FrontDoorUnavailableError(f"front door RPC {method}: bad reply ({exc})") from None
    if "error" in reply:
        raise FrontDoorUnavailableError(f"front door RPC {method}: {reply['error']}")
    return reply.get("result")


def parse_dispatcher_list(result: Any) -> list[WorkerState]:
    """Flatten `dispatcher.list` (set 1) into worker states, in duid order (w0, w1, ...)."""
    out = []
    for record in (result or {}).get("RECORDS", []) or []:
        targets = record.get("SET", {}).get("TARGETS", []) or []
        for t in targets:
            d = t.get("DEST", {})
            attrs = d.get("ATTRS", {}) or {}
            latency = d.get("LATENCY", {}) or {}
            runtime = d.get("RUNTIME", {}) or {}
            out.append(
                WorkerState(
                    uri=str(d.get("URI", "")),
                    duid=str(attrs.get("DUID") or ""),
                    flags=str(d.get("FLAGS", "")),
                    load=int(runtime.get("DLGLOAD", 0) or 0),
                    maxload=int(attrs.get("MAXLOAD", 0) or 0),
                    latency_ms=float(latency.get("AVG", 0) or 0),
                    timeouts=int(latency.get("TIMEOUT", 0) or 0),
                )
            )
    return sorted(out, key=lambda w: _duid_order(w.duid))


def _duid_order(duid: str) -> tuple[int, str]:
    digits = duid[1:] if duid[:1] == "w" else ""
    return (int(digits), duid) if digits.isdigit() else (1 << 30, duid)


def dispatcher_list(run_dir: Path, timeout: float = 2.0) -> list[WorkerState]:
    return parse_dispatcher_list(call(run_dir, "dispatcher.list", timeout=timeout))


def refusals(run_dir: Path, timeout: float = 2.0) -> dict[str, int]:
    """INVITEs the front door refused since it started, by reason (its htable `refused`)."""
    return parse_refusals(call(run_dir, "htable.dump", "refused", timeout=timeout))


def parse_refusals(result: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for entry in result or []:
        for item in entry.get("slot", []) or []:
            with contextlib.suppress(TypeError, ValueError):
                out[str(item["name"])] = int(item["value"])
    return dict(sorted(out.items()))


def prometheus_refusals(counts: dict[str, int]) -> bytes:
    """The front door's refusals as Prometheus text (`telephony_bot_frontdoor_invites_refused
    _total{reason}`), appended to the supervisor's /metrics."""
    name = "telephony_bot_frontdoor_invites_refused_total"
    lines = [f"# HELP {name} INVITEs the front door refused before any worker, by reason",
             f"# TYPE {name} counter"]  # fmt: skip
    lines += [f'{name}{{reason="{k}"}} {v}' for k, v in sorted(counts.items()) if k.isidentifier()]
    return ("\n".join(lines) + "\n").encode()


def status_table(workers: list[WorkerState]) -> str:
    """What `telephony-bot frontdoor status` prints."""
    rows = [("worker", "uri", "state", "calls", "keepalive ms", "timeouts")]
    for w in workers:
        state = w.state + ("" if w.probing else " (not probed)")
        rows.append(
            (
                w.duid,
                w.uri,
                state,
                f"{w.load}/{w.maxload}",
                f"{w.latency_ms:.1f}",
                str(w.timeouts),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    active = sum(1 for w in workers if w.state == "active")
    load = sum(w.load for w in workers)
    cap = sum(w.maxload for w in workers if w.state == "active")
    lines.append(f"{active}/{len(workers)} workers active; {load} calls; capacity {cap}")
    return "\n".join(lines)
