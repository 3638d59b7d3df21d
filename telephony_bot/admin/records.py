"""The last call records (CDR JSON lines) for the admin API, read from the end of the file so
a large CDR file costs no more than the records asked for."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

_BLOCK = 64 * 1024


def last_records(path: str | Path, limit: int = 50) -> list[dict[str, Any]]:
    """Up to `limit` records, newest first. A missing file is no records; a line that is not
    a JSON object (a torn last write) is skipped."""
    if limit <= 0:
        return []
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return []
    with f:
        end = f.seek(0, os.SEEK_END)
        data = b""
        pos = end
        while pos > 0 and data.count(b"\n") <= limit:
            step = min(_BLOCK, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    lines = data.splitlines()
    if pos > 0:
        lines = lines[1:]  # the first line may be cut
    out: list[dict[str, Any]] = []
    for line in reversed(lines):
        if len(out) >= limit:
            break
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out
