"""Settings, validated when the process starts: the SIP worker's (`SipSettings`, from the
command line) and the engine's (`EngineSettings`: MQTT, CDR, admin API, outbound calls, from
`--config FILE` and the environment)."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from telephony_bot import trunk_config
from telephony_bot.errors import ConfigError
from telephony_bot.trunk_config import SrtpMode, SrtpPolicy, Trunk


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SipTlsSettings(_Section):
    """The engine's TLS listener (`sip.tls`): SIP over TLS, `sips:` URIs.

    The certificate and key come from files (PEM; the key unencrypted, readable by the engine
    only). `ca_file` is whom the engine trusts: the CAs of client certificates when
    `verify_peer` is on, and of the servers it connects to over TLS (outbound calls); without
    it, the system's CAs. The same transport opens the TLS connections of trunks that
    register over TLS (`trunks.<name>.register.transport: tls`)."""

    port: int = Field(5061, ge=1, le=65535)
    cert_file: Path  # the engine's certificate (PEM, its chain after it)
    key_file: Path  # its private key (PEM, not encrypted)
    ca_file: Path | None = None
    # Incoming TLS connections must present a certificate signed by `ca_file` (mutual TLS);
    # off: any client may connect (as HTTPS), and the trunk's allow-list or auth decides.
    verify_peer: bool = False
    # TLS connections the engine opens (outbound calls, registrations) check the far end's
    # certificate and name against `ca_file` (or the system's CAs); dropped when they fail.
    verify_server: bool = True

    @field_validator("cert_file", "key_file", "ca_file")
    @classmethod
    def _readable(cls, v: Path | None) -> Path | None:
        if v is None:
            return v
        if not v.is_file():
            raise ValueError(f"no such file: {v}")
        if not os.access(v, os.R_OK):
            raise ValueError(f"cannot read {v}")
        return v.resolve()

    @model_validator(mode="after")
    def _usable(self) -> SipTlsSettings:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(
                self.cert_file, self.key_file, password=_no_password
            )
        except (ssl.SSLError, _EncryptedKey) as exc:
            raise ValueError(
                f"cert_file {self.cert_file} and key_file {self.key_file} are not a usable "
                f"PEM certificate and its unencrypted private key: {_ssl_reason(exc)}"
            ) from None
        if self.ca_file is not None:
            try:
                ssl.create_default_context(cafile=str(self.ca_file))
            except ssl.SSLError as exc:
                raise ValueError(
                    f"ca_file {self.ca_file}: not PEM CA certificates: {_ssl_reason(exc)}"
                ) from None
        elif self.verify_peer:
            raise ValueError("verify_peer needs ca_file: the CAs client certificates must have")
        return self

    def trust_file(self) -> str:
        """The CA file TLS peers are verified against: `ca_file`, else the system's bundle."""
        if self.ca_file is not None:
            return str(self.ca_file)
        paths = ssl.get_default_verify_paths()
        return paths.cafile or paths.openssl_cafile or ""


class _EncryptedKey(Exception):
    pass


def _no_password() -> str:
    raise _EncryptedKey("the private key is encrypted (give it unencrypted, readable by the "
                        "engine only)")  # fmt: skip


def _ssl_reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", None) or exc)


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
    # How call audio crosses into the engine: "native" (a pjmedia port in C, sip/native_port),
    # "python" (pjsua2 AudioMediaPort callbacks), "auto" (native when its self-check passes).
    media_port: str = "auto"
    tls: SipTlsSettings | None = None  # a TLS listener (engine config `sip.tls`); None: none
    srtp: SrtpPolicy = field(default_factory=SrtpPolicy)  # SRTP per call (`sip.srtp`, trunks)
    # Trunk registration (trunks: in the engine config): whether this worker registers them
    # (behind the front door only worker 0 does), and the front door's public host:port,
    # which a registration then names as Contact and sends its REGISTERs through ("": none).
    register_trunks: bool = True
    front_door: str = ""

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
        if self.media_port not in ("auto", "native", "python"):
            raise ConfigError(f"media port must be auto, native or python, got {self.media_port!r}")
        if not 1024 <= self.rtp_port <= 65535 - self.rtp_port_range:
            raise ConfigError(f"RTP port {self.rtp_port} out of range")
        if self.front_door and not re.fullmatch(r"[A-Za-z0-9.\-]+:\d{1,5}", self.front_door):
            raise ConfigError(f"--front-door-address must be host:port, got {self.front_door!r}")


# ---------------------------------------------------------------- engine settings
#
# What the engine around the calls needs: the MQTT broker (events, commands), the CDR file,
# the admin HTTP API, outbound calling. Read from an optional `--config FILE` (YAML) with
# environment overrides (TELEPHONY_BOT_<SECTION>_<FIELD>), validated when the process starts.
# Secrets are `SecretStr`: printing or logging the settings shows `**********`.

_ENV_PREFIX = "TELEPHONY_BOT_"
COMMAND_VERBS = ("hangup", "transfer", "say", "inject", "originate")


def tls_context(tls: bool, ca_file: Path | None) -> ssl.SSLContext | None:
    if not tls:
        return None
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


class MqttSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = False
    ca_file: Path | None = None  # CA bundle for the broker's certificate (tls); default: system
    prefix: str = "telephony-bot"
    node: str = Field(default_factory=lambda: socket.gethostname() or "node")
    keepalive: int = Field(30, ge=5, le=3600)
    queue: int = Field(10000, ge=10)  # events held while the broker is away (drop-oldest)
    # verbs integrators may send; anything else is refused with a reason
    commands: tuple[str, ...] = ("hangup", "transfer", "say", "inject", "originate")

    def tls_context(self) -> ssl.SSLContext | None:
        """What the engine's MQTT connections (events, commands, tools) verify the broker
        with: None without TLS; `ca_file`, or the system's CAs."""
        return tls_context(self.tls, self.ca_file)

    @field_validator("prefix", "node")
    @classmethod
    def _topic_level(cls, v: str) -> str:
        v = v.strip().strip("/")
        if not v or any(c in v for c in "+#") or v.startswith("$"):
            raise ValueError("must be non-empty, without '+', '#' or a leading '$'")
        return v

    @field_validator("ca_file")
    @classmethod
    def _ca_exists(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"no such file: {v}")
        return v

    @field_validator("commands")
    @classmethod
    def _known_verbs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [x for x in v if x not in COMMAND_VERBS]
        if bad:
            raise ValueError(f"unknown verbs {bad}; known: {', '.join(COMMAND_VERBS)}")
        return v


class CdrSettings(_Section):
    path: Path | None = None  # JSON lines, one record per call; None: no file

    @field_validator("path")
    @classmethod
    def _dir_exists(cls, v: Path | None) -> Path | None:
        if v is not None and not v.parent.is_dir():
            raise ValueError(f"directory {v.parent} does not exist")
        return v


class AdminSettings(_Section):
    host: str = "127.0.0.1"
    port: int | None = Field(None, ge=0, le=65535)  # None: no admin API
    token: SecretStr | None = None  # bearer token the admin API requires


class OutboundSettings(_Section):
    """Where `originate` dials out, and to which numbers it may."""

    # The trunk or PBX calls go through: `sip:HOST[:PORT][;params]` (an IP trunk: a call to
    # NUMBER becomes `sip:NUMBER@HOST[:PORT][;params]`), or the name of a trunk of `trunks:`
    # the engine registers with (calls go to sip:NUMBER@<its registrar's domain> as its
    # user, with its digest credentials and outbound proxy). None: originate is refused.
    trunk: str | None = None
    from_user: str = "bot"  # caller id when the command gives none
    allow: tuple[str, ...] = ()  # number patterns: exact, or with * and ? wildcards
    route: str | None = None  # dialplan route when the command names none
    ring_timeout_s: float = Field(30.0, gt=0, le=300)
    # at most this many originated calls in any minute on this node (`serve` splits it
    # evenly over its workers, at least one each); a command over it is refused
    max_per_minute: int = Field(30, ge=1, le=100_000)

    @field_validator("trunk")
    @classmethod
    def _sip_uri(cls, v: str | None) -> str | None:
        if v is None or re.fullmatch(trunk_config.TRUNK_NAME, v):
            return v  # a trunk's name: checked against `trunks:` by EngineSettings
        if not re.fullmatch(r"sips?:[^@\s]+", v):
            raise ValueError(
                "must be a SIP URI without a user part, e.g. sip:10.0.0.5:5060, or the name "
                "of a trunk in `trunks:`"
            )
        return v

    @property
    def via_trunk(self) -> str | None:
        """The name of the registered trunk calls go out through (None: an IP trunk URI)."""
        t = self.trunk
        return t if t is not None and not t.startswith(("sip:", "sips:")) else None


class PricesSettings(_Section):
    """Where the price table comes from (see `price_table`)."""

    file: Path | None = None  # a YAML price table replacing the shipped one; None: shipped

    @field_validator("file")
    @classmethod
    def _file_exists(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"no such file: {v}")
        return v


class AdmissionSettings(_Section):
    """Who may call in and how fast (`telephony_bot.admission`); `sip.admission` in the file."""

    # With no trunk that takes inbound calls: true takes INVITEs from any address; false
    # (default) only from loopback and private networks (a LAN softphone, a container host).
    allow_any: bool = False
    rate: float = Field(20.0, gt=0, le=10000)  # INVITEs per second, all sources together
    burst: int = Field(20, ge=1, le=100000)
    per_source_rate: float = Field(10.0, gt=0, le=10000)  # INVITEs per second from one address
    per_source_burst: int = Field(20, ge=1, le=100000)
    # calls from one address (not a trunk's) answered but not ACKed: more get 503
    max_unacked_per_source: int = Field(2, ge=1, le=1000)
    ack_timeout_s: float = Field(4.0, gt=0, le=32)  # 200 OK sent, no ACK: hang up after this
    answer_timeout_s: float = Field(30.0, gt=0, le=300)  # INVITE not answered: 408 after this
    # the front door's addresses: INVITEs from them were checked there (allow lists, auth,
    # flood limits); the trunk it names in X-Telephony-Bot-Trunk is believed
    trusted_proxies: tuple[str, ...] = ()

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for a in v:
            try:
                ipaddress.ip_address(a)
            except ValueError:
                raise ValueError(f"{a!r} is not an IP address") from None
        return v


class SipSection(_Section):
    """SIP settings beyond the command line's: TLS, SRTP, admission (`sip:` in the file)."""

    tls: SipTlsSettings | None = None  # None: no TLS listener
    srtp: SrtpMode = "off"  # calls of no trunk, and trunks that set no `srtp`
    admission: AdmissionSettings = AdmissionSettings()  # who may call in, and how fast


class LoggingSettings(_Section):
    """What the engine's log may hold beyond its own doings."""

    # what callers and the bot said, at info level (redacted by the route's patterns);
    # false: only at debug level (--log-level debug)
    transcripts: bool = False


class EngineSettings(_Section):
    sip: SipSection = SipSection()
    trunks: dict[str, Trunk] = {}
    mqtt: MqttSettings | None = None  # None: no MQTT events or commands
    cdr: CdrSettings = CdrSettings()
    admin: AdminSettings = AdminSettings()
    outbound: OutboundSettings = OutboundSettings()
    prices: PricesSettings = PricesSettings()
    logging: LoggingSettings = LoggingSettings()
    trunks: dict[str, Trunk] = Field(default_factory=dict)  # by name (trunk_config.py)

    @field_validator("trunks")
    @classmethod
    def _trunk_names(cls, v: dict[str, Trunk]) -> dict[str, Trunk]:
        trunk_config.check_names(v)
        return v

    @model_validator(mode="after")
    def _outbound_trunk(self) -> EngineSettings:
        name = self.outbound.via_trunk
        if name is not None:
            trunk = self.trunks.get(name)
            if trunk is None:
                known = ", ".join(self.trunks) or "none configured"
                raise ValueError(f"outbound.trunk: no trunk named {name!r} (trunks: {known})")
            if trunk.registration is None:
                raise ValueError(
                    f"outbound.trunk: trunk {name!r} has no `register` section: calls go out "
                    "through a trunk the engine registers with, or through an IP trunk's "
                    "sip: URI"
                )
        return self

    @model_validator(mode="after")
    def _tls_trunks(self) -> EngineSettings:
        """A trunk that registers over TLS needs the engine's TLS transport (`sip.tls`): its
        files and checks are the ones the connection to the registrar uses."""
        for name, reg in trunk_config.registering(self.trunks).items():
            if reg.transport == "tls" and self.sip.tls is None:
                raise ValueError(
                    f"trunks.{name}.register.transport: tls needs the engine's TLS transport, "
                    "and sip.tls is not set: add sip.tls (cert_file, key_file; ca_file: the "
                    "CAs the registrar's certificate is checked against), or register over "
                    "udp or tcp"
                )
        return self

    def describe(self) -> dict[str, Any]:
        """For the start-up log line: what is configured, never a secret."""
        m = self.mqtt
        return {
            "mqtt": f"{m.host}:{m.port} tls={m.tls} prefix={m.prefix} node={m.node}"
            if m
            else "off",
            "cdr": str(self.cdr.path) if self.cdr.path else "off",
            "admin": f"{self.admin.host}:{self.admin.port}" if self.admin.port else "off",
            "outbound": self.outbound.trunk or "off",
            "prices": str(self.prices.file) if self.prices.file else "shipped",
            "sip_tls": f"port {self.sip.tls.port}" if self.sip.tls else "off",
            "srtp": self.srtp_policy().describe(),
            "transcripts_logged": self.logging.transcripts,
            "trunks": ", ".join(
                f"{n} ({t.registration.describe()})" if t.registration else n
                for n, t in self.trunks.items()
            )
            or "none",
        }

    def srtp_policy(self) -> SrtpPolicy:
        return SrtpPolicy.of(self.sip.srtp, self.trunks)


_ENV_FIELDS: dict[str, tuple[str, ...]] = {
    "sip": ("srtp", "tls.port", "tls.cert_file", "tls.key_file", "tls.ca_file",
            "tls.verify_peer", "tls.verify_server"),
    "mqtt": ("host", "port", "username", "password", "tls", "ca_file", "prefix", "node",
             "keepalive", "queue", "commands"),
    "cdr": ("path",),
    "admin": ("host", "port", "token"),
    "outbound": ("trunk", "from_user", "allow", "route", "ring_timeout_s", "max_per_minute"),
    "prices": ("file",),
    "logging": ("transcripts",),
}  # fmt: skip
_LIST_FIELDS = {"commands", "allow"}


def _env_overrides(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """`{section: {field: value}}`; a dotted field (`tls.port`, variable `..._SIP_TLS_PORT`)
    lands in a nested mapping (`{"tls": {"port": ...}}`)."""
    out: dict[str, dict[str, Any]] = {}
    for section, names in _ENV_FIELDS.items():
        for name in names:
            var = f"{_ENV_PREFIX}{section.upper()}_{name.replace('.', '_').upper()}"
            value = env.get(var)
            if value is None:
                continue
            parsed: Any = value
            if name in _LIST_FIELDS:
                parsed = [x.strip() for x in value.split(",") if x.strip()]
            *parents, leaf = name.split(".")
            target = out.setdefault(section, {})
            for p in parents:
                target = target.setdefault(p, {})
            target[leaf] = parsed
    return out


def load_engine_settings(
    path: str | Path | None = None, env: Mapping[str, str] | None = None, *, secrets: bool = True
) -> EngineSettings:
    """The file (if any), then `TELEPHONY_BOT_<SECTION>_<FIELD>` variables over it.
    `secrets=False`: do not require the trunks' passwords to be readable (`dialplan
    validate --config` on a machine without them).

    MQTT is on when the file has an `mqtt:` section or TELEPHONY_BOT_MQTT_HOST is set."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    where = str(path) if path else "environment"
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        data = loaded
    for section, values in _env_overrides(env).items():
        if section == "mqtt" and data.get("mqtt") is None and "host" not in values:
            continue  # MQTT settings without a broker host: MQTT stays off
        current = data.get(section)
        if current is None:
            current = {}
        if not isinstance(current, dict):
            raise ConfigError(f"{where}: section {section!r} must be a mapping")
        data[section] = _merge(current, values)
    if "mqtt" in data and data["mqtt"] is None:
        data["mqtt"] = {}
    _merge_trunks(data, env, where)
    try:
        settings = EngineSettings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(where, exc)) from None
    problems = trunk_config.check_secrets(settings.trunks, env) if secrets else []
    if problems:
        raise ConfigError("\n".join(f"{where}: {p}" for p in problems))
    return settings


def _merge_trunks(data: dict[str, Any], env: Mapping[str, str], where: str) -> None:
    """TELEPHONY_BOT_TRUNKS_<NAME>_<SECTION>_<FIELD> over the file's `trunks:`."""
    trunks = data.get("trunks")
    if trunks is None:
        trunks = {}
    if not isinstance(trunks, dict):
        raise ConfigError(f"{where}: section 'trunks' must be a mapping of trunk names")
    overrides = trunk_config.env_overrides(env, [str(k) for k in trunks])
    if not overrides:
        return
    merged = dict(trunks)
    for name, fields in overrides.items():
        current = merged.get(name)
        current = dict(current) if isinstance(current, dict) else {}
        for key, value in fields.items():
            if isinstance(value, dict):
                section = current.get(key)
                section = dict(section) if isinstance(section, dict) else {}
                if "password_env" in value:  # the environment's password wins over the file's
                    section.pop("password_file", None)
                section.update(value)
                current[key] = section
            else:
                current[key] = value
        merged[name] = current
    data["trunks"] = merged


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _explain(where: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown setting"
        lines.append(f"{where}: {loc}: {msg}" if loc else f"{where}: {msg}")
    return "\n".join(lines)
