"""What the engine accepts as a transfer target, wherever one comes from: a dialplan's
`transfer_targets`, an MQTT or HTTP `transfer` command, the model's transfer tool.

One definition (`PATTERN`): a `sip:` or `sips:` URI without spaces, angle brackets or quotes,
or a `tel:` number. The dialplan refuses anything else at load time, a command is refused
with the reason, and the session's transfer verb checks it once more before the REFER.
"""

from __future__ import annotations

import re

PATTERN = r"^(sips?:[^\s<>\"]{1,250}|tel:\+?[0-9*#().\-]{1,64})$"
_RE = re.compile(PATTERN)


def problem(target: str) -> str | None:
    """Why `target` cannot be a transfer target, or None when it can."""
    if _RE.match(target):
        return None
    return f"expected a SIP URI (sip:, sips: or tel:) like sip:nurse@example.com, got {target!r}"
