"""What integrators can ask of a running worker, whichever way they ask (MQTT commands, the
admin HTTP API). Implemented by the worker; every verb answers with a `CommandResult`
instead of raising, so a refusal always carries a reason the caller can show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class CommandResult:
    ok: bool
    reason: str = ""  # why it was refused or failed; empty when ok
    data: dict[str, Any] = field(default_factory=dict)  # e.g. {"call_id": ...} for originate

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok}
        if self.reason:
            out["reason"] = self.reason
        out.update(self.data)
        return out


class Control(Protocol):
    def calls(self) -> list[dict[str, Any]]:
        """Live calls: call_id, called, caller, route, plan_version, state, started_at,
        answered_at, duration_s, transcript (list of {role, text, ts, interrupted})."""
        ...

    def call(self, call_id: str) -> dict[str, Any] | None: ...

    async def hangup(self, call_id: str, reason: str = "") -> CommandResult: ...

    async def transfer(self, call_id: str, target: str) -> CommandResult: ...

    async def say(self, call_id: str, text: str, *, interrupt: bool = False) -> CommandResult:
        """Speak `text` now (`interrupt`), or after the current sentence."""
        ...

    async def inject(
        self, call_id: str, *, text: str | None = None, image: bytes | None = None,
        image_mime: str = "image/jpeg", role: str = "user",
    ) -> CommandResult:  # fmt: skip
        """Add a conversation item (text as `role` "user" or "system", or an image)."""
        ...

    async def originate(self, to: str, from_: str | None, route: str | None) -> CommandResult: ...
