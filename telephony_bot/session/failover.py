"""Which provider serves a call, and who takes over when it cannot go on.

At call start, the route's first provider is tried again with backoff while the phone rings
(a server restarting or still loading its models), for the route's pre-warm wait; then each
of the route's other providers (`SessionOptions.fallbacks`) in order. Mid-call, a fatal
error or reconnects exhausted hands the call to the next provider: the caller hears a short
bridge phrase, the new provider is given the conversation so far (`SessionConfig.history`)
and, if a reply was cut, asked to go on; it never greets again. Only when every provider
has failed does the caller hear the apology.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time

from telephony_bot import log
from telephony_bot.errors import ProviderError
from telephony_bot.providers.base import Provider, ProviderSession, SessionConfig
from telephony_bot.session.context import CallContext
from telephony_bot.session.playout import Playout
from telephony_bot.session.settings import Fallback

_log = log.get("session")

CONNECT_BACKOFF_S = (0.1, 0.2, 0.3, 0.5)  # between connect attempts
FALLBACK_CONNECT_S = 2.0  # how long a provider taking over may take to be reached


class Failover:
    def __init__(self, ctx: CallContext, playout: Playout) -> None:
        self.ctx = ctx
        self.playout = playout
        self._left: list[Fallback] = list(ctx.options.fallbacks)

    async def first(self) -> ProviderSession | None:
        """The call's provider session: the route's first provider, retried while the phone
        rings, else the next ones in order. None: none can be reached."""
        ctx = self.ctx
        wait_ms = max(ctx.limits.ring_ms, ctx.options.prewarm_max_wait_ms)
        session = await self._connect(ctx.provider, ctx.config, wait_ms / 1000)
        while session is None and self._left:
            session = await self._next("provider unavailable")
        return session

    async def take_over(self, reason: str) -> bool:
        """The provider serving the call cannot go on: hand the call to the next one, with
        the conversation so far. False when none is left (or none can be reached)."""
        ctx = self.ctx
        if not self._left:
            return False
        old, interrupted = ctx.session, ctx.response_active
        self.playout.silence()
        self.playout.prompt("reconnecting")  # "Sorry, just a moment."
        session = None
        while session is None and self._left:
            session = await self._next(reason)
        if session is None:
            return False
        ctx.connected(session)
        ctx.response_active = False
        if old is not None:
            ctx.spawn(_close(old))
        if interrupted:  # a reply was cut: the new model gives it again, from the history
            await session.create_response()
        return True

    async def _next(self, reason: str) -> ProviderSession | None:
        ctx = self.ctx
        fallback = self._left.pop(0)
        was = ctx.config.provider
        ctx.provider, ctx.config = fallback.provider, fallback.config
        t0 = time.monotonic()
        session = await self._connect(fallback.provider, fallback.config, FALLBACK_CONNECT_S)
        ms = round((time.monotonic() - t0) * 1000)
        ok = session is not None
        _log.warning("provider failover", **{"from": was}, to=fallback.name, reason=reason, ok=ok)
        ctx.result.failovers.append({"from": was, "to": fallback.name, "reason": reason, "ok": ok})
        ctx.emit(
            "provider.failover", **{"from": was}, to=fallback.name, reason=reason, ok=ok, ms=ms
        )
        return session

    async def _connect(
        self, provider: Provider, config: SessionConfig, budget_s: float
    ) -> ProviderSession | None:
        """A session of `provider`; one not reachable yet is tried again with backoff for
        `budget_s`. A refusal no retry mends (a bad key) ends at once."""
        ctx = self.ctx
        config = dataclasses.replace(
            config, media_rate=ctx.media_rate, history=ctx.conversation.items
        )
        deadline = ctx.loop.time() + budget_s
        attempt = 0
        while True:
            attempt += 1
            try:
                session = await provider.connect(config)
            except ProviderError as exc:
                left = deadline - ctx.loop.time()
                if not exc.retryable or left <= 0:
                    _log.error(
                        "provider unavailable",
                        provider=config.provider,
                        error=str(exc),
                        retryable=exc.retryable,
                        attempts=attempt,
                    )
                    return None
                delay = min(CONNECT_BACKOFF_S[min(attempt, len(CONNECT_BACKOFF_S)) - 1], left)
                _log.info(
                    "provider not reachable yet: retrying",
                    provider=config.provider,
                    error=str(exc),
                    attempt=attempt,
                    retry_in_s=round(delay, 2),
                )
                await asyncio.sleep(delay)
                continue
            if attempt > 1:
                _log.info("provider reached", provider=config.provider, attempts=attempt)
            return session


async def _close(session: ProviderSession) -> None:
    with contextlib.suppress(Exception):
        await session.close()
