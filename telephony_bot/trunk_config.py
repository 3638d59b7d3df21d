"""The engine config's `trunks:` section: a mapping of trunk name → `Trunk`.

A trunk is a peer that sends the engine calls (a PBX, a SIP provider). Each concern has its
own sub-model or field on `Trunk`: media security (`srtp`) here; registration, allow-lists and
digest authentication of INVITEs beside it. A call that arrives is attributed to one trunk;
what the trunk says then applies to that call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict

# How a call's media is protected (SRTP with SDES keys in the SDP):
#   off       plain RTP; an offer with only SRTP is refused (488)
#   optional  SRTP when the caller offers it, plain RTP otherwise
#   mandatory SRTP or no call: an offer without SRTP is refused with 488 Not Acceptable Here
SrtpName = Literal["off", "optional", "mandatory"]
SRTP_MODES: tuple[SrtpName, ...] = ("off", "optional", "mandatory")


def _yaml_word(v: object) -> object:
    """YAML reads a bare `off` as false (and `on`/`yes` as true): take false as "off"."""
    if v is False:
        return "off"
    if v is True:
        raise ValueError("write optional or mandatory (YAML reads on, yes and true as true)")
    return v


SrtpMode = Annotated[SrtpName, BeforeValidator(_yaml_word)]


class Trunk(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # SRTP for this trunk's calls; None: the engine's default (`sip.srtp`)
    srtp: SrtpMode | None = None


@dataclass(frozen=True)
class SrtpPolicy:
    """Which SRTP mode a call gets: its trunk's `srtp`, else the engine's `sip.srtp`.

    The one place that decides it; the SIP endpoint keeps one account per mode in `modes` and
    puts each incoming call on the account of `mode_for(its trunk)`."""

    default: SrtpName = "off"
    per_trunk: tuple[tuple[str, SrtpName], ...] = ()  # (trunk name, mode) where a trunk sets one

    @classmethod
    def of(cls, default: SrtpName, trunks: Mapping[str, Trunk]) -> SrtpPolicy:
        return cls(default, tuple((n, t.srtp) for n, t in trunks.items() if t.srtp is not None))

    def mode_for(self, trunk: str | None) -> SrtpName:
        """The mode of a call from `trunk` (None: a call no trunk was found for)."""
        return dict(self.per_trunk).get(trunk, self.default) if trunk else self.default

    @property
    def modes(self) -> tuple[SrtpName, ...]:
        """Every mode some call can get, the default first."""
        return (self.default,) + tuple(
            m for m in SRTP_MODES if m != self.default and m in dict(self.per_trunk).values()
        )

    def describe(self) -> str:
        """For the start-up log: `optional`, or `off; trunks pbx=mandatory`."""
        if not self.per_trunk:
            return self.default
        return f"{self.default}; trunks " + ",".join(f"{n}={m}" for n, m in self.per_trunk)
