"""Messages PJSIP cannot parse: logged once per source a while, briefly and without their
contents, and — a request over UDP — answered 400 so no caller (or front door) waits.

PJSIP drops such a message in its transport layer, before any module sees it, and logs it
(`Error processing packet from IP:PORT: ... -- end of packet.` with the whole message, or
`Dropping N bytes packet from UDP IP:PORT : <parse error>`). The log writer hands those lines
here (`on_pjsip_line`): the source is remembered and a short summary logged. Right after,
on the same thread, PJSIP's drop callback (the gate's `dropped`) brings the raw bytes
(`on_dropped`): if they are a request with a Via, a 400 goes back to that source from the
SIP port.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

from telephony_bot import log
from telephony_bot.sip.sipmsg import bad_request

_log = log.get("sip.malformed")
LOG_EVERY_S = 60.0

_ERROR_PROCESSING = re.compile(
    r"^Error processing packet from (?P<ip>\S+):(?P<port>\d+):\s(?P<why>[^\n]*?)"
    r"(?:\s*\[code \d+\])?:?\s*(?:\n|$)"
)
_DROPPING = re.compile(
    r"^Dropping \d+ bytes packet from (?P<tp>\w+) (?P<ip>\S+):(?P<port>\d+)\s"
    r":?\s*(?P<why>[^\n]*)"
)
_EXCEPTION = re.compile(r"exception when parsing '([^']*)' header")

SendRaw = Callable[[str, int, bytes], bool]


class MalformedPackets:
    def __init__(
        self, send_raw: SendRaw | None = None, clock: Callable[[], float] = time.monotonic
    ):
        self.send_raw = send_raw
        self.count = 0
        self.answered = 0
        self._clock = clock
        self._throttle = log.Throttle(LOG_EVERY_S)
        self._pending = threading.local()  # (transport, ip, port, why) of the last line

    def on_pjsip_line(self, msg: str) -> bool:
        """A PJSIP log line: True when it was about a malformed message (and is dealt with
        here: the caller must not log it)."""
        m = _ERROR_PROCESSING.match(msg)
        transport = "udp?"
        if m is None:
            m = _DROPPING.match(msg)
            if m is None:
                return False
            transport = m.group("tp").lower()
        ip = m.group("ip").strip("[]")
        port = int(m.group("port"))
        why = _brief(m.group("why"))
        self._pending.value = (transport, ip, port, why)
        self.count += 1
        show, held = self._throttle.hit(ip, self._clock())
        if show:
            _log.warning(
                "malformed SIP message dropped", source=f"{ip}:{port}", error=why, held_back=held
            )
        return True

    def on_dropped(self, status: int, raw: bytes) -> None:
        """PJSIP's drop callback: the bytes of the message the last line was about."""
        pending = getattr(self._pending, "value", None)
        self._pending.value = None
        if pending is None or self.send_raw is None:
            return
        transport, ip, port, why = pending
        if transport not in ("udp", "udp?"):
            return  # a stream's answer must go on its connection: PJSIP closes it instead
        reply = bad_request(raw, "Bad Request")
        if reply is not None and self.send_raw(ip, port, reply):
            self.answered += 1


def _brief(why: str) -> str:
    """`Missing required header(s) (PJSIP_EMISSINGHDR)  To` → the same, squeezed; a parser
    exception → `syntax error in the CSeq header`."""
    m = _EXCEPTION.search(why)
    if m:
        return f"syntax error in the {m.group(1) or 'start'} header"
    return re.sub(r"\s+", " ", why).strip()[:120]
