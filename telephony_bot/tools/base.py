"""What a tool is, what it returns, and what it may do to the call."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from telephony_bot.providers.base import ToolSpec


class ToolError(Exception):
    """A tool failed; the message is given to the model as the tool's output."""


class CallControl(Protocol):
    """The call actions a builtin tool may take (implemented by the session core)."""

    call_id: str

    async def hangup_after_playout(self, reason: str) -> None: ...

    async def transfer(self, target: str, *, by: Literal["model"]) -> tuple[bool, str]: ...

    async def send_dtmf(self, digits: str) -> None: ...


class Tool(Protocol):
    spec: ToolSpec
    timeout_s: float
    # The model is told at once that the result will follow, and is given it later
    # (dialplan `async: true`; see session/result_waits.py).
    is_async: bool

    async def run(self, args: dict[str, Any], call: CallControl) -> Any: ...


@dataclass(frozen=True)
class ToolResult:
    call_id: str  # the model's function call id
    name: str
    output: str  # JSON text given to the model
    ok: bool
    duration_ms: float
    error: str = ""
    filler_played: bool = False


@dataclass
class ToolDefaults:
    timeout_s: float = 8.0
    filler_after_ms: int = 700


def to_output(value: Any) -> str:
    """A tool's return value as the text the model sees (JSON unless already a string)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


@dataclass
class FunctionTool:
    """A tool backed by an async callable `fn(args, call) -> value`."""

    spec: ToolSpec
    fn: Any
    timeout_s: float = 8.0
    meta: dict[str, Any] = field(default_factory=dict)
    is_async: bool = False

    async def run(self, args: dict[str, Any], call: CallControl) -> Any:
        return await self.fn(args, call)
