"""Registration policy, pure: what a registrar's answer means for a trunk's state, when to try
again after a failure, and which trunk an incoming INVITE came through.

PJSIP sends the REGISTERs, answers the 401/407 challenges and refreshes a registration 5 s
before it expires (`sip/trunk_accounts.py`); its own fixed-interval retry is off. This
module decides the rest:

- **State** (`RegistrationState`): registering → registered (2xx with an expiry) or failed
  (anything else: a wrong password's 401/403, a timeout's 408, a refused connection's 503);
  unregistered after a 2xx to an expiry of 0 (shutdown); `off` on a worker that does not
  register (behind the front door only worker 0 registers; the others take the calls).
- **Backoff** (`retry_delay_s`): after the n-th failure in a row wait 5, 10, 20, 40... s, at
  most 300 s, ±10 % so that many engines do not retry in step; a success resets it.
- **Line** (`line_token`, `trunk_of_request`): each trunk's registered Contact carries a
  `line=` URI parameter; the registrar sends a call to that Contact, so the INVITE's
  Request-URI carries it back and names the trunk. The token is an HMAC of the trunk's name
  keyed with its password: the same on every worker and across restarts, unguessable to a
  scanner that sends INVITEs to the port, and no more than the registrar (which knows the
  password) and the REGISTER's own path (which sees the digest response) already see.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

State = Literal["registering", "registered", "failed", "unregistered", "off"]

BACKOFF_S = (5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0)
JITTER = 0.1
LINE_PARAM = "line"
_LINE = re.compile(r";line=([A-Za-z0-9]+)(?=[;?>]|$)", re.IGNORECASE)


@dataclass(frozen=True)
class RegistrationState:
    """One trunk's registration as /health, metrics, MQTT and the admin page show it."""

    trunk: str
    registrar: str  # sip:HOST[:PORT]
    user: str
    state: State = "registering"
    status_code: int = 0  # the registrar's last final answer (0: none yet)
    reason: str = ""  # its reason phrase, or why PJSIP gave up
    expires_s: int = 0  # what the registrar granted (0: not registered)
    since: float = 0.0  # wall clock of the last change of `state`
    failures: int = 0  # failures in a row
    retry_in_s: float | None = None  # set while failed: when the next attempt goes out

    @property
    def ok(self) -> bool:
        return self.state in ("registered", "off")

    def to_json(self) -> dict[str, Any]:
        """Its fields, `ok` and `detail` (describe()): what crosses the carrier seam."""
        return {**asdict(self), "ok": self.ok, "detail": self.describe()}

    def describe(self) -> str:
        """One line for /health and logs."""
        where = f"{self.user} at {self.registrar}"
        if self.state == "registered":
            return f"registered as {where} (expires in {self.expires_s} s)"
        if self.state == "failed":
            retry = f"; retrying after {self.retry_in_s:.0f} s" if self.retry_in_s else ""
            return (
                f"registration as {where} failed: {self.status_code} {self.reason} "
                f"({self.failures} in a row){retry}"
            )
        if self.state == "off":
            return f"{where}: registered by another worker"
        return f"{self.state} as {where}"


def on_answer(
    prev: RegistrationState,
    code: int,
    reason: str,
    expires: int,
    *,
    now: float | None = None,
    rnd: random.Random | None = None,
) -> RegistrationState:
    """The state after the registrar's final answer (`code`, and the expiry it granted)."""
    now = time.time() if now is None else now
    if 200 <= code < 300:
        state: State = "registered" if expires > 0 else "unregistered"
        return replace(
            prev,
            state=state,
            status_code=code,
            reason=reason,
            expires_s=max(0, expires),
            since=now if state != prev.state else prev.since,
            failures=0,
            retry_in_s=None,
        )
    failures = prev.failures + 1
    return replace(
        prev,
        state="failed",
        status_code=code,
        reason=reason,
        expires_s=0,
        since=now if prev.state != "failed" else prev.since,
        failures=failures,
        retry_in_s=retry_delay_s(failures, rnd),
    )


def retry_delay_s(failures: int, rnd: random.Random | None = None) -> float:
    """Seconds to wait after the `failures`-th failure in a row (1-based)."""
    base = BACKOFF_S[min(max(failures, 1), len(BACKOFF_S)) - 1]
    r = (rnd or random).uniform(-JITTER, JITTER)
    return round(base * (1 + r), 1)


def line_token(trunk: str, password: str) -> str:
    """The `line=` value of `trunk`'s Contact (16 hex digits)."""
    mac = hmac.new(password.encode(), f"telephony-bot line {trunk}".encode(), hashlib.sha256)
    return mac.hexdigest()[:16]


def trunk_of_request(request_uri: str, lines: Mapping[str, str]) -> str:
    """The trunk whose `line=` token the Request-URI carries ("" when none does)."""
    m = _LINE.search(request_uri.split("?", 1)[0])
    if m is None:
        return ""
    token = m.group(1).lower()
    for known, trunk in lines.items():
        if hmac.compare_digest(known, token):
            return trunk
    return ""
