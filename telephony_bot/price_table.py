"""The price table: what each provider's model costs (USD per 1M tokens, by kind), read
from YAML with a `version` the call record keeps.

The package ships one (`assets/prices.yaml`, OpenAI's published prices with their source);
the engine config can name another file (`prices.file`), which replaces it as a whole. A
provider type listed under `free` costs nothing; otherwise the price is looked up by the
provider's type and its exact model name, and a pair the table lacks has no price (the
call's cost is unknown, recorded as null), with a warning logged once per worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from telephony_bot import log
from telephony_bot.dialplan.schema import ProviderKind
from telephony_bot.errors import ConfigError
from telephony_bot.session.usage import FREE, Price, Rates

_log = log.get("prices")

SHIPPED = Path(__file__).resolve().parent / "assets" / "prices.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TokenPrices(_Strict):
    input: float = Field(ge=0)
    cached_input: float = Field(ge=0)
    output: float = Field(ge=0)


class ModelPrices(_Strict):
    text: TokenPrices
    audio: TokenPrices

    def rates(self) -> Rates:
        t, a = self.text, self.audio
        return Rates(t.input, t.cached_input, t.output, a.input, a.cached_input, a.output)


class PriceFile(_Strict):
    version: str = Field(min_length=1)
    currency: Literal["USD"] = "USD"
    free: list[ProviderKind] = Field(default_factory=list)
    models: dict[ProviderKind, dict[str, ModelPrices]] = Field(default_factory=dict)

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, v: object) -> object:
        return str(v) if isinstance(v, int | float | date) else v  # `version: 2026-12-07`

    @model_validator(mode="after")
    def _free_has_no_models(self) -> PriceFile:
        both = sorted(k for k in self.free if self.models.get(k))
        if both:
            raise ValueError(f"{', '.join(both)} is listed as free and has model prices too")
        return self


@dataclass
class PriceTable:
    version: str
    free: frozenset[str]
    rates: Mapping[tuple[str, str], Rates]
    source: str = ""  # the file it was read from
    _warned: set[tuple[str, str]] = field(default_factory=set, repr=False)

    def price(self, kind: str, model: str) -> Price:
        """The price of `model` on a provider of type `kind` (rates None: not known)."""
        if kind in self.free:
            return Price(self.version, kind, model, FREE, free=True)
        rates = self.rates.get((kind, model))
        if rates is None and (kind, model) not in self._warned:
            self._warned.add((kind, model))
            _log.warning(
                "no price for this provider and model: call records will show cost null",
                provider_type=kind,
                model=model,
                price_table=self.version,
                prices_file=self.source,
            )
        return Price(self.version, kind, model, rates)


@cache
def shipped() -> PriceTable:
    """The table the package ships (read once)."""
    return load()


def load(path: str | Path | None = None) -> PriceTable:
    """The table in `path` (None: the shipped one). ConfigError names the file and the
    field of any mistake."""
    where = Path(path) if path is not None else SHIPPED
    try:
        data = yaml.safe_load(where.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read prices file {where}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None
    try:
        parsed = PriceFile.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown field"
            lines.append(f"{where}: {loc}: {msg}")
        raise ConfigError("\n".join(lines)) from None
    rates = {
        (kind, model): prices.rates()
        for kind, models in parsed.models.items()
        for model, prices in models.items()
    }
    return PriceTable(parsed.version, frozenset(parsed.free), rates, str(where))
