"""Render the front door's Kamailio configuration and dispatcher list from the template.

The template (`kamailio.cfg.tmpl`, next to this module) has `{{name}}` placeholders; every
one must be given and every value given must be used, so a template and its renderer never
drift apart silently. The dispatcher list names each worker once with `duid` (call-load
accounting) and `maxload` (the most calls a worker takes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from telephony_bot.errors import ConfigError
from telephony_bot.frontdoor import trust as trust_mod
from telephony_bot.frontdoor.trust import FrontDoorTrust
from telephony_bot.trunk_config import TrunkRegister, uri_host

TEMPLATE = "kamailio.cfg.tmpl"
DEFAULT_MODULE_PATH = "/usr/lib/x86_64-linux-gnu/kamailio/modules"
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_LOG_LEVELS = {"debug": 3, "info": 2, "notice": 1, "warning": 0, "error": -1}


@dataclass(frozen=True)
class WorkerAddress:
    """One SIP worker as the front door reaches it."""

    host: str
    port: int
    transport: str = "udp"

    @property
    def uri(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        suffix = "" if self.transport == "udp" else f";transport={self.transport}"
        return f"sip:{host}:{self.port}{suffix}"

    @classmethod
    def parse(cls, text: str) -> WorkerAddress:
        """`host:port` or `host:port/tcp` (IPv6: `[::1]:5061`)."""
        spec, _, transport = text.partition("/")
        transport = transport or "udp"
        if transport not in ("udp", "tcp"):
            raise ConfigError(f"worker {text!r}: transport must be udp or tcp")
        m = re.fullmatch(r"\[(?P<v6>[^\]]+)\]:(?P<p6>\d+)|(?P<host>[^:\s]+):(?P<port>\d+)", spec)
        if m is None:
            raise ConfigError(f"worker {text!r}: expected host:port, e.g. 10.0.0.5:5061")
        host = m.group("v6") or m.group("host")
        port = int(m.group("p6") or m.group("port"))
        if not 0 < port < 65536:
            raise ConfigError(f"worker {text!r}: port out of range")
        return cls(host, port, transport)


@dataclass(frozen=True)
class FrontDoorTls:
    """The front door's TLS listener (Kamailio `tls` module): TLS ends here, and calls go on
    to the workers over the private transport (SRTP keys in the SDP stay on the machine
    only when the workers are on it)."""

    port: int
    cert_file: Path
    key_file: Path
    ca_file: Path | None = None
    verify_peer: bool = False  # clients must show a certificate signed by ca_file

    def modparams(self) -> str:
        lines = [
            'loadmodule "tls.so"',
            'modparam("tls", "tls_method", "TLSv1.2+")',
            f'modparam("tls", "certificate", "{self.cert_file}")',
            f'modparam("tls", "private_key", "{self.key_file}")',
            f'modparam("tls", "verify_certificate", {int(self.verify_peer)})',
            f'modparam("tls", "require_certificate", {int(self.verify_peer)})',
        ]
        if self.ca_file is not None:
            lines.append(f'modparam("tls", "ca_list", "{self.ca_file}")')
        return "\n".join(lines)


@dataclass(frozen=True)
class TrunkRelay:
    """A trunk worker 0 registers through the front door (the `register` part of the cfg):
    its REGISTERs may go to `registrar_host`; `keepalive` is where the front door sends
    OPTIONS every `keepalive_s` to keep its own NAT binding open (the next hop: the outbound
    proxy, else the registrar)."""

    name: str
    registrar_host: str
    keepalive: str  # sip:HOST[:PORT][;transport=tcp]
    keepalive_s: int  # 0: none

    @classmethod
    def of(cls, name: str, reg: TrunkRegister) -> TrunkRelay:
        hop = (reg.outbound_proxy or reg.registrar).split(";", 1)[0]
        if reg.transport != "udp":
            hop += f";transport={reg.transport}"
        return cls(name, uri_host(reg.registrar).lower(), hop, reg.keepalive_s)


@dataclass(frozen=True)
class FrontDoorConfig:
    """What the rendered configuration needs to know."""

    listen_host: str  # 0.0.0.0: every local address
    listen_port: int
    workers: tuple[WorkerAddress, ...]
    run_dir: Path  # ctl and RPC sockets, pid file, dispatcher list
    transports: tuple[str, ...] = ("udp", "tcp")
    maxload: int = 4
    ping_interval_s: int = 2
    fr_timer_ms: int = 2000
    # an INVITE a worker took (1xx) but never answered: failover after this long (workers
    # answer or refuse within their answer timeout, 30 s by default)
    fr_inv_timer_ms: int = 40000
    hash_expire_s: int = 3600
    hash_initexpire_s: int = 45
    children: int = 2
    log_level: str = "notice"
    module_path: str = DEFAULT_MODULE_PATH
    tls: FrontDoorTls | None = None
    trunks: tuple[TrunkRelay, ...] = ()  # trunks registered through the front door
    trust: FrontDoorTrust = FrontDoorTrust()  # who may call in, how fast (frontdoor/trust.py)

    def check(self) -> None:
        if not self.workers:
            raise ConfigError("the front door needs at least one worker")
        if len({(w.host, w.port) for w in self.workers}) != len(self.workers):
            raise ConfigError("the same worker address is listed twice")
        if self.maxload < 1:
            raise ConfigError("maxload must be at least 1")
        if not self.transports or set(self.transports) - {"udp", "tcp"}:
            raise ConfigError("front door transports: udp and/or tcp")
        if self.log_level not in _LOG_LEVELS:
            raise ConfigError(f"log level {self.log_level!r}: one of {', '.join(_LOG_LEVELS)}")
        if self.ping_interval_s < 1 or self.fr_timer_ms < 100:
            raise ConfigError("ping interval must be >= 1 s and fr_timer >= 100 ms")
        if self.tls is not None and self.listen_host in ("0.0.0.0", "::", ""):
            raise ConfigError(
                "TLS at the front door needs the address it listens on (--sip-host), not any "
                "address: Kamailio then names it in Via and Record-Route"
            )
        if self.tls is not None and self.tls.port == self.listen_port:
            raise ConfigError("the front door's TLS port must differ from its SIP port")
        if self.tls is not None and not (Path(self.module_path) / "tls.so").exists():
            raise ConfigError(
                "TLS at the front door needs Kamailio's tls module (Debian package "
                "kamailio-tls-modules; `make install` installs it)"
            )


def render_template(text: str, values: dict[str, str]) -> str:
    """Fill `{{name}}` placeholders; a missing or unused value is an error."""
    names = set(_PLACEHOLDER.findall(text))
    missing = names - values.keys()
    unused = values.keys() - names
    if missing or unused:
        raise ConfigError(
            f"template placeholders do not match: missing {sorted(missing)}, "
            f"unused {sorted(unused)}"
        )
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def render_cfg(
    cfg: FrontDoorConfig, list_file: Path | None = None, address_file: Path | None = None
) -> str:
    """The Kamailio configuration; `list_file` is where dispatcher.list is and `address_file`
    the permissions' address list (default: the run dir)."""
    cfg.check()
    host = cfg.listen_host
    if host in ("0.0.0.0", "::", ""):
        # every local address, each bound on its own (Via and Record-Route then name the
        # address a request really arrived on, never 0.0.0.0)
        listen = f"port={cfg.listen_port}"
    else:
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        listen = "\n".join(f"listen={t}:{host}:{cfg.listen_port}" for t in cfg.transports)
    tls = "# no TLS listener (engine config sip.tls)"
    if cfg.tls is not None:
        listen += f"\nlisten=tls:{host}:{cfg.tls.port}\nenable_tls=yes"
        tls = cfg.tls.modparams()
    elif "tcp" not in cfg.transports:
        listen += "\ndisable_tcp=yes"
    template = resources.files(__package__).joinpath(TEMPLATE).read_text()
    return render_template(
        template,
        {
            **_trunk_values(cfg.trunks),
            "log_level": str(_LOG_LEVELS[cfg.log_level]),
            "children": str(cfg.children),
            "run_dir": str(cfg.run_dir),
            "list_file": str(list_file or cfg.run_dir / "dispatcher.list"),
            "module_path": cfg.module_path,
            "listen": listen,
            "tls": tls,
            "fr_timer_ms": str(cfg.fr_timer_ms),
            "hash_expire": str(cfg.hash_expire_s),
            "ping_interval": str(cfg.ping_interval_s),
            "fr_inv_timer_ms": str(cfg.fr_inv_timer_ms),
            "hash_initexpire": str(cfg.hash_initexpire_s),
            "pike_density": str(cfg.trust.pike_density),
            "ban_s": str(cfg.trust.ban_s),
            "global_rate": str(cfg.trust.global_rate),
            "address_file": str(address_file or cfg.run_dir / "address.list"),
            "group_trunk": str(trust_mod.GROUP_TRUNK),
            "group_auth": str(trust_mod.GROUP_AUTH_SOURCES),
            "admit_route": trust_mod.admit_route(cfg.trust),
        },
    )


def _trunk_values(trunks: tuple[TrunkRelay, ...]) -> dict[str, str]:
    """The trunk registration block: which registrars workers' REGISTERs may go to (a regex
    over the Request-URI's host; none: every REGISTER is refused), and the keepalive module
    pinging each trunk's next hop with OPTIONS."""
    hosts = sorted({t.registrar_host for t in trunks})
    # host names and addresses hold only [a-z0-9.:-]: a dot is the one character to escape
    regex = "^(" + "|".join(h.replace(".", "[.]") for h in hosts) + ")$" if hosts else "^$"
    pinged = sorted((t for t in trunks if t.keepalive_s > 0), key=lambda t: t.name)
    modules = ""
    if pinged:
        # rtimer runs route TRUNK_KEEPALIVE every interval; uac sends the OPTIONS (the
        # keepalive module of Kamailio 5.6.3 hangs at start with a destination configured)
        interval = min(t.keepalive_s for t in pinged)
        lines = [
            'loadmodule "rtimer.so"',
            'loadmodule "uac.so"',
            'modparam("uac", "restore_mode", "none")',
            f'modparam("rtimer", "timer", "name=trunk_ka;interval={interval};mode=1;")',
            'modparam("rtimer", "exec", "timer=trunk_ka;route=TRUNK_KEEPALIVE")',
            "",
            "route[TRUNK_KEEPALIVE] {",
        ]
        for t in pinged:
            lines += [
                '\t$uac_req(method) = "OPTIONS";',
                f'\t$uac_req(ruri) = "{t.keepalive}";',
                '\t$uac_req(furi) = "sip:keepalive@telephony-bot";',
                f'\t$uac_req(turi) = "{t.keepalive}";',
                "\tuac_req_send();",
            ]
        lines.append("}")
        modules = "\n".join(lines)
    return {"trunk_registrars": regex, "trunk_modules": modules}


def duid(index: int) -> str:
    """The dispatcher's id of worker `index` (the order of the list)."""
    return f"w{index}"


def render_dispatcher_list(cfg: FrontDoorConfig) -> str:
    """Set 1, one line per worker: uri, flags 8 (probe with OPTIONS), priority, attrs."""
    lines = ["# setid uri flags priority attrs  (rendered by telephony-bot; one line per worker)"]
    for i, w in enumerate(cfg.workers):
        lines.append(f"1 {w.uri} 8 0 duid={duid(i)};maxload={cfg.maxload}")
    return "\n".join(lines) + "\n"


def write(cfg: FrontDoorConfig, out_dir: Path | None = None) -> Path:
    """Write kamailio.cfg, dispatcher.list and address.list into `out_dir` (default: the run
    dir)."""
    target = out_dir or cfg.run_dir
    target.mkdir(parents=True, exist_ok=True)
    (target / "dispatcher.list").write_text(render_dispatcher_list(cfg))
    (target / "address.list").write_text(trust_mod.address_file(cfg.trust))
    path = target / "kamailio.cfg"
    path.write_text(render_cfg(cfg, target / "dispatcher.list", target / "address.list"))
    return path
