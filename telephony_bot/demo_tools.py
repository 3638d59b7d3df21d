"""The tools the example dialplan uses (a stand-in for an integrator's back office)."""

from __future__ import annotations

from typing import Any


def opening_hours() -> dict[str, Any]:
    return {"text": "Monday to Friday from eight in the morning to six in the evening"}
