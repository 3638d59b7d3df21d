"""The trunks' registrations as asyncio sees them: their state, retries, unregistration.

PJSIP's accounts (`trunk_accounts.TrunkAccount`) report every final answer of a registrar
here, on the event loop. The state follows `registration.on_answer`; after a failure the
next REGISTER goes out after `retry_in_s` (the backoff), through the endpoint's owner
thread; listeners (the worker: events → MQTT, metrics) hear every change; `unregister()`
(at drain) sends the REGISTERs with expiry 0 and waits for their answers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

from telephony_bot import log
from telephony_bot.sip.registration import RegistrationState, on_answer
from telephony_bot.sip.trunk_accounts import TrunkLine

_log = log.get("sip.registration")

Listener = Callable[[RegistrationState], None]
# runs `fn(account)` on the endpoint's owner thread
OnOwner = Callable[[str, Callable[[Any], Any]], Awaitable[Any]]


class Registrations:
    def __init__(self, lines: Mapping[str, TrunkLine], *, register: bool) -> None:
        self.register = register  # False: another worker registers (behind the front door)
        self.states: dict[str, RegistrationState] = {
            name: RegistrationState(
                name,
                line.reg.registrar,
                line.reg.user,
                state="registering" if register else "off",
            )
            for name, line in lines.items()
        }
        self.listeners: list[Listener] = []
        self._on_owner: OnOwner | None = None
        self._retries: dict[str, asyncio.TimerHandle] = {}
        self._stopping = False
        self._changed = asyncio.Event()

    def attach(self, on_owner: OnOwner) -> None:
        """How to reach a trunk's registering account (the endpoint, once started)."""
        self._on_owner = on_owner

    def snapshot(self) -> list[RegistrationState]:
        return list(self.states.values())

    # ---- from PJSIP (on the loop) ----

    def on_answer(self, name: str, code: int, reason: str, expires: int) -> None:
        prev = self.states.get(name)
        if prev is None:
            return
        state = on_answer(prev, code, reason, expires)
        if self._stopping and state.state == "failed":
            state = replace(state, retry_in_s=None)  # no retry: we are shutting down
        self.states[name] = state
        self._changed.set()
        self._log(prev, state)
        if state.state == "failed" and state.retry_in_s is not None:
            self._schedule(name, state.retry_in_s)
        for fn in self.listeners:
            try:
                fn(state)
            except Exception:  # noqa: BLE001 - a listener must not stop registration
                _log.exception("registration listener failed", trunk=name)

    def _log(self, prev: RegistrationState, state: RegistrationState) -> None:
        fields = {
            "trunk": state.trunk,
            "registrar": state.registrar,
            "user": state.user,
            "status": state.status_code,
            "reason": state.reason,
        }
        if state.state == "registered":
            if prev.state != "registered":
                _log.info("trunk registered", expires_s=state.expires_s, **fields)
            else:
                _log.debug("trunk registration refreshed", expires_s=state.expires_s, **fields)
        elif state.state == "failed":
            _log.warning("trunk registration failed", failures=state.failures,
                         retry_in_s=state.retry_in_s, **fields)  # fmt: skip
        elif state.state == "unregistered":
            _log.info("trunk unregistered", **fields)

    # ---- retries ----

    def _schedule(self, name: str, delay: float) -> None:
        old = self._retries.pop(name, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._retries[name] = loop.call_later(delay, lambda: loop.create_task(self._retry(name)))

    async def _retry(self, name: str) -> None:
        self._retries.pop(name, None)
        if self._stopping or self._on_owner is None:
            return
        _log.info("trunk registering again", trunk=name, failures=self.states[name].failures)
        try:
            await self._on_owner(name, lambda acc: acc.setRegistration(True))
        except Exception as exc:  # noqa: BLE001 - e.g. a REGISTER still pending: retry later
            state = self.states[name]
            _log.warning("trunk REGISTER not sent", trunk=name, error=str(exc))
            self._schedule(name, state.retry_in_s or 5.0)

    # ---- shutdown ----

    async def unregister(self, timeout_s: float = 3.0) -> None:
        """Remove every binding this worker made (REGISTER with expiry 0); wait for the
        registrars' answers, at most `timeout_s`."""
        self._stopping = True
        for handle in self._retries.values():
            handle.cancel()
        self._retries.clear()
        if not self.register or self._on_owner is None:
            return
        pending = [n for n, s in self.states.items() if s.state == "registered"]
        for name in pending:
            with contextlib.suppress(Exception):
                await self._on_owner(name, lambda acc: acc.setRegistration(False))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while any(self.states[n].state == "registered" for n in pending):
            left = deadline - loop.time()
            if left <= 0:
                still = [n for n in pending if self.states[n].state == "registered"]
                _log.warning("trunks still registered at shutdown", trunks=still)
                return
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
