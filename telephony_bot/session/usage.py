"""Per-call usage: audio seconds each way, provider tokens, and a cost estimate."""

from __future__ import annotations

from dataclasses import dataclass, field

from telephony_bot.providers.base import Usage


@dataclass(frozen=True)
class Prices:
    """USD per 1M tokens. Defaults: gpt-4o-realtime-preview-2024-12-17 list prices (verify
    against the provider's pricing page; override per route in configuration)."""

    audio_in: float = 40.0
    audio_out: float = 80.0
    text_in: float = 5.0
    text_out: float = 20.0
    cached_in: float = 2.5

    def cost(self, u: Usage) -> float:
        # cached tokens are part of the input counts; charge them at the cached rate
        uncached_in = max(0, u.input_audio_tokens + u.input_text_tokens - u.input_cached_tokens)
        audio_share = (
            u.input_audio_tokens / (u.input_audio_tokens + u.input_text_tokens)
            if (u.input_audio_tokens + u.input_text_tokens)
            else 0.0
        )
        cost = (
            uncached_in * audio_share * self.audio_in
            + uncached_in * (1 - audio_share) * self.text_in
            + u.input_cached_tokens * self.cached_in
            + u.output_audio_tokens * self.audio_out
            + u.output_text_tokens * self.text_out
        )
        return cost / 1_000_000


@dataclass
class CallUsage:
    audio_in_ms: int = 0  # caller audio sent to the provider
    audio_out_ms: int = 0  # bot audio received from the provider
    responses: int = 0
    tokens: Usage = field(default_factory=Usage)

    def add_response(self, usage: Usage) -> None:
        self.responses += 1
        self.tokens = self.tokens + usage

    def summary(self, prices: Prices) -> dict[str, float | int]:
        t = self.tokens
        return {
            "audio_in_s": round(self.audio_in_ms / 1000, 2),
            "audio_out_s": round(self.audio_out_ms / 1000, 2),
            "responses": self.responses,
            "input_text_tokens": t.input_text_tokens,
            "input_audio_tokens": t.input_audio_tokens,
            "input_cached_tokens": t.input_cached_tokens,
            "output_text_tokens": t.output_text_tokens,
            "output_audio_tokens": t.output_audio_tokens,
            "total_tokens": t.total_tokens,
            "cost_usd": round(prices.cost(t), 6),
        }
