"""Trunks: the PBXes and SIP providers the engine works with (`trunks:` in the engine config).

A trunk has a name (dialplan routes can match it: `match: {trunk: pbx}`) and one section or
field per concern: `register` makes the engine register with the trunk as an extension or a
user, with digest authentication; `allow` and `auth` say which sources it takes INVITEs from
and the digest credentials they must carry; `srtp` says how its calls' media is protected:

    trunks:
      pbx:
        register:
          registrar: "sip:pbx.example.com"
          user: "2001"
          password_env: PBX_PASSWORD          # or password_file: /run/secrets/pbx
      carrier:
        allow: ["192.0.2.0/24", "198.51.100.7"]
        auth: {user: carrier, password_env: TRUNK_PASSWORD}   # optional; realm: telephony-bot

The password is never written in the file: it comes from an environment variable or a file
(read when the engine starts, kept only in memory, never logged). Environment overrides:
`TELEPHONY_BOT_TRUNKS_<NAME>_<SECTION>_<FIELD>`, e.g. TELEPHONY_BOT_TRUNKS_PBX_REGISTER_USER.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from telephony_bot.admission import Credentials, TrunkRule, parse_networks
from telephony_bot.errors import ConfigError

TRUNK_NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,31}$"
_SIP_HOST_URI = re.compile(
    r"^sips?:(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>\d{1,5}))?"
    r"(?P<params>(;[A-Za-z0-9_.!~*'()%+-]+(=[A-Za-z0-9_.!~*'()%+:-]+)?)*)$"
)
_CONTACT_PARAMS = re.compile(
    r"^(;[A-Za-z0-9_.!~*'%+-]+(=(\"[^\"\r\n<>]*\"|[A-Za-z0-9_.!~*'%+:<>@-]+))?)*$"
)
_USER = re.compile(r"^[A-Za-z0-9_.!~*'()%&=+$,;?/+-]{1,64}$")
# Over TCP and TLS PJSIP's transport itself sends a CRLF keepalive on the connection every
# 90 s (PJSIP_TCP/TLS_KEEP_ALIVE_INTERVAL, fixed at compile time in the pjsua2 wheel).
STREAM_KEEPALIVE_S = 90


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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def sip_host_uri(value: str) -> str:
    """`sip:HOST[:PORT][;params]` (no user part), or ValueError."""
    if not _SIP_HOST_URI.match(value):
        raise ValueError("must be a SIP URI without a user part, e.g. sip:pbx.example.com:5060")
    return value


def uri_host(uri: str) -> str:
    """The host of `sip:HOST[:PORT][;params]`."""
    m = _SIP_HOST_URI.match(uri)
    return m.group("host").strip("[]") if m else ""


def uri_port(uri: str) -> int | None:
    """The port of `sip:HOST[:PORT][;params]` (None: not given)."""
    m = _SIP_HOST_URI.match(uri)
    return int(m.group("port")) if m and m.group("port") else None


class TrunkRegister(_Section):
    """Register with the trunk's registrar as `user`, with digest authentication."""

    registrar: str  # sip:HOST[:PORT]; the domain of the account (sip:USER@HOST)
    user: str  # the extension or account name: From, To and Contact user of the REGISTER
    auth_user: str | None = None  # the digest user name, when it differs from `user`
    realm: str = "*"  # "*": answer any realm the registrar challenges with
    password_env: str | None = None  # the environment variable holding the password
    password_file: Path | None = None  # or a file holding it (one line)
    expires: int = Field(300, ge=10, le=86400)  # seconds asked for; refreshed 5 s before
    transport: Literal["udp", "tcp", "tls"] = "udp"  # tls: needs sip.tls (EngineSettings)
    outbound_proxy: str | None = None  # every request of the account goes through it
    contact_params: str = ""  # extra Contact header parameters of the REGISTER, ";a=b;c"
    keepalive_s: int = Field(15, ge=0, le=3600)  # UDP NAT keepalive to the registrar; 0: off

    @model_validator(mode="before")
    @classmethod
    def _no_literal_password(cls, data: Any) -> Any:
        if isinstance(data, dict) and "password" in data:
            raise ValueError(
                "a password may not be written in the config: give password_env (the name "
                "of an environment variable) or password_file"
            )
        return data

    @field_validator("registrar", "outbound_proxy")
    @classmethod
    def _uri(cls, v: str | None) -> str | None:
        return None if v is None else sip_host_uri(v)

    @field_validator("registrar")
    @classmethod
    def _no_transport_param(cls, v: str) -> str:
        if ";transport=" in v.lower():
            raise ValueError("give the transport in `transport:`, not as a URI parameter")
        return v

    @field_validator("user", "auth_user")
    @classmethod
    def _user(cls, v: str | None) -> str | None:
        if v is not None and not _USER.match(v):
            raise ValueError("must be a SIP user name (letters, digits, +-_.), at most 64")
        return v

    @field_validator("contact_params")
    @classmethod
    def _contact_params(cls, v: str) -> str:
        v = v.strip()
        if v and not _CONTACT_PARAMS.match(v):
            raise ValueError('must be header parameters such as ";q=0.5;+sip.x=\\"y\\""')
        return v

    @model_validator(mode="after")
    def _checks(self) -> TrunkRegister:
        if (self.password_env is None) == (self.password_file is None):
            raise ValueError("give exactly one of password_env or password_file")
        if (
            self.transport != "udp"
            and "keepalive_s" in self.model_fields_set
            and self.keepalive_s not in (0, STREAM_KEEPALIVE_S)
        ):
            raise ValueError(
                f"keepalive_s applies to UDP; over {self.transport} PJSIP sends a CRLF "
                f"keepalive every {STREAM_KEEPALIVE_S} s on the connection (fixed in this "
                "PJSIP build): leave keepalive_s out"
            )
        if self.registrar.startswith("sips:") and self.transport != "tls":
            raise ValueError("a sips: registrar needs transport: tls")
        return self

    @property
    def digest_user(self) -> str:
        return self.auth_user or self.user

    @property
    def domain(self) -> str:
        """The registrar's host[:port]: the account is sip:USER@DOMAIN."""
        return self.registrar.split(":", 1)[1].split(";", 1)[0]

    def password(self, env: Mapping[str, str] | None = None) -> str:
        """The secret, from the environment or the file; ConfigError naming what is missing.
        Never logged, never stored in the settings."""
        env = os.environ if env is None else env
        # a password may begin or end with spaces: only the file's line break is dropped
        return read_secret("", self.password_env, self.password_file, env, strip="\r\n")

    def describe(self) -> str:
        via = f" via {self.outbound_proxy}" if self.outbound_proxy else ""
        return f"{self.user}@{self.domain} over {self.transport}{via}"


def read_secret(
    what: str,
    env_name: str | None,
    file: Path | None,
    env: Mapping[str, str],
    strip: str | None = None,
) -> str:
    """The secret from `env_name` in `env`, or from `file` (`strip`ped: default whitespace);
    ConfigError if unset, its message led by `what` when given."""
    lead = f"{what}: " if what else ""
    if env_name:
        value = env.get(env_name, "")
        if not value:
            raise ConfigError(f"{lead}environment variable {env_name} is not set")
        return value
    assert file is not None
    try:
        value = file.read_text().strip(strip)
    except OSError as exc:
        raise ConfigError(f"{lead}cannot read {file}: {exc.strerror}") from None
    if not value:
        raise ConfigError(f"{lead}{file} is empty")
    return value


class TrunkAuth(_Section):
    """Digest credentials a trunk's INVITEs must carry (401 challenge, 403 when wrong)."""

    user: str = Field(min_length=1)
    realm: str = Field("telephony-bot", min_length=1)
    password_env: str | None = None  # the variable that holds the password
    password_file: Path | None = None  # or a file that holds it (e.g. /run/secrets/trunk)

    @model_validator(mode="after")
    def _one_source(self) -> TrunkAuth:
        if (self.password_env is None) == (self.password_file is None):
            raise ValueError("give exactly one of password_env or password_file")
        return self

    @field_validator("user", "realm")
    @classmethod
    def _token(cls, v: str) -> str:
        if any(c in v for c in '"\\\r\n'):
            raise ValueError("must not contain quotes, backslashes or line breaks")
        return v

    def credentials(self, trunk: str, env: Mapping[str, str] | None = None) -> Credentials:
        env = os.environ if env is None else env
        pw = read_secret(f"trunks.{trunk}.auth", self.password_env, self.password_file, env)
        return Credentials(self.user, pw, self.realm)


class Trunk(_Section):
    """One trunk; each part of the engine that works with trunks adds its section here."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    # `register:` in the file (the attribute name `register` belongs to pydantic's ABC base)
    registration: TrunkRegister | None = Field(None, alias="register")
    # SRTP for this trunk's calls; None: the engine's default (`sip.srtp`)
    srtp: SrtpMode | None = None
    allow: tuple[str, ...] = ()  # source addresses/CIDR networks whose INVITEs it takes
    auth: TrunkAuth | None = None  # digest credentials its INVITEs must carry

    @field_validator("allow")
    @classmethod
    def _networks(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        parse_networks(v)  # ValueError names the bad entry
        return v

    def rule(self, name: str, env: Mapping[str, str] | None = None) -> TrunkRule:
        """What admission checks for this trunk (secrets resolved now: ConfigError if unset)."""
        auth = self.auth.credentials(name, env) if self.auth is not None else None
        return TrunkRule(name, parse_networks(self.allow), auth)

    @property
    def takes_inbound(self) -> bool:
        """Whether admission lets INVITEs in for this trunk (an allow list or credentials;
        a registered trunk's calls come in by its registration's line token instead)."""
        return bool(self.allow) or self.auth is not None


def check_names(trunks: Mapping[str, Any]) -> None:
    for name in trunks:
        if not re.match(TRUNK_NAME, name):
            raise ValueError(
                f"trunk name {name!r}: a letter, then letters, digits, - or _ (at most 32)"
            )


def check_name(name: str) -> str:
    check_names({name: None})
    return name


def trunk_rules(
    trunks: Mapping[str, Trunk], env: Mapping[str, str] | None = None
) -> tuple[TrunkRule, ...]:
    """The admission rules of every trunk that takes inbound calls, in config order."""
    return tuple(t.rule(n, env) for n, t in trunks.items() if t.takes_inbound)


def registering(trunks: Mapping[str, Trunk]) -> dict[str, TrunkRegister]:
    """The trunks the engine registers with, by name."""
    return {n: t.registration for n, t in trunks.items() if t.registration is not None}


def check_secrets(trunks: Mapping[str, Trunk], env: Mapping[str, str] | None = None) -> list[str]:
    """Every trunk secret that cannot be read, as `trunks.<name>.register.<field>: why`."""
    problems = []
    for name, reg in registering(trunks).items():
        field = "password_env" if reg.password_env is not None else "password_file"
        try:
            reg.password(env)
        except ConfigError as exc:
            problems.append(f"trunks.{name}.register.{field}: {exc}")
    return problems


# ---------- TELEPHONY_BOT_TRUNKS_<NAME>_[<SECTION>_]<FIELD> ----------

ENV_PREFIX = "TELEPHONY_BOT_TRUNKS_"
_SECRET_FIELD = "password"  # ..._REGISTER_PASSWORD: that variable holds the password


def _env_paths() -> list[tuple[str, tuple[str, ...], bool]]:
    """(variable suffix, field path, is a list) for every field a trunk has, longest first."""
    out = []
    for field_name, info in Trunk.model_fields.items():
        name = info.alias or field_name  # the key in the file
        model = _model_of(info.annotation)
        if model is None:
            out.append((f"_{name.upper()}", (name,), _is_list(info.annotation)))
            continue
        for f, finfo in model.model_fields.items():
            out.append((f"_{name.upper()}_{f.upper()}", (name, f), _is_list(finfo.annotation)))
        if "password_env" in model.model_fields:
            out.append((f"_{name.upper()}_{_SECRET_FIELD.upper()}", (name, _SECRET_FIELD), False))
    return sorted(out, key=lambda x: -len(x[0]))


def _model_of(annotation: Any) -> type[BaseModel] | None:
    for arg in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _is_list(annotation: Any) -> bool:
    origin = getattr(annotation, "__origin__", None)
    return origin in (list, tuple) or any(_is_list(a) for a in getattr(annotation, "__args__", ()))


def env_overrides(env: Mapping[str, str], names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Trunk fields from the environment: {name: {field or section: value or {field: value}}}.

    The trunk name is what comes before `_<SECTION>_<FIELD>` (or `_<FIELD>`); it matches a
    trunk of the file whatever its case (and `_` for `-`), or names a new one (lower case).
    `..._<SECTION>_PASSWORD` holds the password itself: it becomes that section's
    `password_env`. A variable that names no field is a ConfigError."""
    known = {n.upper().replace("-", "_"): n for n in names}
    paths = _env_paths()
    out: dict[str, dict[str, Any]] = {}
    for key in sorted(env):
        if not key.startswith(ENV_PREFIX):
            continue
        rest = key[len(ENV_PREFIX) :]
        value: Any = env[key]
        found = next((p for p in paths if rest.endswith(p[0]) and len(rest) > len(p[0])), None)
        if found is None:
            raise ConfigError(f"environment: {key}: names no trunk setting")
        suffix, path, is_list = found
        raw = rest[: -len(suffix)]
        name = known.get(raw, raw.lower())
        if is_list:
            value = [x.strip() for x in str(value).split(",") if x.strip()]
        if path[-1] == _SECRET_FIELD:
            path, value = (*path[:-1], "password_env"), key
        target = out.setdefault(name, {})
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    return out


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
