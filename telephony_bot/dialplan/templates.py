"""Instruction templating: `{caller}`, `{called}`, `{header.X-Foo}`, `{date}`, `{time}`,
`{weekday}` in a route's instructions and greeting, filled in per call.

A placeholder this module does not know is left as it is (the loader warns about it when
the plan is loaded); `{{` and `}}` stand for literal braces. Text like a JSON example
(`{"a": 1}`) is not a placeholder and is left alone.

`substitute` is the placeholder syntax on its own, for a filler with more values than a call's
(the offline engine's flow brain: slots, tool results).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime

KNOWN = ("caller", "called", "date", "time", "weekday")
HEADER_PREFIX = "header."

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_.\-]*)\}")


def placeholders(template: str) -> list[str]:
    """Every placeholder name in `template`, in order (without braces)."""
    return [m.group(1) for m in _PLACEHOLDER.finditer(template) if m.group(1)]


def sole_placeholder(text: str) -> str | None:
    """The placeholder's name when `text` (stripped) is exactly one placeholder, else None."""
    m = _PLACEHOLDER.fullmatch(text.strip())
    return m.group(1) if m and m.group(1) else None


def substitute(template: str, value: Callable[[str], str]) -> str:
    """`template` with every placeholder replaced by `value(name)`, `{{` and `}}` by braces."""

    def fill(m: re.Match[str]) -> str:
        text = m.group(0)
        if text == "{{":
            return "{"
        if text == "}}":
            return "}"
        return value(m.group(1))

    return _PLACEHOLDER.sub(fill, template)


def clock(name: str, now: datetime) -> str | None:
    """`{date}` (ISO), `{time}` (HH:MM) or `{weekday}` (English day name) as `now` shows
    them; None for any other name."""
    if name == "date":
        return now.date().isoformat()
    if name == "time":
        return now.strftime("%H:%M")
    if name == "weekday":
        return now.strftime("%A")
    return None


def is_known(name: str) -> bool:
    return name in KNOWN or (name.startswith(HEADER_PREFIX) and len(name) > len(HEADER_PREFIX))


def unknown_placeholders(template: str) -> list[str]:
    """Placeholders `render` would leave untouched (typos, most likely)."""
    return [p for p in placeholders(template) if not is_known(p)]


def render(
    template: str,
    *,
    caller: str,
    called: str,
    headers: Mapping[str, str],
    now: datetime,
) -> str:
    """Fill the call's values into `template`.

    `{header.X-Foo}` looks the SIP header up case-insensitively; a header the call does not
    carry renders as "". `{date}` is ISO (2026-03-28), `{time}` is HH:MM, `{weekday}` the
    English day name, all as `now` shows them (pass it in the route's timezone).
    """
    lowered = {k.lower(): v for k, v in headers.items()}

    def value(name: str) -> str:
        if name == "caller":
            return caller
        if name == "called":
            return called
        if (text := clock(name, now)) is not None:
            return text
        if name.startswith(HEADER_PREFIX) and len(name) > len(HEADER_PREFIX):
            return lowered.get(name[len(HEADER_PREFIX) :].lower(), "")
        return "{" + name + "}"

    return substitute(template, value)
