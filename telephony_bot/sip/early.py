"""Timers of a call that has not settled yet (pure): an INVITE nobody answers, and a 200 OK
the caller never ACKs. Without them such a call holds one of the worker's few lines until
PJSIP's own timer (32 s for a missing ACK; never for a call left ringing) — one sender
sending INVITEs it never completes could keep every line busy.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CallTimers:
    ack_timeout_s: float = 4.0  # 200 OK sent → ACK
    answer_timeout_s: float = 30.0  # INVITE received → 200 OK sent


@dataclass
class Timing:
    """One call's clock (monotonic seconds), kept by its PJSIP callbacks."""

    created: float
    outbound: bool = False
    answered_at: float | None = None  # our 200 OK went out (waiting for the ACK)
    confirmed: bool = False  # ACK received (or, outbound, the far end answered)
    expired: bool = False  # a timer ended it already


def overdue(t: Timing, timers: CallTimers, now: float) -> tuple[int, str, str] | None:
    """(status, reason, log message) when the call must end now, else None."""
    if t.expired or t.confirmed or t.outbound:
        return None
    if t.answered_at is not None:
        if now - t.answered_at > timers.ack_timeout_s:
            return 0, "", "call ended: no ACK for the 200 OK"
        return None
    if now - t.created > timers.answer_timeout_s:
        return 408, "Request Timeout", "call ended: not answered in time"
    return None
