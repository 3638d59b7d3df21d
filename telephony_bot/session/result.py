"""What a call did, as the call record (CDR) and the `call ended` log line report it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class CallResult:
    call_id: str
    ended_by: str = "local"
    reason: str = ""  # the SIP status of the end, e.g. "200 Normal call clearing"
    sip_status: int = 0
    hangup_reason: str = ""  # why the engine hung up (a tool, a limit, a command), if it did
    # wall-clock times (seconds since the epoch); None: it did not happen
    setup_at: float = 0.0
    answered_at: float | None = None
    first_audio_at: float | None = None  # first bot audio queued to the caller (the greeting)
    ended_at: float = 0.0
    codec: str = ""
    dtmf: list[str] = field(default_factory=list)
    media: dict[str, int] = field(default_factory=dict)
    turns_user: int = 0
    turns_agent: int = 0
    barge_ins: int = 0
    tools: list[dict[str, Any]] = field(default_factory=list)
    failovers: list[dict[str, Any]] = field(default_factory=list)  # from, to, reason, ok
    stalls: list[dict[str, Any]] = field(default_factory=list)  # provider, kind, waited_ms
    transfers: list[dict[str, Any]] = field(default_factory=list)  # target, by, ok, status, reason
    usage: dict[str, Any] = field(default_factory=dict)

    @property
    def end_reason(self) -> str:
        """Why the call ended, in words: the engine's own reason, else the SIP status."""
        return self.hangup_reason or self.reason
