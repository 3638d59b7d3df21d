"""The caller's key presses on a live call: each burst (`dtmf.DtmfCollector`, pure) becomes
one user item the model is given, and the model is asked to answer it.

The item goes into the call's conversation record too (`conversation.Conversation`), so a
reconnected or failed-over model is told of it like of anything the caller said. The answer
is asked for at once, or once the reply under way has ended (that reply was made before
the model knew of the keys). Each burst is an event (`dtmf.input`) and a log line; each key
stays a `dtmf` event of its own (session/lifecycle.py).
"""

from __future__ import annotations

import asyncio

from telephony_bot import log
from telephony_bot.errors import ProviderError
from telephony_bot.session.context import CallContext
from telephony_bot.session.dtmf import Burst, DtmfCollector
from telephony_bot.session.playout import Playout

_log = log.get("session")


class KeyPresses:
    def __init__(self, ctx: CallContext, playout: Playout) -> None:
        self.ctx = ctx
        self.playout = playout
        self.settings = ctx.options.dtmf
        self.collector = DtmfCollector(self.settings)
        self._expiry: asyncio.Task[None] | None = None
        self._answer_after_reply = False  # a burst waits for the reply under way to end

    def _model_listens(self) -> bool:
        """Keys go to the model: the route wants it and the provider keeps a conversation
        (the echo does not). Asked per key: a failover may change the provider."""
        return self.settings.to_model and self.ctx.provider.capabilities.conversation

    def pressed(self, key: str) -> None:
        """The caller pressed `key` (the carrier's `DtmfReceived`)."""
        ctx = self.ctx
        speaking = ctx.response_active or ctx.call.media.queued_ms > 0
        live = self._model_listens() and not ctx.closing
        step = self.collector.key(key, ctx.now_ms(), bot_speaking=speaking and live)
        if step.interrupt:
            _log.info(
                "key pressed over the bot: cutting it off", key=ctx.options.privacy.digits(key)
            )
            self.playout.interrupt("dtmf")
        if step.burst is not None:
            self._ended(step.burst)
        self._arm()

    async def response_done(self) -> None:
        """The reply under way ended: answer the burst that waited for it."""
        if self._answer_after_reply:
            self._answer_after_reply = False
            await self._answer()

    def _arm(self) -> None:
        """(Re)start the wait for the burst being typed to time out."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        due = self.collector.due_ms
        if due is not None:
            self._expiry = asyncio.create_task(self._expire((due - self.ctx.now_ms()) / 1000))
            self.ctx.tasks.add(self._expiry)  # cancelled with the call
            self._expiry.add_done_callback(self.ctx.tasks.discard)

    async def _expire(self, delay_s: float) -> None:
        await asyncio.sleep(max(0.0, delay_s))
        burst = self.collector.expire(self.ctx.now_ms())
        if burst is not None:
            self._ended(burst)

    def _ended(self, burst: Burst) -> None:
        ctx = self.ctx
        to_model = self._model_listens() and not ctx.closing
        digits = ctx.options.privacy.digits(burst.digits)  # the model gets them as typed
        _log.info(
            "dtmf input",
            digits=digits,
            terminator=burst.terminator or None,
            ended=burst.ended,
            to_model=to_model,
        )
        ctx.emit(
            "dtmf.input",
            digits=digits,
            terminator=burst.terminator,
            ended=burst.ended,
            to_model=to_model,
        )
        if to_model:
            ctx.spawn(self._tell(burst), name="dtmf-input")

    async def _tell(self, burst: Burst) -> None:
        ctx = self.ctx
        text = burst.text
        ctx.conversation.user(text)  # a model (re)connecting later is given it too
        session = ctx.session
        if session is None or not ctx.ready.is_set():
            return  # not connected yet: it comes with the conversation when it is
        try:
            await session.add_text_item(text, "user")
        except ProviderError as exc:
            _log.warning("key presses not given to the model", error=str(exc))
            return
        if ctx.response_active:
            self._answer_after_reply = True
        else:
            await self._answer()

    async def _answer(self) -> None:
        ctx = self.ctx
        if ctx.session is not None and not ctx.closing:
            await ctx.ask_reply()
