"""What the engine may dial out to, whoever asks (an `originate` command, an operator's
transfer to a number): a number the engine config's `outbound.allow` patterns match,
addressed through the outbound trunk. Pure: no I/O."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence

NUMBER_RE = re.compile(r"^\+?[0-9A-Za-z*#._-]{1,64}$")  # a number or a SIP user


def number_allowed(number: str, patterns: Sequence[str]) -> bool:
    """Whether `number` matches one of the `outbound.allow` patterns (exact, or with the
    wildcards * and ?; no other glob syntax). An empty list allows nothing."""
    return any(fnmatch.fnmatchcase(number, p.replace("[", "[[]")) for p in patterns)


def trunk_uri(trunk: str, number: str) -> str:
    """`sip:HOST[:PORT][;params]` and a number → `sip:NUMBER@HOST[:PORT][;params]`."""
    scheme, rest = trunk.split(":", 1)
    return f"{scheme}:{number}@{rest}"


def trunk_host(trunk: str) -> str:
    """The trunk's `HOST[:PORT]`, lower case, without parameters."""
    return trunk.split(":", 1)[1].split(";", 1)[0].lower()
