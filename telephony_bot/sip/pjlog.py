"""PJSIP's own log lines, forwarded to structlog.

Every line passes through the engine's masking (`log.mask_text`: secret-looking header values
and digest responses become `***`). Lines about a message PJSIP could not parse go to
`MalformedPackets` instead, which logs them once per source a while without their contents.
PJSIP rejects a call beyond its compile-time call limit before the application sees it;
that line is raised to a warning that says why, so an operator knows a worker was full.
SRTP keys in the SDP of logged messages are masked.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pjsua2 as pj

from telephony_bot import log
from telephony_bot.log import mask_text
from telephony_bot.sip.malformed import MalformedPackets
from telephony_bot.sip.pythread import pin
from telephony_bot.sip.sipmsg import mask_sdes_keys

_log = log.get("pjsip")


# Lines PJSIP logs as warnings on the normal path: a TLS peer closing its connection
_BENIGN = ("[SSL_ERROR_ZERO_RETURN]",)


class PjLogWriter(pj.LogWriter):  # type: ignore[misc]
    def __init__(self, max_calls: int, malformed: MalformedPackets | None = None) -> None:
        super().__init__()
        self.max_calls = max_calls
        self.malformed = malformed

    def write(self, entry: Any) -> None:
        pin()
        try:
            msg = str(entry.msg).rstrip()
            if self.malformed is not None and self.malformed.on_pjsip_line(msg.strip()):
                return
            msg = mask_text(mask_sdes_keys(msg))
            if "too many calls" in msg:
                _log.warning(
                    "call rejected with 486: worker is full",
                    max_calls=self.max_calls,
                    detail=msg.strip(),
                )
            elif any(b in msg for b in _BENIGN):
                _log.debug("pjsip", msg=msg.strip())
            elif entry.level <= 1:
                _log.error("pjsip", msg=msg.strip())
            elif entry.level == 2:
                _log.warning("pjsip", msg=msg.strip())
            else:
                _log.debug("pjsip", msg=msg.strip())
        except Exception:  # noqa: BLE001 - a log line must never raise into PJSIP
            pass


@contextmanager
def quiet_stdout() -> Iterator[None]:
    """Silence fd 1 while PJSIP initialises: `libCreate` prints banner lines to stdout before
    the log configuration (and our writer) can take over."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
