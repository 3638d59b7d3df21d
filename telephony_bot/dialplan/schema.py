"""Dialplan file format. This slice: `defaults` for every call, `providers`, and `tools`.
Per-number routes extend it (dialplan issue)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from telephony_bot.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AzureSettings(_Strict):
    resource: str  # name, or a full https://... base URL
    deployment: str
    api_version: str = "2024-10-01-preview"


class OpenAISettings(_Strict):
    model: str = "gpt-4o-realtime-preview-2024-12-17"
    dialect: Literal["preview", "ga"] | None = None  # default: from the model name
    base_url: str = "wss://api.openai.com/v1"  # any Realtime-compatible endpoint
    api_key_env: str = "OPENAI_API_KEY"  # the key itself never goes in the file
    azure: AzureSettings | None = None


class BargeIn(_Strict):
    enabled: bool = True
    min_interrupt_ms: int = Field(default=150, ge=40, le=2000)


class ToolDef(_Strict):
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    python: str  # "module:function", sync or async
    timeout_s: float = Field(default=8.0, gt=0, le=120)


class Defaults(_Strict):
    provider: Literal["echo", "openai"] = "echo"
    echo_delay_ms: int = Field(default=0, ge=0, le=5000)
    max_call_seconds: float = Field(default=0, ge=0)
    idle_seconds: float = Field(default=0, ge=0)
    instructions: str = ""
    voice: str = ""
    greeting: str | None = None  # None: none; "": the model greets; text: say exactly this
    audio_format: Literal["pcm16", "g711_ulaw", "g711_alaw"] = "pcm16"
    barge_in: BargeIn = BargeIn()
    tools: list[str] = Field(default_factory=list)  # builtins (hangup, transfer, send_dtmf)
    transfer_targets: dict[str, str] = Field(default_factory=dict)  # name -> SIP URI
    filler_after_ms: int = Field(default=700, ge=100, le=10000)
    openai: OpenAISettings = OpenAISettings()


class Dialplan(_Strict):
    version: int = 1
    defaults: Defaults = Defaults()
    tools: dict[str, ToolDef] = Field(default_factory=dict)


def load(path: str | Path) -> Dialplan:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read dialplan: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    try:
        plan = Dialplan.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"{p}: {where}: {first['msg']}") from None
    builtin = {"hangup", "transfer", "send_dtmf"}
    for name in plan.defaults.tools:
        if name not in builtin and name not in plan.tools:
            raise ConfigError(f"{p}: defaults.tools: unknown tool {name!r}")
    if "transfer" in plan.defaults.tools and not plan.defaults.transfer_targets:
        raise ConfigError(f"{p}: defaults.tools lists transfer but no transfer_targets are set")
    return plan
