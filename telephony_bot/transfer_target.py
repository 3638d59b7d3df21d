"""What the engine accepts as a transfer target, wherever one comes from: a dialplan's
`transfer_targets`, an MQTT or HTTP `transfer` command, the model's transfer tool, the
route's `on_error.transfer`.

The form (`PATTERN`): a `sip:` or `sips:` URI without spaces, angle brackets or quotes, or a
`tel:` number. The dialplan refuses anything else at load time.

The destination (`TransferRules`, one check before every REFER, whoever asks): a call may
be put through only to
- a target its route names (by name, as the model does, or by its URI), or
- a number the engine config's `outbound.allow` matches (`+4930123`, `tel:+4930123`, or
  `sip:+4930123@<the outbound trunk>`), addressed through the outbound trunk.
Anything else is refused with the reason: a command naming `sip:+900...@evil.example` must
not turn the engine into a free line to a premium-rate number (toll fraud).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from telephony_bot.outbound import NUMBER_RE, number_allowed, trunk_host, trunk_uri

PATTERN = r"^(sips?:[^\s<>\"]{1,250}|tel:\+?[0-9*#().\-]{1,64})$"
_RE = re.compile(PATTERN)
# what a command may name: a target's name, a number, or a URI (checked by the rules)
COMMAND_PATTERN = r"^[^\s<>\"]{1,256}$"


def problem(target: str) -> str | None:
    """Why `target` cannot be a transfer target, or None when it can."""
    if _RE.match(target):
        return None
    return f"expected a SIP URI (sip:, sips: or tel:) like sip:nurse@example.com, got {target!r}"


def _number_and_host(target: str) -> tuple[str | None, str | None]:
    """The number a target dials and, for a SIP URI, its `host[:port]` (lower case)."""
    if target.startswith("tel:"):
        number = target[4:].split(";", 1)[0]
        return (number if NUMBER_RE.match(number) else None), None
    if target.startswith(("sip:", "sips:")):
        rest = target.split(":", 1)[1]
        if "@" not in rest:
            return None, None
        user, host = rest.rsplit("@", 1)
        user = user.split(";", 1)[0].split(":", 1)[0]  # no user parameters, no password
        host = re.split(r"[;?]", host, maxsplit=1)[0].lower()
        return (user if NUMBER_RE.match(user) else None), host
    return (target if NUMBER_RE.match(target) and any(c.isdigit() for c in target) else None), None


@dataclass(frozen=True)
class TransferRules:
    """Where one call may be transferred: `named` (the route's `transfer_targets`, name →
    URI), and numbers `allow` (outbound.allow) matches, through `trunk` (outbound.trunk;
    without one a number becomes a `tel:` URI)."""

    named: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    allow: tuple[str, ...] = ()
    trunk: str | None = None
    route: str | None = None  # for the reason, when a target is refused

    def resolve(self, target: str) -> tuple[str | None, str]:
        """The URI to send the REFER to, or None and why the target is refused."""
        target = target.strip()
        if target in self.named:
            return self.named[target], ""
        if target in self.named.values():
            return target, ""
        names = ", ".join(sorted(self.named)) or "none"
        route = f"route {self.route!r}" if self.route else "this call's route"
        not_named = f"{target!r} is not a transfer target of {route} (targets: {names})"
        number, host = _number_and_host(target)
        if number is None:
            return None, f"{not_named}, nor a number"
        if not number_allowed(number, self.allow):
            return None, f"{not_named}, and outbound.allow does not match {number}"
        if host is not None and (self.trunk is None or host != trunk_host(self.trunk)):
            via = trunk_host(self.trunk) if self.trunk else "none is configured"
            return None, (
                f"{not_named}; numbers are put through the outbound trunk ({via}), not {host}"
            )
        return (trunk_uri(self.trunk, number) if self.trunk else f"tel:{number}"), ""
