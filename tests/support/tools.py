"""Python tools used by the integration tests' dialplans (as an integrator would write them)."""

from __future__ import annotations

import asyncio
from typing import Any


async def slow_lookup(day: str) -> dict[str, Any]:
    """A back-office lookup that takes 1.5 s: long enough that the engine must fill."""
    await asyncio.sleep(1.5)
    return {"day": day, "slots": ["9:00", "11:30"]}


def opening_hours() -> dict[str, Any]:
    """A sync tool: the engine runs it in a thread."""
    return {"open": "from nine to five"}


async def track_parcel(order: str) -> dict[str, Any]:
    """A carrier's tracking lookup that takes 12 s: far past a realtime model's tool window."""
    await asyncio.sleep(12)
    return {"order": order, "status": "out for delivery", "eta": "before noon"}
