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


def customer_by_number(number: str) -> dict[str, Any]:
    """A customer lookup that knows one customer number, "1234": a test that reaches it
    with exactly those digits (a string) gets the name."""
    if number != "1234":
        raise ValueError(f"no customer with the number {number!r}")
    return {"name": "Anna"}


async def track_parcel(order: str) -> dict[str, Any]:
    """A carrier's tracking lookup that takes 12 s: far past a realtime model's tool window."""
    await asyncio.sleep(12)
    return {"order": order, "status": "out for delivery", "eta": "before noon"}


async def slow_customer(phone: str) -> dict[str, Any]:
    """A caller lookup by phone number that takes 3 s: a caller may well talk meanwhile."""
    await asyncio.sleep(3)
    return {"first_name": "Maria", "id": "C-1001", "phone": phone}
