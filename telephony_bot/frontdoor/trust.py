"""What the front door admits, rendered for Kamailio from the same engine config a lone
worker's `telephony_bot.admission` reads (`trunks:` and `sip.admission`):

* `permissions`' address file: group 1 = trunks taken by source address (tag: the trunk's
  name), group 2 = the sources of trunks that must also authenticate, group 3 = loopback and
  private networks, the default when no trunk takes inbound calls (unless `allow_any`);
* `route[ADMIT]`: address → trunk, or digest auth (407 challenge; the password read by
  Kamailio from the environment, `$env(...)`, never written to a file), else 403;
* the flood limits: `pike` counts each source's new requests (not ACK, BYE or anything else
  inside a call; trunks and workers exempt) and bans one over its density for `ban_s`
  (`htable`), and a global INVITE rate per second (`htable` counter).

Workers behind the front door trust it (`--trusted-proxy`) and read the trunk it admitted
a call for from `X-Telephony-Bot-Trunk`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from telephony_bot.admission import parse_networks
from telephony_bot.config import AdmissionSettings
from telephony_bot.trunk_config import Trunk

PRIVATE_NETWORKS = (
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "100.64.0.0/10",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
)
GROUP_TRUNK, GROUP_AUTH_SOURCES, GROUP_PRIVATE = 1, 2, 3
BAN_S = 10  # a source pike flagged is refused this long


@dataclass(frozen=True)
class FrontTrunk:
    name: str
    allow: tuple[str, ...] = ()
    auth_user: str = ""
    realm: str = ""
    password_var: str = ""  # the environment variable Kamailio reads the password from


@dataclass(frozen=True)
class FrontDoorTrust:
    trunks: tuple[FrontTrunk, ...] = ()
    allow_any: bool = False
    pike_density: int = 20  # new requests per 2 s from one source before it is banned
    ban_s: int = BAN_S
    global_rate: int = 40  # INVITEs per second, all sources together

    @property
    def mode(self) -> str:
        if self.trunks:
            return "trunks"
        return "any" if self.allow_any else "private"


def from_settings(
    trunks: Mapping[str, Trunk], a: AdmissionSettings, workers: int, env_names: Mapping[str, str]
) -> FrontDoorTrust:
    """`env_names`: trunk name → the variable holding its password in Kamailio's environment
    (serve puts a password read from a file there)."""
    out = []
    for name, t in trunks.items():
        if not t.takes_inbound:
            continue
        auth = t.auth
        out.append(
            FrontTrunk(
                name,
                t.allow,
                auth.user if auth else "",
                auth.realm if auth else "",
                env_names.get(name, auth.password_env or "") if auth else "",
            )
        )
    per_source = max(a.per_source_burst, int(a.per_source_rate * 2))
    return FrontDoorTrust(
        tuple(out),
        a.allow_any,
        pike_density=per_source,
        global_rate=max(1, int(a.rate * workers)),
    )


def address_file(trust: FrontDoorTrust) -> str:
    """`permissions`' address file: `group address mask port tag` per line."""
    lines = ["# group address mask port tag  (rendered by telephony-bot from trunks:)"]
    for t in trust.trunks:
        group = GROUP_AUTH_SOURCES if t.auth_user else GROUP_TRUNK
        for net in parse_networks(t.allow):
            lines.append(f"{group} {net.network_address} {net.prefixlen} 0 {t.name}")
    if trust.mode == "private":
        for net in parse_networks(PRIVATE_NETWORKS):
            lines.append(f"{GROUP_PRIVATE} {net.network_address} {net.prefixlen} 0 private")
    return "\n".join(lines) + "\n"


def admit_route(trust: FrontDoorTrust) -> str:
    """The body of `route[ADMIT]`: sets $avp(trunk) and returns, or refuses and exits."""
    out = [f"\tif (allow_source_address(\"{GROUP_TRUNK}\")) {{",
           "\t\t$avp(trunk) = $avp(peer_tag);", "\t\treturn;", "\t}"]  # fmt: skip
    if trust.mode == "private":
        out += [f'\tif (allow_source_address("{GROUP_PRIVATE}")) {{', "\t\treturn;", "\t}"]
    elif trust.mode == "any":
        return "\n".join([*out, "\treturn;  # no trunk configured and allow_any: everyone"])
    auth = [t for t in trust.trunks if t.auth_user]
    if auth:
        out += ['\tif (is_present_hf("Proxy-Authorization")) {']
        for t in auth:
            cond = f'$au == "{_q(t.auth_user)}"'
            if t.allow:
                cond += (f' && allow_source_address("{GROUP_AUTH_SOURCES}")'
                         f' && $avp(peer_tag) == "{_q(t.name)}"')  # fmt: skip
            out += [
                f"\t\tif ({cond}) {{",
                f'\t\t\tif (pv_proxy_authenticate("{_q(t.realm)}", '
                f'"$env({_var(t.password_var)})", "0")) {{',
                "\t\t\t\tconsume_credentials();",
                f'\t\t\t\t$avp(trunk) = "{_q(t.name)}";',
                "\t\t\t\treturn;",
                "\t\t\t}",
                "\t\t\tif ($rc == -4) {  # stale nonce: a fresh challenge",
                f'\t\t\t\tproxy_challenge("{_q(t.realm)}", "0");',
                "\t\t\t\texit;",
                "\t\t\t}",
                "\t\t}",
            ]
        out += [
            '\t\t$var(code) = 403; $var(reason) = "Forbidden"; $var(why) = "auth_failed";',
            "\t\troute(REFUSE);",
            "\t}",
            '\t$var(why) = "auth_required";',
            "\troute(COUNT);",
            f'\tproxy_challenge("{_q(auth[0].realm)}", "0");',
            "\texit;",
        ]
    else:
        out += [
            '\t$var(code) = 403; $var(reason) = "Forbidden"; $var(why) = "not_allowed";',
            "\troute(REFUSE);",
        ]
    return "\n".join(out)


def _q(text: str) -> str:
    """A value inside a double-quoted Kamailio string (trunk names and users are checked
    tokens; anything else is refused here rather than escaped)."""
    if not re.fullmatch(r"[A-Za-z0-9_.*@+-]+", text):
        raise ValueError(f"{text!r} cannot go into the front door's configuration")
    return text


def _var(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"{name!r} is not an environment variable name")
    return name
