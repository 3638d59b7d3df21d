"""Trunks in the engine config (`trunks:`, a mapping of name → trunk): one pydantic model per
concern. Part "trust": which sources a trunk takes (`allow`) and the digest credentials its
INVITEs must carry (`auth`). Secrets come from the environment or a file, never the YAML.

    trunks:
      carrier:
        allow: ["192.0.2.0/24", "198.51.100.7"]
        auth: {user: carrier, password_env: TRUNK_PASSWORD}   # optional; realm: telephony-bot
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from telephony_bot.admission import Credentials, TrunkRule, parse_networks
from telephony_bot.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def read_secret(what: str, env_name: str | None, file: Path | None, env: Mapping[str, str]) -> str:
    """The secret from `env_name` in `env`, or from `file` (stripped); ConfigError if unset."""
    if env_name:
        value = env.get(env_name, "")
        if not value:
            raise ConfigError(f"{what}: environment variable {env_name} is not set")
        return value
    assert file is not None
    try:
        value = file.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {file}: {exc.strerror}") from None
    if not value:
        raise ConfigError(f"{what}: {file} is empty")
    return value


class TrunkAuth(_Model):
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


class Trunk(_Model):
    """One trunk or PBX the engine takes calls from (and, later, registers with)."""

    allow: tuple[str, ...] = ()  # source addresses/CIDR networks whose INVITEs it takes
    auth: TrunkAuth | None = None

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
        """Whether this trunk admits INVITEs at all (an allow list or credentials)."""
        return bool(self.allow) or self.auth is not None


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"trunk name {name!r}: letters, digits, '_', '.', '-' (max 64)")
    return name


def trunk_rules(
    trunks: Mapping[str, Trunk], env: Mapping[str, str] | None = None
) -> tuple[TrunkRule, ...]:
    """The admission rules of every trunk that takes inbound calls, in config order."""
    return tuple(t.rule(n, env) for n, t in trunks.items() if t.takes_inbound)
