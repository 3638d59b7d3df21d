"""The pjsua2 accounts of the trunks the engine registers with (PJSIP side).

Each trunk with a `register` section (trunk_config.py) becomes accounts on the endpoint:

- alone (one worker, or `serve` without a front door): one account that registers and
  places the trunk's outbound calls. Its Contact is this worker's address; PJSIP rewrites
  it (and the Via) from the registrar's `received`/`rport` when a NAT changed it, and sends
  a UDP keepalive to the registrar every `keepalive_s` (over TCP/TLS the transport sends
  CRLF keepalives itself). Over TLS the connection is opened by the engine's TLS transport
  (`sip.tls`, which the config requires for such a trunk): the registrar's certificate is
  checked as `sip.tls.verify_server` says, and the Contact names the connection
  (`;transport=TLS`), so the registrar's calls come back on it;
- behind the front door (`serve --workers N`): worker 0 has a registering account whose
  Contact is the front door's public address and whose REGISTERs leave through the front
  door (Kamailio relays them, so the registrar sees and NAT-maps the front door; Kamailio
  also sends the keepalives). Calls the registrar sends there are spread over all workers.
  Every worker, worker 0 included, has a second account that never registers and places
  the trunk's outbound calls with its digest credentials, from its own address.

The REGISTER's Contact carries `;line=<token>` (`registration.line_token`), which the
registrar echoes in the Request-URI of the calls it sends: that is how a call is known to
have come through the trunk. Each account reports its registrar's answers to asyncio
(`on_answer(name, code, reason, expires)`); retries are decided there (registrations.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pjsua2 as pj

from telephony_bot.config import SipSettings
from telephony_bot.sip.endpoint_config import account_config
from telephony_bot.sip.pythread import pin
from telephony_bot.sip.registration import LINE_PARAM, line_token
from telephony_bot.trunk_config import Trunk, TrunkRegister, registering, uri_port

OnAnswer = Callable[[str, int, str, int], None]


@dataclass(frozen=True)
class TrunkLine:
    """What the endpoint knows of one registering trunk."""

    name: str
    reg: TrunkRegister
    password: str = field(repr=False)
    token: str = field(repr=False)  # the Contact's line= value

    @property
    def registrar_uri(self) -> str:
        t = self.reg.transport
        return self.reg.registrar + ("" if t == "udp" else f";transport={t}")

    @property
    def next_hop_port(self) -> int:
        """The port its requests go to first: the outbound proxy's, else the registrar's
        (without one in the URI: 5061 over TLS, else 5060)."""
        port = uri_port(self.reg.outbound_proxy or self.reg.registrar)
        if port is not None:
            return port
        return 5061 if self.reg.transport == "tls" else 5060

    @property
    def id_uri(self) -> str:
        return f"sip:{self.reg.user}@{self.reg.domain}"

    def call_uri(self, number: str) -> str:
        """Where an outbound call to `number` through this trunk goes."""
        t = self.reg.transport
        scheme = self.reg.registrar.split(":", 1)[0]  # sips: registrar, sips: calls
        return f"{scheme}:{number}@{self.reg.domain}" + ("" if t == "udp" else f";transport={t}")


def trunk_lines(
    trunks: Mapping[str, Trunk], env: Mapping[str, str] | None = None
) -> dict[str, TrunkLine]:
    """Every registering trunk, its secret read (ConfigError when it cannot be)."""
    out = {}
    for name, reg in registering(trunks).items():
        password = reg.password(env)
        out[name] = TrunkLine(name, reg, password, line_token(name, password))
    return out


def _with_lr(uri: str) -> str:
    return uri if ";lr" in uri.lower() else uri + ";lr"


def _base(line: TrunkLine, settings: SipSettings, id_uri: str) -> Any:
    srtp = settings.srtp.mode_for(line.name)  # the trunk's `srtp`, else `sip.srtp`
    acfg = account_config(id_uri, settings.host, settings.rtp_port, settings.rtp_port_range, srtp)
    acfg.sipConfig.authCreds.append(
        pj.AuthCredInfo("digest", line.reg.realm, line.reg.digest_user, 0, line.password)
    )
    acfg.regConfig.registrarUri = line.registrar_uri
    acfg.regConfig.timeoutSec = line.reg.expires
    acfg.regConfig.retryIntervalSec = 0  # retries: registrations.py, with a backoff
    acfg.regConfig.firstRetryIntervalSec = 0
    acfg.regConfig.dropCallsOnFail = False
    acfg.natConfig.sipOutboundUse = 0  # a plain Contact: what every PBX understands
    return acfg


def registering_config(line: TrunkLine, settings: SipSettings, front_door: str = "") -> Any:
    """The account that registers `line`: alone, with this worker as Contact; behind the
    front door (`front_door` = its public host:port), with the front door as Contact."""
    acfg = _base(line, settings, line.id_uri)
    acfg.regConfig.registerOnAdd = True
    acfg.regConfig.contactUriParams = f";{LINE_PARAM}={line.token}"
    if line.reg.contact_params:
        acfg.regConfig.contactParams = line.reg.contact_params
    proxies = [_with_lr(line.reg.outbound_proxy)] if line.reg.outbound_proxy else []
    nat = acfg.natConfig
    if front_door:
        t = line.reg.transport
        suffix = "" if t == "udp" else f";transport={t}"
        acfg.sipConfig.contactForced = f"<sip:{line.reg.user}@{front_door}{suffix}>"
        proxies.insert(0, f"sip:{front_door};lr")
        nat.contactRewriteUse = 0  # the front door is the Contact; its Via is not ours
        nat.viaRewriteUse = 0
        nat.udpKaIntervalSec = 0  # the front door keeps its own NAT binding alive
    else:
        nat.contactRewriteUse = 1  # rport/received differ from our Contact: re-register
        nat.viaRewriteUse = 1
        nat.udpKaIntervalSec = line.reg.keepalive_s if line.reg.transport == "udp" else 0
    for p in proxies:
        acfg.sipConfig.proxies.append(p)
    return acfg


def calling_config(line: TrunkLine, settings: SipSettings, id_uri: str) -> Any:
    """An account that never registers: outbound calls through the trunk, as `id_uri`."""
    acfg = _base(line, settings, id_uri)
    acfg.regConfig.registerOnAdd = False
    acfg.regConfig.registrarUri = ""
    if line.reg.outbound_proxy:
        acfg.sipConfig.proxies.append(_with_lr(line.reg.outbound_proxy))
    return acfg


class TrunkAccount(pj.Account):  # type: ignore[misc]
    """A trunk's account: reports the registrar's answers, takes calls like the others."""

    def __init__(self, name: str, on_answer: OnAnswer, on_call: Callable[[Any, Any], None]) -> None:
        super().__init__()
        self.name = name
        self._on_answer = on_answer
        self._on_call = on_call

    def onRegState(self, prm: Any) -> None:  # noqa: N802
        pin()
        code = int(prm.code)
        reason = str(prm.reason)
        expires = int(prm.expiration)
        if code == 0:  # no answer at all (PJSIP could not send)
            code, reason = 503, reason or "no answer"
        self._on_answer(self.name, code, reason, expires)

    def onIncomingCall(self, prm: Any) -> None:  # noqa: N802
        pin()
        self._on_call(self, prm)
