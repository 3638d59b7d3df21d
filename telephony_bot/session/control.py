"""What may be done to a live call, whoever asks: the model's builtin tools (hang up,
transfer, DTMF), integrators over MQTT and the admin HTTP API (hang up, transfer, say,
inject), and the engine itself when the model is gone for good. One path per verb: a
transfer is checked, carried out and followed by the hang-up the same way for all of them.

Each verb answers `(ok, detail)` rather than raising, so a refusal always carries a reason.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Literal

from telephony_bot import log, transfer_target
from telephony_bot.callport import TransferOutcome
from telephony_bot.errors import ProviderError
from telephony_bot.providers.base import say_exactly
from telephony_bot.session import prompts
from telephony_bot.session.context import CallContext
from telephony_bot.session.playout import Playout

_log = log.get("session")

TRANSFER_TIMEOUT_S = 25.0  # from the REFER to the target's final answer
TOOLS_SETTLE_S = 2.0  # a transfer tool's result reaches the model before the hang-up
STILL_ON_THE_LINE = "the caller is still on the line"
REFUSED = "transfer refused: "  # a target the call's transfer rules do not allow

Requester = Literal["model", "operator", "engine"]  # who asked for a transfer


def _seconds(pcm24: bytes | None) -> float:
    return len(pcm24) / (2 * prompts.RATE) if pcm24 else 0.0


class CallControl:
    """The verbs on one call (also the `tools.base.CallControl` builtin tools act through)."""

    def __init__(self, ctx: CallContext, playout: Playout) -> None:
        self.ctx = ctx
        self.call_id = ctx.call_id
        self.playout = playout
        self.hangup_pending: str | None = None  # the call ends once the bot has finished
        self._transfer_waiters: list[asyncio.Future[TransferOutcome]] = []
        # a transfer the engine stopped waiting for: (target, by); its late final answer
        # still decides whether the caller left
        self._unanswered: tuple[str, Requester] | None = None
        self._says: collections.deque[str] = collections.deque()  # texts waiting to be said
        self._say_sent: str | None = None  # the say whose response.create is in flight

    # ---- ending the call ----

    async def hangup_now(self, reason: str) -> None:
        """End the call at once (an operator's or integrator's decision)."""
        self.ctx.closing = True
        await self.ctx.hangup(reason)

    async def hangup_after_playout(self, reason: str) -> None:
        """End the call once the bot's last sentence was heard (the model's hangup tool:
        tools start only after their response is done, so that sentence is queued)."""
        if self.hangup_pending is None:
            self.hangup_pending = reason
            self.ctx.spawn(self.playout.hang_up_after_playout(reason))

    async def give_up(self, reason: str) -> None:
        """The model is gone for good (every provider of the route failed): the caller hears
        the route's recorded `on_error.say` (else the engine's own phrase) and is put through
        to `on_error.transfer`. With no transfer, or when the transfer fails, the engine
        apologises and hangs up. Never dead air, never a silent drop."""
        ctx = self.ctx
        self.playout.silence()
        say, target = ctx.options.on_error_say, ctx.options.on_error_transfer
        if target:
            if say:
                self.playout.recorded(say, closing=True)
            else:
                self.playout.prompt("reconnecting", closing=True)  # "Sorry, just a moment."
            await self.playout.played_out(_seconds(say) + 2 if say else 3)
            _log.info("model unavailable: transferring the caller", target=target, reason=reason)
            why = f"transferred after {reason}"
            ok, detail = await self.transfer(target, reason=why, by="engine")
            if ok:
                return
            _log.warning("fallback transfer failed", target=target, detail=detail)
            # `say` announced the transfer: after its failure, the engine's own apology
            self.playout.prompt("apology", closing=True)
        elif say:
            self.playout.recorded(say, closing=True)
        else:
            self.playout.prompt("apology", closing=True)
        # the apology lasts about 5 s; a recording as the last words, up to 30 s
        last_words = 8.0 if target or not say else max(8.0, _seconds(say) + 3)
        await self.playout.hang_up_after_playout(reason, max_wait_s=last_words)

    # ---- transfer ----

    async def transfer(
        self, target: str, *, reason: str | None = None, by: Requester = "operator"
    ) -> tuple[bool, str]:
        """Hand the caller to `target` (a blind REFER) and, once the target answered, leave
        the call (hang up with `reason`, default "transferred to TARGET"). `by`: who asked,
        the model (its transfer tool), an operator (MQTT, HTTP) or the engine (on_error).

        A failed transfer keeps the caller with the bot and says so in the detail ("486
        Busy Here; the caller is still on the line"). The model's tool hands that to the
        model, which is asked to answer; an operator's failure is told to the model here,
        so the caller hears the bot at once either way.

        `target` must be one the call's `TransferRules` allow (a name or URI of the route's
        targets, an allowed number); anything else is refused (`REFUSED` + why), counted
        as a `transfer.refused` event, and no REFER is sent."""
        uri, refused = self.ctx.options.transfers.resolve(target)
        if uri is None:
            _log.warning("transfer refused", target=target, by=by, reason=refused)
            self.ctx.emit("transfer.refused", target=target, by=by, reason=refused)
            return False, REFUSED + refused
        target = uri
        why = transfer_target.problem(target)
        if why is not None:
            return False, f"transfer target: {why}"
        if self.ctx.result.answered_at is None:
            return False, "the call is not answered yet"
        ok, status, sip_reason = await self._refer(target, by)
        detail = f"{status} {sip_reason}".strip() if status else sip_reason
        if ok:
            self.hangup_pending = reason or f"transferred to {target}"
            self.ctx.spawn(self._leave(self.hangup_pending))
            return True, detail
        detail = f"{detail}; {STILL_ON_THE_LINE}"
        if by == "operator":
            await self._tell_model_transfer_failed(detail)
        return False, detail

    async def _refer(self, target: str, by: Requester) -> tuple[bool, int, str]:
        """Send the REFER and wait for the target's final answer: (ok, SIP status, reason).
        Status 0: the REFER could not be sent; 408: no final answer in time."""
        ctx = self.ctx
        fut: asyncio.Future[TransferOutcome] = ctx.loop.create_future()
        self._transfer_waiters.append(fut)
        ctx.emit("transfer.started", target=target, by=by)
        _log.info("transfer requested", target=target, by=by)
        try:
            await ctx.call.transfer(target)
        except Exception as exc:  # noqa: BLE001 - reported as the transfer's outcome
            self._transfer_waiters.remove(fut)
            return self._transferred(target, by, 0, f"the REFER could not be sent: {exc}")
        try:
            out = await asyncio.wait_for(fut, timeout=TRANSFER_TIMEOUT_S)
        except TimeoutError:
            if fut in self._transfer_waiters:
                self._transfer_waiters.remove(fut)
            self._unanswered = (target, by)
            why = f"Request Timeout (no final answer within {TRANSFER_TIMEOUT_S:g} s)"
            return self._transferred(target, by, 408, why)
        return self._transferred(target, by, out.status_code, out.reason)

    def _transferred(
        self, target: str, by: Requester, status: int, reason: str
    ) -> tuple[bool, int, str]:
        """Record a transfer's outcome: the call record, the event, the log."""
        ok = 200 <= status < 300
        outcome = {"target": target, "by": by, "ok": ok, "status": status, "reason": reason}
        self.ctx.result.transfers.append(outcome)
        self.ctx.emit("transfer.completed" if ok else "transfer.failed", **outcome)
        (_log.info if ok else _log.warning)("transfer outcome", **outcome)
        return ok, status, reason

    async def _tell_model_transfer_failed(self, detail: str) -> None:
        """An operator's transfer failed: the model learns it and answers the caller now."""
        ctx = self.ctx
        if ctx.closing or ctx.session is None or not ctx.provider.capabilities.conversation:
            return
        note = (
            f"The caller was to be transferred to another line, but the transfer failed "
            f"({detail}). Tell the caller so, briefly, and offer to help further."
        )
        ok, _ = await self.inject(text=note, role="system")
        if ok and not ctx.response_active and self._say_sent is None:
            try:
                await ctx.ask_reply()
            except ProviderError as exc:
                _log.warning("could not ask the model to answer", error=str(exc))

    def transfer_outcome(self, ev: TransferOutcome) -> None:
        """The carrier reported how the transfer went (only the final answer counts)."""
        _log.info("transfer status", target=ev.target, status=ev.status_code, final=ev.final)
        if not ev.final:
            return
        waiting = [fut for fut in self._transfer_waiters if not fut.done()]
        self._transfer_waiters.clear()
        for fut in waiting:
            fut.set_result(ev)
        if not waiting and self._unanswered is not None:
            self._late_answer(ev)

    def _late_answer(self, ev: TransferOutcome) -> None:
        """The final answer of a transfer the engine had stopped waiting for: when the
        target answered, the caller is with them now, and the bot's leg ends (else it would
        stay up, silent, until the idle timer)."""
        assert self._unanswered is not None
        target, by = self._unanswered
        self._unanswered = None
        ok, _, _ = self._transferred(target, by, ev.status_code, ev.reason)
        if ok and self.hangup_pending is None and not self.ctx.closing:
            self.hangup_pending = f"transferred to {target}"
            self.ctx.spawn(self._leave(self.hangup_pending))

    async def _leave(self, reason: str) -> None:
        """After a transfer: let a transfer tool hand its result to the model first (the
        conversation's record stays whole), then hang up."""
        until = self.ctx.loop.time() + TOOLS_SETTLE_S
        while self.ctx.tool_tasks and self.ctx.loop.time() < until:
            await asyncio.sleep(0.01)
        await self.hangup_now(reason)

    async def send_dtmf(self, digits: str) -> None:
        await self.ctx.call.send_dtmf(digits)

    # ---- the bot's words ----

    async def say(self, text: str, *, interrupt: bool = False) -> tuple[bool, str]:
        """Have the bot speak `text`: now, cutting off its current reply (`interrupt`), or
        once the reply it is giving has ended. Works with any Realtime-protocol model: a
        `response.create` whose instructions ask for exactly this text (the local engine
        speaks such a text verbatim)."""
        ctx = self.ctx
        if not ctx.provider.capabilities.speech:
            name = ctx.provider.name
            return False, f"this call's provider ({name}) has no voice of its own to speak text"
        if ctx.session is None or not ctx.ready.is_set():
            return False, "the call is not connected to its model yet"
        if ctx.closing:
            return False, "the call is closing"
        if interrupt:
            self.playout.interrupt("say")
            self._says.clear()  # `now` replaces anything still waiting
        self._says.append(text)
        queued = not interrupt and (ctx.response_active or self._say_sent is not None)
        if not ctx.response_active:
            await self.next_say()
        return True, "queued after the current reply" if queued else ""

    async def next_say(self) -> None:
        """Say the next waiting text, if any (after the current reply has ended)."""
        if not self._says or self._say_sent is not None or self.ctx.session is None:
            return
        if self.ctx.closing:
            self._says.clear()
            return
        text = self._says.popleft()
        self._say_sent = text
        await self.ctx.ask_reply(say_exactly(text))

    async def response_done(self) -> None:
        self._say_sent = None
        await self.next_say()

    def say_collided(self) -> None:
        """Our `say` met a reply that had just started: say it after that one."""
        if self._say_sent:
            self._says.appendleft(self._say_sent)
            self._say_sent = None

    async def inject(
        self, *, text: str | None = None, image_data_url: str | None = None, role: str = "user"
    ) -> tuple[bool, str]:
        """Add a conversation item the model sees from its next reply on."""
        ctx = self.ctx
        if not ctx.provider.capabilities.conversation:
            return (
                False,
                f"this call's provider ({ctx.provider.name}) has no conversation to add to",
            )
        if ctx.session is None or not ctx.ready.is_set():
            return False, "the call is not connected to its model yet"
        try:
            if text is not None:
                await ctx.session.add_text_item(text, "system" if role == "system" else "user")
            if image_data_url is not None:
                await ctx.session.add_image_item(image_data_url)
        except ProviderError as exc:
            return False, f"the model of this call cannot take that: {exc}"
        except ValueError as exc:
            return False, str(exc)
        ctx.conversation.injected(text=text, image=image_data_url, role=role)
        return True, ""
