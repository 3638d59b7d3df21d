"""Settings for a SIP worker, validated when the process starts."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from telephony_bot.errors import ConfigError

# This build of PJSIP (the pjsua2-python wheel) is compiled with PJSUA_MAX_CALLS = 4.
PJSUA_MAX_CALLS = 4

DEFAULT_CODECS = ("PCMU/8000", "PCMA/8000", "G722/16000")


@dataclass(frozen=True)
class SipSettings:
    host: str = "0.0.0.0"
    port: int = 5060
    transports: tuple[str, ...] = ("udp", "tcp")
    max_calls: int = PJSUA_MAX_CALLS
    bridge_rate: int = 8000  # conference bridge clock; 16000 keeps G.722 wideband
    # Rate of the conference-bridge ports the engine's audio crosses; 0: the bridge rate, so
    # pjmedia resamples nothing and the engine converts to the session's 24 kHz itself (less
    # CPU than pjmedia's resampler; bench/media_path.py). 24000: pjmedia resamples, in C.
    port_rate: int = 0
    rtp_port: int = 10000  # first RTP port of this worker
    rtp_port_range: int = 100
    codecs: tuple[str, ...] = DEFAULT_CODECS  # in order of preference; others disabled
    user_agent: str = "telephony-bot"
    pjsip_log_level: int = 1
    worker_id: int = 0
    ring_ms: int = 0  # time between 180 Ringing and 200 OK
    max_call_seconds: float = 0.0  # 0: no limit (dialplan routes refine this later)
    drain_grace_seconds: float = 30.0
    media_loopback: bool = False  # diagnostic: echo the caller in C, bypassing Python

    @property
    def media_port_rate(self) -> int:
        """The rate the bridge ports actually run at."""
        return self.port_rate or self.bridge_rate

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_address(self.host)
        except ValueError as exc:
            raise ConfigError(f"--sip-host must be an IP address, got {self.host!r}") from exc
        if not 0 < self.port < 65536:
            raise ConfigError(f"--sip-port must be 1..65535, got {self.port}")
        if not 1 <= self.max_calls <= PJSUA_MAX_CALLS:
            raise ConfigError(
                f"max calls per worker must be 1..{PJSUA_MAX_CALLS} (the PJSIP build's "
                f"compile-time limit); got {self.max_calls}. Use more workers (--workers)."
            )
        for t in self.transports:
            if t not in ("udp", "tcp"):
                raise ConfigError(f"unknown SIP transport {t!r}: use udp and/or tcp")
        if self.bridge_rate not in (8000, 16000, 24000, 32000, 48000):
            raise ConfigError(
                f"bridge rate must be 8000/16000/24000/32000/48000, got {self.bridge_rate}"
            )
        if self.port_rate not in (0, 8000, 16000, 24000, 32000, 48000):
            raise ConfigError(
                f"port rate must be 0 (the bridge rate) or 8000/16000/24000/32000/48000, "
                f"got {self.port_rate}"
            )
        if not 1024 <= self.rtp_port <= 65535 - self.rtp_port_range:
            raise ConfigError(f"RTP port {self.rtp_port} out of range")
