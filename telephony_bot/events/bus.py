"""In-process fan-out of typed call events.

`Bus.publish()` is synchronous, O(sinks) and never waits: every subscriber has its own
bounded queue, and when a subscriber stalls its oldest events are dropped and counted
(`Subscription.dropped`) rather than slowing the call that published them.

Event types (`Event.type`) and their `data`:
- `call.started`      called, caller, trunk (the trunk it came through, or null), route,
                      plan_version, headers (trimmed)
- `call.answered`     codec
- `turn.user`         text, item_id
- `turn.agent`        text (as the caller heard it), item_id, interrupted, played_ms;
                      generated_text (all the model had said) when the reply was cut short
                      (texts with the route's `redact` patterns masked: redact.py)
- `barge_in`          by ("caller" | "provider" | "dtmf": a key pressed), played_ms, dropped_ms
- `tool.called`       tool, tool_call_id, arguments (parameters marked sensitive: "***")
- `tool.pending`      tool, tool_call_id, after_ms, declared_async: the result will follow
- `tool.result`       tool, tool_call_id, ok, duration_ms, error (sensitive values "***"),
                      output_chars, pending,
                      late (the call had ended: logged and published, not given to a model)
- `transfer.started`  target;  `transfer.completed` / `transfer.failed`  target, status, reason
- `transfer.refused`  target, by, reason: a target the call's transfer rules do not allow
                      (no REFER was sent)
- `dtmf`              digit, method (every key as it is pressed; "***" with dtmf.mask)
- `dtmf.input`        digits, terminator, ended ("terminator" | "timeout" | "max_digits"),
                      to_model: one burst of keys, as the model is told of it (session/dtmf.py;
                      digits "***" with dtmf.mask)
- `provider.error`    code, message, retryable, fatal;  `provider.reconnected`  attempt
- `provider.failover` from, to, reason, ok, ms: the route's next provider took the call over
  (from == to: a new session of the same provider, the route having no other)
- `provider.stalled`  provider, kind ("no_reply" | "audio_gap"), waited_ms: it stopped answering
- `call.ended`        ended_by, reason, sip_status, duration_s
- `cdr`               the call's record (events/cdr.py), published once after call.ended
- `trunk.registration` (no call: call_id "") a trunk's registration changed: trunk, state
                      (registering | registered | failed | unregistered), status_code, reason,
                      expires_s, failures, retry_in_s, detail (sip/registration.py)
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

EVENT_TYPES = frozenset(
    {
        "call.started",
        "call.answered",
        "turn.user",
        "turn.agent",
        "barge_in",
        "tool.called",
        "tool.pending",
        "tool.result",
        "transfer.started",
        "transfer.completed",
        "transfer.failed",
        "transfer.refused",
        "dtmf",
        "dtmf.input",
        "provider.error",
        "provider.reconnected",
        "provider.failover",
        "provider.stalled",
        "call.ended",
        "cdr",
        "trunk.registration",
    }
)

_seq = itertools.count(1)


@dataclass(frozen=True)
class Event:
    type: str
    call_id: str
    data: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)  # wall clock, seconds since the epoch
    seq: int = field(default_factory=lambda: next(_seq))  # per process, increasing

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "call_id": self.call_id, "ts": self.ts, "seq": self.seq,
                **self.data}  # fmt: skip


class Subscription:
    """One subscriber's bounded queue. Drop-oldest when full; never blocks the publisher."""

    def __init__(self, bus: Bus, maxsize: int, name: str) -> None:
        self._bus = bus
        self.name = name
        self.maxsize = maxsize
        self._q: collections.deque[Event] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self.dropped = 0
        self.closed = False

    def _put(self, ev: Event) -> None:
        if len(self._q) >= self.maxsize:
            self._q.popleft()
            self.dropped += 1
            self._bus.dropped_total += 1
        self._q.append(ev)
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def get_nowait(self) -> Event | None:
        return self._q.popleft() if self._q else None

    def pending(self) -> int:
        return len(self._q)

    async def get(self) -> Event:
        while not self._q:
            if self.closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._q.popleft()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Event]:
        while True:
            try:
                yield await self.get()
            except StopAsyncIteration:
                return

    def close(self) -> None:
        self.closed = True
        self._bus._subs.discard(self)
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)


class Bus:
    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self._listeners: list[Callable[[Event], None]] = []
        self.published_total = 0
        self.dropped_total = 0

    def subscribe(self, name: str, maxsize: int = 1000) -> Subscription:
        sub = Subscription(self, maxsize, name)
        self._subs.add(sub)
        return sub

    def listen(self, fn: Callable[[Event], None]) -> None:
        """A synchronous listener (metrics, live call state): must be cheap and not raise."""
        self._listeners.append(fn)

    def publish(self, ev: Event) -> None:
        self.published_total += 1
        for fn in self._listeners:
            try:
                fn(ev)
            except Exception:  # noqa: BLE001, S110 - a broken listener must not touch the call
                pass
        for sub in self._subs:
            sub._put(ev)

    def emit(self, type_: str, call_id: str, **data: Any) -> Event:
        ev = Event(type_, call_id, data)
        self.publish(ev)
        return ev
