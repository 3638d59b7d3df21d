"""A response in progress and its output items, as a server keeps them."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

from telephony_bot.realtime.dialect import Dialect
from telephony_bot.realtime.server_events import Event, output_item


class Ended(Exception):
    """The response was cancelled (or the connection went away): stop streaming it quietly."""


@dataclass(kw_only=True)
class OutItem:
    """One output item of a response (assistant audio message or function call)."""

    id: str
    type: str  # message | function_call
    output_index: int
    status: str = "in_progress"
    transcript: str = ""
    transcript_deltas: int = 0
    audio_ms: float = 0.0  # audio sent (or kept after a truncation)
    part_added: bool = False
    audio_done: bool = False
    transcript_done: bool = False
    part_done: bool = False
    item_done: bool = False
    call_id: str = ""
    name: str = ""
    arguments: str = ""
    arguments_done: bool = False
    truncated: bool = False
    wire: Any = None  # the server's encoder for the item's audio, if it keeps one

    def as_item(self, dialect: Dialect) -> Event:
        return output_item(
            self.id,
            self.type,
            self.status,
            dialect,
            transcript=self.transcript if self.part_added else None,
            call_id=self.call_id,
            name=self.name,
            arguments=self.arguments,
        )

    def truncate(self, audio_end_ms: int) -> None:
        """The caller heard only `audio_end_ms`: the real API drops the item's transcript."""
        self.truncated = True
        self.transcript = ""


@dataclass(kw_only=True)
class Resp:
    """A response: its items, and whether it has ended (then it sends nothing more)."""

    id: str
    input_audio_ms: float = 0.0  # caller audio since the previous response
    items: list[OutItem] = field(default_factory=list)
    ended: bool = False
    ended_evt: asyncio.Event = field(default_factory=asyncio.Event)
    cancel: threading.Event = field(default_factory=threading.Event)  # for worker threads
    task: asyncio.Task[None] | None = None

    def end(self) -> None:
        self.ended = True
        self.ended_evt.set()
        self.cancel.set()
