"""A provider the plan names but that cannot run on this machine (its API key is not set).

It stands in the route's provider list like any other and refuses every connection at once,
without a retry: a call to its route gets what a provider not reachable at call start gets
(the route's next provider, else `on_error`), and the plan's other routes, the offline ones
among them, still answer.
"""

from __future__ import annotations

from telephony_bot.errors import ProviderError
from telephony_bot.providers.base import Capabilities, ProviderSession, SessionConfig


class Unconfigured:
    capabilities = Capabilities()

    def __init__(self, name: str, why: str) -> None:
        self.name = name
        self.why = why  # e.g. "provider openai: set the environment variable OPENAI_API_KEY"

    async def connect(self, config: SessionConfig) -> ProviderSession:
        raise ProviderError(self.why, retryable=False)
