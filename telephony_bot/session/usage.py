"""Per-call usage: audio seconds each way, provider tokens by kind, and their cost.

Each response is priced when it is done, at the price of the provider that gave it (a call
handed to a fallback pays the fallback's prices from then on). A response whose provider
and model the price table does not know makes the call's cost unknown (None), never a
guess; responses without tokens cost nothing, priced or not. A call only free providers
(the offline engine, the echo) answered is not billed: cost 0, no price table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from telephony_bot.providers.base import Usage

PER_TOKENS = 1_000_000  # prices are USD per this many tokens


@dataclass(frozen=True)
class Rates:
    """USD per 1M tokens of each kind. Cached input is part of the input counts and is
    charged at its own rate instead of the input rate."""

    text_in: float = 0.0
    text_cached_in: float = 0.0
    text_out: float = 0.0
    audio_in: float = 0.0
    audio_cached_in: float = 0.0
    audio_out: float = 0.0

    def cost(self, u: Usage) -> float:
        text_cached = min(u.input_cached_text_tokens, u.input_text_tokens)
        audio_cached = min(u.input_cached_audio_tokens, u.input_audio_tokens)
        usd = (
            (u.input_text_tokens - text_cached) * self.text_in
            + text_cached * self.text_cached_in
            + (u.input_audio_tokens - audio_cached) * self.audio_in
            + audio_cached * self.audio_cached_in
            + u.output_text_tokens * self.text_out
            + u.output_audio_tokens * self.audio_out
        )
        return usd / PER_TOKENS


FREE = Rates()


@dataclass(frozen=True)
class Price:
    """What one provider's model costs, as a price table says (`rates` None: the table
    does not know it)."""

    table_version: str
    kind: str  # the provider's type: openai, azure, compatible, local, echo
    model: str
    rates: Rates | None
    free: bool = False  # a provider type the table lists as free (local, echo): not billed

    @property
    def label(self) -> str:
        return f"{self.kind} {self.model}".strip()


@dataclass(frozen=True)
class CallPrices:
    """The prices a call runs at: one per provider of its route, by the name the session
    config carries (`SessionConfig.provider`), and the version of the table they are from."""

    table_version: str = ""
    by_provider: Mapping[str, Price] = field(default_factory=dict)

    def of(self, provider: str) -> Price | None:
        return self.by_provider.get(provider)


def _tokens(u: Usage) -> int:
    return u.input_text_tokens + u.input_audio_tokens + u.output_text_tokens + u.output_audio_tokens


@dataclass
class CallUsage:
    price_table: str = ""  # the version of the price table the call was priced with
    audio_in_ms: int = 0  # caller audio sent to the provider
    audio_out_ms: int = 0  # bot audio received from the provider
    responses: int = 0
    tokens: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0  # of the priced responses
    unpriced: set[str] = field(default_factory=set)  # providers/models the table lacks
    billed: bool = False  # a response came from a provider that is not free

    def add_response(self, usage: Usage, price: Price | None) -> None:
        """One response's tokens, priced at `price` (its provider's)."""
        self.responses += 1
        self.tokens = self.tokens + usage
        if price is not None and price.free:
            return  # the offline engine, the echo: no cost, whatever their token counts
        self.billed = True
        if not _tokens(usage):
            return
        if price is None or price.rates is None:
            self.unpriced.add(price.label if price is not None else "an unpriced provider")
            return
        self.cost_usd += price.rates.cost(usage)

    @property
    def cost(self) -> float | None:
        """The call's cost in USD; None when a response's price is unknown."""
        return None if self.unpriced else round(self.cost_usd, 6)

    def summary(self) -> dict[str, Any]:
        t = self.tokens
        return {
            "audio_in_s": round(self.audio_in_ms / 1000, 2),
            "audio_out_s": round(self.audio_out_ms / 1000, 2),
            "responses": self.responses,
            "input_text_tokens": t.input_text_tokens,
            "input_audio_tokens": t.input_audio_tokens,
            "input_cached_tokens": t.input_cached_tokens,
            "input_cached_text_tokens": t.input_cached_text_tokens,
            "input_cached_audio_tokens": t.input_cached_audio_tokens,
            "output_text_tokens": t.output_text_tokens,
            "output_audio_tokens": t.output_audio_tokens,
            "total_tokens": t.total_tokens,
            "cost_usd": self.cost,
            # only a billed provider is priced by the table: an offline call names none
            "price_table": (self.price_table if self.billed else "") or None,
            "billed": self.billed,
            **({"unpriced": sorted(self.unpriced)} if self.unpriced else {}),
        }
