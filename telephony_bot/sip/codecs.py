"""Codec choice on SIP legs: which of PJSIP's codecs are offered, in which order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from telephony_bot.errors import ConfigError


def installed(ep: Any) -> list[str]:
    """Codec ids the installed PJSIP offers, e.g. 'PCMU/8000/1'."""
    return [str(c.codecId) for c in ep.codecEnum2()]


def _matches(codec_id: str, pref: str) -> bool:
    return codec_id.lower() == pref.lower() or codec_id.lower().startswith(pref.lower() + "/")


def apply_order(ep: Any, prefs: Sequence[str]) -> list[str]:
    """Enable `prefs` ('PCMU/8000', 'G722', ...) in that order and disable every other codec.

    Opus is used when the installed PJSIP has it and it is listed; a listed codec that this
    PJSIP does not have is an error naming what is available.
    """
    ids = installed(ep)
    enabled: list[str] = []
    for pref in prefs:
        hits = [c for c in ids if _matches(c, pref) and c not in enabled]
        if not hits:
            if pref.lower().startswith("opus"):
                continue  # the published wheel has no Opus: fall through to the next codec
            raise ConfigError(
                f"codec {pref!r} is not in this PJSIP build; it has: {', '.join(ids)}"
            )
        enabled.extend(hits)
    if not enabled:
        raise ConfigError(f"no usable codec among {list(prefs)}; this PJSIP has: {', '.join(ids)}")
    for c in ids:
        ep.codecSetPriority(c, 0)
    for rank, c in enumerate(enabled):
        ep.codecSetPriority(c, 255 - rank)
    return enabled
