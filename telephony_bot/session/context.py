"""One call's shared state: what its life cycle, its media loops and its control verbs all
read and change, and the few acts each of them needs (publish an event, start a task, hang
up). It holds no policy: barge-in and truncation are `turns.TurnPolicy`'s, what was heard is
`ledger.PlayoutLedger`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol

from telephony_bot import log
from telephony_bot.callport import CallPort
from telephony_bot.media.resample import Resampler
from telephony_bot.media.vad import frame_dbfs
from telephony_bot.providers.base import Provider, ProviderSession, SessionConfig
from telephony_bot.session.conversation import Conversation
from telephony_bot.session.ledger import PlayoutLedger
from telephony_bot.session.result import CallResult
from telephony_bot.session.settings import CallLimits, CallMeta, SessionOptions
from telephony_bot.session.stall import StallWatch
from telephony_bot.session.turns import TurnPolicy
from telephony_bot.session.usage import CallUsage

_log = log.get("session")


class EventSink(Protocol):
    """Where a call's events go (`events.bus.Bus` in a worker): the session publishes
    through this port and depends on nothing of the events package."""

    def emit(self, type_: str, call_id: str, **data: Any) -> object: ...


class NoEvents:
    """For sessions run outside a worker (tests, benches): events go nowhere."""

    def emit(self, type_: str, call_id: str, **data: Any) -> None:
        return None


class CallContext:
    def __init__(
        self,
        call: CallPort,
        provider: Provider,
        config: SessionConfig,
        options: SessionOptions,
        limits: CallLimits,
        bus: EventSink | None,
        meta: CallMeta | None,
    ) -> None:
        self.call = call
        self.call_id = call.call_id
        self.provider = provider
        self.config = config
        self.options = options
        self.limits = limits
        self.bus: EventSink = bus if bus is not None else NoEvents()
        self.meta = meta or CallMeta()
        self.result = CallResult(call.call_id)
        self.usage = CallUsage(price_table=options.prices.table_version)
        self.loop = asyncio.get_running_loop()
        self.media_rate = call.media.sample_rate  # the carrier's choice
        # the echo gate alone needs the levels of what is played: only with barge-in on
        levels = frame_dbfs if options.barge_in.enabled else None
        self.ledger = PlayoutLedger(options.barge_in.frame_ms, levels, self.media_rate)
        self.conversation = Conversation()  # what a (re)connected model is given
        self.policy = TurnPolicy(options.barge_in, self.ledger)
        self.stall = StallWatch(options.stall)  # a provider that stopped answering
        self.session: ProviderSession | None = None  # the provider's, once connected
        # media rate ⇄ provider rate, where they differ (see `connected`)
        self.to_provider: Resampler | None = None
        self.from_provider: Resampler | None = None
        self.ready = asyncio.Event()  # connected to the provider
        self.first_audio = asyncio.Event()  # bot audio was queued (pre-warm answers then)
        self.ended = asyncio.Event()
        self.response_active = False  # the provider is generating a response
        # The call is closing with the engine's own last words: nothing the model sends is
        # played any more, and nothing more is asked of it.
        self.closing = False
        self.last_activity = self.loop.time()
        self.caller_voice_ms: int | None = None  # now_ms of the caller's last voiced frame
        self.hangup_reason: str | None = None  # why this side hung up
        self.tasks: set[asyncio.Task[Any]] = set()  # spawned: cancelled with the call
        self.tool_tasks: set[asyncio.Task[Any]] = set()  # tools running now

    def connected(self, session: ProviderSession) -> None:
        """The provider's session is open: audio crosses between the media's rate and the
        provider's once, here, and only when they differ (a G.711 call to a G.711 model, or
        to the echo, is never resampled)."""
        self.session = session
        rate = session.audio_rate
        if rate != self.media_rate:
            self.to_provider = Resampler(self.media_rate, rate)
            self.from_provider = Resampler(rate, self.media_rate)
        self.ready.set()

    async def ask_reply(self, instructions: str | None = None) -> None:
        """Ask the model for a reply (the next one in the conversation, or `instructions`'
        words); the stall watch expects it from now on."""
        session = self.session
        if session is None:
            return
        self.stall.reply_due(self.now_ms())
        await session.create_response(instructions)

    def emit(self, type_: str, **data: Any) -> None:
        """Publish a call event (synchronous, never blocks, never raises)."""
        try:
            self.bus.emit(type_, self.call_id, **data)
        except Exception:  # noqa: BLE001 - events must never touch the call
            _log.exception("event publish failed", type=type_)

    def now_ms(self) -> int:
        return int(self.loop.time() * 1000)

    def touch(self) -> None:
        """Someone spoke or pressed a key: the call is not idle."""
        self.last_activity = self.loop.time()

    def spawn(self, coro: Coroutine[Any, Any, Any] | None, name: str | None = None) -> None:
        """Run `coro` beside the call's loops; it is cancelled when the call ends."""
        if coro is not None:
            task = asyncio.create_task(coro, name=name)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def hangup(self, reason: str) -> None:
        if self.hangup_reason is None:
            self.hangup_reason = reason
        await self.call.hangup(reason)
