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
MIN_CONNECT_S = 1.0  # one connection attempt is given at least this long


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

    def has_next(self) -> bool:
        return bool(self._left)

    async def take_over(self, reason: str, *, bridge: bool = True, restart: bool = False) -> bool:
        """The provider serving the call cannot go on: hand the call to the next one, with
        the conversation so far; with none left and `restart`, to a new session of the same
        provider (a stalled session, a server that still accepts). The caller hears the
        bridge phrase (unless `bridge` is off: it is playing already). False when no
        provider took over."""
        ctx = self.ctx
        if not self._left and not restart:
            return False
        old = ctx.session
        owed = ctx.response_active or ctx.stall.watching  # the caller waits for a reply
        if bridge:
            self.playout.silence()
            self.playout.prompt("reconnecting")  # "Sorry, just a moment."
        session = None
        while session is None and self._left:
            session = await self._next(reason)
        if session is None and restart:
            session = await self._again(reason)
        if session is None:
            return False
        ctx.connected(session)
        ctx.response_active = False
        ctx.stall.reset()
        if old is not None:
            ctx.spawn(_close(old))
        if owed:  # a reply was cut or never came: the new model gives it, from the history
            await ctx.ask_reply()
        return True

    async def _next(self, reason: str) -> ProviderSession | None:
        ctx = self.ctx
        fallback = self._left.pop(0)
        was = ctx.config.provider
        ctx.provider, ctx.config = fallback.provider, fallback.config
        t0 = time.monotonic()
        session = await self._connect(fallback.provider, fallback.config, FALLBACK_CONNECT_S)
        self._record(was, fallback.name, reason, session is not None, t0)
        return session

    async def _again(self, reason: str) -> ProviderSession | None:
        """A new session of the provider serving the call (the route has no other)."""
        ctx = self.ctx
        name = ctx.config.provider
        t0 = time.monotonic()
        session = await self._connect(ctx.provider, ctx.config, FALLBACK_CONNECT_S)
        self._record(name, name, reason, session is not None, t0)
        return session

    def _record(self, was: str, to: str, reason: str, ok: bool, t0: float) -> None:
        ctx = self.ctx
        ms = round((time.monotonic() - t0) * 1000)
        _log.warning("provider failover", **{"from": was}, to=to, reason=reason, ok=ok, ms=ms)
        ctx.result.failovers.append({"from": was, "to": to, "reason": reason, "ok": ok})
        ctx.emit("provider.failover", **{"from": was}, to=to, reason=reason, ok=ok, ms=ms)

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
                # a server that accepts and then says nothing (stopped, overloaded) must not
                # hold the caller past the budget
                wait = max(deadline - ctx.loop.time(), MIN_CONNECT_S)
                session = await asyncio.wait_for(provider.connect(config), wait)
            except TimeoutError:
                _log.error("provider unavailable", provider=config.provider,
                           error="no answer to the connection", attempts=attempt)  # fmt: skip
                return None
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
