"""How a pjsua2 Endpoint is set up here, shared by the engine (`sip.endpoint`) and the
caller (`sip.dial`): library creation, threads, logging, the media clock, codec priorities,
SIP transports and the accounts' RTP settings.

PJSIP runs one worker thread of its own (threadCnt = 1, callbacks on any thread); there is
no sound device (the null device drives pjmedia's clock); media runs mono with no VAD and
no echo canceller, at the clock rate asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pjsua2 as pj

from telephony_bot.errors import SipError
from telephony_bot.sip import codecs
from telephony_bot.sip.pjlog import quiet_stdout

ANY_HOST = ("0.0.0.0", "::")


@dataclass(frozen=True)
class EndpointConfig:
    user_agent: str
    clock_rate: int  # pjmedia's conference bridge and clock, Hz
    codecs: Sequence[str]  # in priority order; the rest are disabled
    log_level: int
    log_writer: Any = None  # a pj.LogWriter; None: PJSIP's own console output
    max_calls: int | None = None  # None: PJSUA's default


def new_endpoint() -> Any:
    """A created (`libCreate`) pjsua2 Endpoint, quiet on stdout; `init_endpoint` next."""
    ep = pj.Endpoint()
    with quiet_stdout():
        ep.libCreate()
    return ep


def init_endpoint(ep: Any, c: EndpointConfig) -> list[str]:
    """`libInit` with our settings, the null sound device and the codec order; returns the
    codecs enabled, in priority order. Transports come next, then `libStart`."""
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 1
    cfg.uaConfig.mainThreadOnly = False
    if c.max_calls is not None:
        cfg.uaConfig.maxCalls = c.max_calls
    cfg.uaConfig.userAgent = c.user_agent
    if c.log_writer is not None:
        cfg.logConfig.writer = c.log_writer
        cfg.logConfig.decor = 0
    cfg.logConfig.level = c.log_level
    cfg.logConfig.consoleLevel = c.log_level
    cfg.medConfig.clockRate = c.clock_rate
    cfg.medConfig.sndClockRate = c.clock_rate
    cfg.medConfig.channelCount = 1
    cfg.medConfig.noVad = True
    cfg.medConfig.ecTailLen = 0
    ep.libInit(cfg)
    ep.audDevManager().setNullDev()
    return codecs.apply_order(ep, c.codecs)


def listen(ep: Any, kind: str, host: str, port: int) -> None:
    """A SIP transport ("udp" or "tcp") on `host:port` (bound there unless `host` is any)."""
    tcfg = pj.TransportConfig()
    tcfg.port = port
    if host not in ANY_HOST:
        tcfg.boundAddress = host
        tcfg.publicAddress = host
    ttype = pj.PJSIP_TRANSPORT_UDP if kind == "udp" else pj.PJSIP_TRANSPORT_TCP
    try:
        ep.transportCreate(ttype, tcfg)
    except pj.Error as exc:
        raise SipError(f"cannot listen for SIP on {kind} {host}:{port}: {exc.info()}") from None


def account_config(id_uri: str, host: str, rtp_port: int, rtp_port_range: int | None = None) -> Any:
    """An AccountConfig for `id_uri` whose RTP binds `host` (unless any) from `rtp_port`."""
    acfg = pj.AccountConfig()
    acfg.idUri = id_uri
    acfg.mediaConfig.transportConfig.port = rtp_port
    if rtp_port_range is not None:
        acfg.mediaConfig.transportConfig.portRange = rtp_port_range
    if host not in ANY_HOST:
        acfg.mediaConfig.transportConfig.boundAddress = host
        acfg.mediaConfig.transportConfig.publicAddress = host
    return acfg
