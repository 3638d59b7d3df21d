"""Structured logging: structlog, JSON or console, with `call_id` bound through contextvars.

Every log line of a call carries `call_id` because the session binds it with
`bind_call(call_id)` in the call's task; threads outside asyncio (the SIP owner thread)
pass `call_id=` explicitly.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog

_SECRET_KEYS = ("password", "secret", "token", "api_key", "apikey", "authorization")
_level = logging.INFO  # set by setup()


def debug_enabled() -> bool:
    """Whether debug lines are written (what callers said goes to the log only then, unless
    the engine config's logging.transcripts says otherwise: see `redact.Privacy`)."""
    return _level <= logging.DEBUG


def is_secret_key(key: str) -> bool:
    """A field or header name that carries a secret (password, token, API key...)."""
    k = key.lower().replace("-", "_")
    return any(s in k for s in _SECRET_KEYS)


_HEADER_LINE = re.compile(r"(?im)^([A-Za-z][A-Za-z0-9_.!%*+`'~-]*)[ \t]*:[ \t]*(.*?)[ \t]*$")
_DIGEST_VALUE = re.compile(r'(?i)\b(response|cnonce|nonce|password)\s*=\s*("[^"]*"|[^\s,]+)')
_SECRET_HEADERS = ("authorization", "proxy-authorization", "cookie", "x-api-key")


def mask_text(text: str) -> str:
    """Mask secrets in free text such as a SIP message PJSIP logs: the value of every header
    whose name looks secret (Authorization, X-Api-Key, *-Token...) and any digest response."""

    def header(m: re.Match[str]) -> str:
        name = m.group(1)
        if name.lower() in _SECRET_HEADERS or is_secret_key(name) or name.lower().endswith("key"):
            return f"{name}: ***"
        return m.group(0)

    return _DIGEST_VALUE.sub(lambda m: f"{m.group(1)}=***", _HEADER_LINE.sub(header, text))


class Throttle:
    """Log something once per key and `interval` seconds; `hit()` says whether to log now
    and how many were held back since the last time."""

    def __init__(self, interval: float, size: int = 1024) -> None:
        self.interval = interval
        self.size = size
        self._last: dict[str, tuple[float, int]] = {}

    def hit(self, key: str, now: float) -> tuple[bool, int]:
        last = self._last.get(key)
        if last is not None and now - last[0] < self.interval:
            self._last[key] = (last[0], last[1] + 1)
            return False, 0
        if last is None and len(self._last) >= self.size:
            self._last.pop(next(iter(self._last)))
        self._last[key] = (now, 0)
        return True, last[1] if last is not None else 0


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Never let a secret reach a log line, whatever a caller passes."""
    for key in list(event):
        if is_secret_key(key):
            event[key] = "***"
    return event


def setup(fmt: str | None = None, level: str | None = None, **static: Any) -> None:
    """Configure structlog once per process. `static` fields (e.g. worker=1) go on every line."""
    fmt = fmt or os.environ.get("TELEPHONY_BOT_LOG_FORMAT", "console")
    level_name = (level or os.environ.get("TELEPHONY_BOT_LOG_LEVEL", "info")).upper()
    lvl = logging.getLevelNamesMapping().get(level_name, logging.INFO)
    global _level
    _level = lvl
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())

    def _static(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        for k, v in static.items():
            event.setdefault(k, v)
        return event

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _static,
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=_LineLoggerFactory(),
        cache_logger_on_first_use=False,
    )


class _LineLogger:
    """Writes each log line to stderr with one write(2), so lines from several processes
    sharing one stderr (the supervisor and its workers) never interleave mid-line."""

    def msg(self, message: str) -> None:
        data = (message + "\n").encode("utf-8", "replace")
        try:
            os.write(2, data)
        except OSError:  # stderr closed: logging must never take the call down
            pass

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


class _LineLoggerFactory:
    def __call__(self, *args: Any) -> _LineLogger:
        return _LineLogger()


def get(name: str | None = None) -> structlog.typing.FilteringBoundLogger:
    # Lazy: module-level loggers made at import time still follow a later setup().
    return structlog.get_logger(component=name) if name else structlog.get_logger()


@contextmanager
def bind_call(call_id: str) -> Iterator[None]:
    """Bind `call_id` to every log line emitted in this context (asyncio task or thread)."""
    with structlog.contextvars.bound_contextvars(call_id=call_id):
        yield
