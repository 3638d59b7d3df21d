"""How a pjsua2 Endpoint is set up here, shared by the engine (`sip.endpoint`) and the
caller (`sip.dial`): library creation, threads, logging, the media clock, codec priorities,
SIP transports (UDP, TCP, TLS) and the accounts' RTP and SRTP settings.

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

# TLS 1.2 and 1.3 only (PJSIP's default also allows 1.0 and 1.1)
TLS_PROTOCOLS = pj.PJ_SSL_SOCK_PROTO_TLS1_2 | pj.PJ_SSL_SOCK_PROTO_TLS1_3

SRTP_USE = {
    "off": pj.PJMEDIA_SRTP_DISABLED,
    "optional": pj.PJMEDIA_SRTP_OPTIONAL,
    "mandatory": pj.PJMEDIA_SRTP_MANDATORY,
}


@dataclass(frozen=True)
class TlsTransport:
    """A TLS transport's files and checks. One transport serves both directions: it listens
    (presenting `cert_file`) and opens the TLS connections of outgoing requests."""

    cert_file: str = ""  # "" : no certificate (a client that is never asked for one)
    key_file: str = ""
    ca_file: str = ""  # PEM CAs peers are verified against
    verify_server: bool = False  # connections we open: drop a server whose cert fails
    verify_client: bool = False  # connections we accept: require a client cert that passes


@dataclass(frozen=True)
class EndpointConfig:
    user_agent: str
    clock_rate: int  # pjmedia's conference bridge and clock, Hz
    codecs: Sequence[str]  # in priority order; the rest are disabled
    log_level: int
    log_writer: Any = None  # a pj.LogWriter; None: PJSIP's own console output
    max_calls: int | None = None  # None: PJSUA's default


def new_endpoint(cls: type[Any] = pj.Endpoint) -> Any:
    """A created (`libCreate`) pjsua2 Endpoint (`cls`: a subclass with callbacks), quiet on
    stdout; `init_endpoint` next."""
    ep = cls()
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


def listen(ep: Any, kind: str, host: str, port: int, tls: TlsTransport | None = None) -> int:
    """A SIP transport ("udp", "tcp" or "tls" with `tls`) on `host:port` (bound there unless
    `host` is any); returns its transport id."""
    tcfg = pj.TransportConfig()
    tcfg.port = port
    if host not in ANY_HOST:
        tcfg.boundAddress = host
        tcfg.publicAddress = host
    ttype = {"udp": pj.PJSIP_TRANSPORT_UDP, "tcp": pj.PJSIP_TRANSPORT_TCP}.get(kind)
    if kind == "tls":
        if tls is None:
            raise SipError("a TLS transport needs its TLS settings")
        ttype = pj.PJSIP_TRANSPORT_TLS
        _tls_config(tcfg.tlsConfig, tls)
    if ttype is None:
        raise SipError(f"unknown SIP transport {kind!r}")
    try:
        return int(ep.transportCreate(ttype, tcfg))
    except pj.Error as exc:
        raise SipError(f"cannot listen for SIP on {kind} {host}:{port}: {exc.info()}") from None


def _tls_config(c: Any, tls: TlsTransport) -> None:
    c.certFile = tls.cert_file
    c.privKeyFile = tls.key_file
    c.CaListFile = tls.ca_file
    c.proto = TLS_PROTOCOLS
    c.verifyServer = tls.verify_server
    c.verifyClient = tls.verify_client
    c.requireClientCert = tls.verify_client
    c.msecTimeout = 5000  # a TLS handshake that has not finished by then fails


def account_config(
    id_uri: str,
    host: str,
    rtp_port: int,
    rtp_port_range: int | None = None,
    srtp: str = "off",
) -> Any:
    """An AccountConfig for `id_uri` whose RTP binds `host` (unless any) from `rtp_port`, with
    SRTP `srtp` (off | optional | mandatory; SDES keys in the SDP).

    PJSIP would by default refuse SRTP unless the signaling is TLS (`srtpSecureSignaling`
    1): that refuses every plain-UDP call of an `optional` trunk, and every call a front door
    hands over on loopback. Here SRTP is decided by the mode alone; whether the keys travel
    protected is the signaling transport's business (TLS: `sips:` or `;transport=tls`)."""
    acfg = pj.AccountConfig()
    acfg.idUri = id_uri
    mc = acfg.mediaConfig
    mc.srtpUse = SRTP_USE[srtp]
    mc.srtpSecureSignaling = 0
    if srtp != "off":
        opt = pj.SrtpOpt()
        opt.keyings = pj.IntVector([pj.PJMEDIA_SRTP_KEYING_SDES])  # keys in the SDP (a=crypto)
        mc.srtpOpt = opt
    acfg.mediaConfig.transportConfig.port = rtp_port
    if rtp_port_range is not None:
        acfg.mediaConfig.transportConfig.portRange = rtp_port_range
    if host not in ANY_HOST:
        acfg.mediaConfig.transportConfig.boundAddress = host
        acfg.mediaConfig.transportConfig.publicAddress = host
    return acfg
