"""Dialplan file format (the first slice: defaults only; routes arrive with the dialplan issue)."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from telephony_bot.errors import ConfigError


class Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str = "echo"
    echo_delay_ms: int = Field(default=0, ge=0, le=5000)
    max_call_seconds: float = Field(default=0, ge=0)


class Dialplan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    defaults: Defaults = Defaults()


def load(path: str | Path) -> Dialplan:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read dialplan: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    try:
        return Dialplan.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"{p}: {where}: {first['msg']}") from None
