"""A response's usage as OpenAI reports it, for tests of cost and call records."""

from __future__ import annotations

from typing import Any

# cached tokens within the input counts, split by kind in cached_tokens_details
WIRE_USAGE: dict[str, Any] = {
    "total_tokens": 821,
    "input_tokens": 789,
    "output_tokens": 32,
    "input_token_details": {
        "text_tokens": 313,
        "audio_tokens": 476,
        "cached_tokens": 640,
        "cached_tokens_details": {"text_tokens": 256, "audio_tokens": 384},
    },
    "output_token_details": {"text_tokens": 9, "audio_tokens": 23},
}
