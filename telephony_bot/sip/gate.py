"""The PJSIP module that decides on each new INVITE before pjsua sees it (`native/sipgate.c`).

`SipGate.install(decide, dropped)` registers it on the running endpoint: `decide(source_ip,
source_port, raw)` runs on PJSIP's thread for every INVITE outside a dialog and returns None
(on to pjsua) or `(status, reason, headers)` (answered at once, statelessly: no call, no
media). `dropped(status, raw)` hears what PJSIP's transport layer threw away (unparseable
messages, missing mandatory headers). `send_raw()` sends bytes from the SIP UDP port.

`prove()` sends the endpoint an INVITE of its own and checks that the module saw it with the
right source address and answered it: only then is the gate trusted (`active`); otherwise it
is removed and the endpoint decides in `onIncomingCall`, after pjsua has set up media (and
logs a warning: floods can then exhaust PJSIP's I/O queue).
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable
from typing import Any

from telephony_bot import log

_log = log.get("sip.gate")

try:
    from telephony_bot.native import _sipgate as _g
except ImportError as exc:  # pragma: no cover - a broken install
    _g = None
    _import_error = str(exc)
else:
    _import_error = ""

Decide = Callable[[str, int, bytes], tuple[int, str, list[tuple[str, str]]] | None]
Dropped = Callable[[int, bytes], None]
SELF_CHECK_STATUS = 499  # never sent to anyone else; tells the probe the module answered


class SipGate:
    def __init__(self) -> None:
        self.installed = False
        self.active = False
        self.why_not = ""
        self._probe: tuple[str, str] | None = None  # (call-id, "ip:port") of the self-check
        self._probe_seen = ""

    def install(self, decide: Decide, dropped: Dropped | None) -> bool:
        """Register the module (after libInit/libStart); False (with `why_not`) if it cannot."""
        if _g is None:
            self.why_not = f"extension not built: {_import_error}"
            return False
        import pjsua2

        try:
            _g.load(pjsua2._pjsua2.__file__)

            def wrapped(ip: str, port: int, raw: bytes) -> Any:
                probe = self._probe
                if probe is not None and probe[0].encode() in raw:
                    self._probe_seen = f"{ip}:{port}"
                    return (SELF_CHECK_STATUS, "Gate Self Check", [])
                return decide(ip, port, raw)

            _g.install(wrapped, dropped)
        except (OSError, RuntimeError) as exc:
            self.why_not = str(exc)
            return False
        self.installed = True
        return True

    def prove(self, host: str, port: int, transport: str, timeout: float = 2.0) -> bool:
        """Send an INVITE to our own SIP port; True when the module saw our address and
        answered it. Runs on a thread registered with pjlib (the owner thread)."""
        if not self.installed:
            return False
        target = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
        family = socket.AF_INET6 if ":" in target else socket.AF_INET
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        call_id = "tb-gate-selfcheck-" + secrets.token_hex(8)
        try:
            with socket.socket(family, kind) as s:
                s.settimeout(timeout)
                s.bind((target, 0))
                if kind == socket.SOCK_STREAM:
                    s.connect((target, port))
                ip, sport = s.getsockname()[:2]
                self._probe = (call_id, f"{ip}:{sport}")
                msg = _probe_invite(target, port, ip, sport, transport, call_id)
                if kind == socket.SOCK_DGRAM:
                    s.sendto(msg, (target, port))
                else:
                    s.sendall(msg)
                reply = s.recv(4096)
        except OSError as exc:
            self.why_not = f"self-check INVITE got no answer: {exc}"
            return False
        finally:
            self._probe = None
        want = f"{ip}:{sport}"
        if not reply.startswith(f"SIP/2.0 {SELF_CHECK_STATUS} ".encode()):
            self.why_not = f"self-check INVITE answered {reply[:40]!r}, not by the module"
        elif self._probe_seen != want:
            self.why_not = f"the module read the source as {self._probe_seen!r}, not {want}"
        else:
            self.active = True
        return self.active

    def uninstall(self, *, destroyed: bool = False) -> None:
        """Remove the module; `destroyed`: PJSIP's endpoint is gone already (libDestroy
        unregistered it), only forget the callbacks."""
        if _g is not None and self.installed:
            _g.uninstall(destroyed)
        self.installed = self.active = False

    def send_raw(self, ip: str, port: int, data: bytes) -> bool:
        """Send `data` from the SIP UDP port (PJSIP's thread or a registered one)."""
        if _g is None or not self.installed:
            return False
        try:
            return int(_g.send_raw(ip, port, data)) == 0
        except (RuntimeError, ValueError):
            return False

    def terminate(self, call_id: str, local_tag: str, remote_tag: str, code: int) -> bool:
        """End the INVITE session of this dialog now, without a BYE (its pjsua slot is free
        at once); False when it is gone already or the gate is not there. Owner thread."""
        if _g is None or not self.installed:
            return False
        try:
            return bool(_g.terminate(call_id, local_tag, remote_tag, code))
        except RuntimeError:
            return False

    def stats(self) -> dict[str, int]:
        return dict(_g.stats()) if _g is not None and self.installed else {}


def _probe_invite(host: str, port: int, ip: str, sport: int, transport: str, call_id: str) -> bytes:
    h = f"[{host}]" if ":" in host else host
    me = f"[{ip}]" if ":" in ip else ip
    tp = transport.upper()
    lines = [
        f"INVITE sip:gate-selfcheck@{h}:{port} SIP/2.0",
        f"Via: SIP/2.0/{tp} {me}:{sport};branch=z9hG4bK{secrets.token_hex(8)};rport",
        "Max-Forwards: 70",
        f"From: <sip:gate@{me}:{sport}>;tag={secrets.token_hex(4)}",
        f"To: <sip:gate-selfcheck@{h}:{port}>",
        f"Call-ID: {call_id}",
        "CSeq: 1 INVITE",
        f"Contact: <sip:gate@{me}:{sport}>",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
