"""`WorkerControl`: the `events.control.Control` verbs on one worker's live calls.

MQTT commands and the admin API both call these; each answers with a `CommandResult`
instead of raising, so a refusal always carries a reason. Live state (state, transcript)
comes from the bus (`events.live.LiveCalls`); actions go to the call's `CallControl`
(`session/control.py`), the same verbs the model's tools use. The control sees its worker
only through `ControlledWorker`, so it does not import it.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, Protocol

from telephony_bot import log
from telephony_bot.events.bus import Bus
from telephony_bot.events.control import CommandResult
from telephony_bot.events.live import LiveCalls
from telephony_bot.session.control import REFUSED, CallControl
from telephony_bot.session.lifecycle import CallSession

_log = log.get("control")


class ControlledWorker(Protocol):
    """What the control needs of a worker: its bus, its live sessions, and originate."""

    @property
    def bus(self) -> Bus: ...

    @property
    def sessions(self) -> Mapping[str, CallSession]:
        """Live calls' sessions, by call_id."""
        ...

    async def originate(self, to: str, from_: str | None, route: str | None) -> CommandResult: ...


class WorkerControl:
    def __init__(self, worker: ControlledWorker) -> None:
        self.worker = worker
        self.live = LiveCalls(worker.bus)

    # ---- reading ----

    def calls(self) -> list[dict[str, Any]]:
        return self.live.calls()

    def call(self, call_id: str) -> dict[str, Any] | None:
        return self.live.call(call_id)

    # ---- acting on a call ----

    def _session(self, call_id: str) -> CallControl | None:
        s = self.worker.sessions.get(call_id)
        return s.control if s is not None else None

    async def hangup(self, call_id: str, reason: str = "") -> CommandResult:
        s = self._session(call_id)
        if s is None:
            return CommandResult(False, f"no live call {call_id!r} on this worker")
        _log.info("hangup requested", call_id=call_id, reason=reason)
        await s.hangup_now(f"command: {reason}" if reason else "command")
        return CommandResult(True, data={"call_id": call_id})

    async def transfer(self, call_id: str, target: str) -> CommandResult:
        s = self._session(call_id)
        if s is None:
            return CommandResult(False, f"no live call {call_id!r} on this worker")
        ok, detail = await s.transfer(target)  # checked, carried out, then hung up
        data = {"call_id": call_id, "target": target}
        if not ok and detail.startswith(REFUSED):  # not a target this call may go to
            return CommandResult(False, detail, {**data, "forbidden": True})
        return CommandResult(ok, "" if ok else f"transfer failed: {detail}",
                             {**data, "status": detail})  # fmt: skip

    async def say(self, call_id: str, text: str, *, interrupt: bool = False) -> CommandResult:
        s = self._session(call_id)
        if s is None:
            return CommandResult(False, f"no live call {call_id!r} on this worker")
        if not text.strip():
            return CommandResult(False, "text is empty")
        ok, detail = await s.say(text, interrupt=interrupt)
        if not ok:
            return CommandResult(False, detail)
        return CommandResult(True, data={"call_id": call_id, "queued": bool(detail)})

    async def inject(
        self,
        call_id: str,
        *,
        text: str | None = None,
        image: bytes | None = None,
        image_mime: str = "image/jpeg",
        role: str = "user",
    ) -> CommandResult:
        s = self._session(call_id)
        if s is None:
            return CommandResult(False, f"no live call {call_id!r} on this worker")
        if (text is None) == (image is None):
            return CommandResult(False, "give either text or image")
        url = None
        if image is not None:
            if not image_mime.startswith("image/"):
                return CommandResult(False, f"image mime must be image/..., got {image_mime!r}")
            url = f"data:{image_mime};base64,{base64.b64encode(image).decode()}"
        if role not in ("user", "system"):
            return CommandResult(False, f"role must be user or system, got {role!r}")
        ok, detail = await s.inject(text=text, image_data_url=url, role=role)
        return CommandResult(ok, detail, {"call_id": call_id} if ok else {})

    # ---- new calls ----

    async def originate(self, to: str, from_: str | None, route: str | None) -> CommandResult:
        return await self.worker.originate(to, from_, route)
