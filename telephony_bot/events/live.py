"""Live calls as the bus tells them: state, times and the transcript so far.

A synchronous bus listener (cheap, never raises) keeps one entry per call from
`call.started` to `call.ended`; `Control.calls()` and the admin API read it.
"""

from __future__ import annotations

import time
from typing import Any

from telephony_bot.events.bus import Bus, Event

MAX_TRANSCRIPT = 200  # turns kept per live call (oldest dropped)

_STATES = {
    "call.answered": "answered",
    "transfer.started": "transferring",
    "transfer.failed": "answered",
    "transfer.completed": "transferred",
}


class LiveCalls:
    def __init__(self, bus: Bus | None = None) -> None:
        self._calls: dict[str, dict[str, Any]] = {}
        if bus is not None:
            bus.listen(self.on_event)

    def on_event(self, ev: Event) -> None:
        d = ev.data
        if ev.type == "call.started":
            self._calls[ev.call_id] = {
                "call_id": ev.call_id,
                "direction": d.get("direction", "inbound"),
                "called": d.get("called", ""),
                "caller": d.get("caller", ""),
                "trunk": d.get("trunk"),
                "route": d.get("route"),
                "plan_version": d.get("plan_version", ""),
                "state": "ringing",
                "started_at": ev.ts,
                "answered_at": None,
                "transcript": [],
            }
            return
        entry = self._calls.get(ev.call_id)
        if entry is None:
            return
        if ev.type == "call.ended":
            del self._calls[ev.call_id]
        elif ev.type in ("turn.user", "turn.agent"):
            turns = entry["transcript"]
            turns.append(
                {
                    "role": "user" if ev.type == "turn.user" else "agent",
                    "text": d.get("text", ""),
                    "ts": ev.ts,
                    "interrupted": bool(d.get("interrupted", False)),
                }
            )
            if len(turns) > MAX_TRANSCRIPT:
                del turns[0]
        elif ev.type in _STATES:
            entry["state"] = _STATES[ev.type]
            if ev.type == "call.answered":
                entry["answered_at"] = ev.ts

    def __contains__(self, call_id: str) -> bool:
        return call_id in self._calls

    def __len__(self) -> int:
        return len(self._calls)

    def call(self, call_id: str) -> dict[str, Any] | None:
        entry = self._calls.get(call_id)
        return None if entry is None else _snapshot(entry)

    def calls(self) -> list[dict[str, Any]]:
        return [_snapshot(e) for e in self._calls.values()]


def _snapshot(entry: dict[str, Any]) -> dict[str, Any]:
    out = dict(entry)
    out["transcript"] = [dict(t) for t in entry["transcript"]]
    since = entry["answered_at"] or entry["started_at"]
    out["duration_s"] = round(max(0.0, time.time() - since), 1) if entry["answered_at"] else 0.0
    return out
