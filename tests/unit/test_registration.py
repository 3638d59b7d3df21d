"""Registration policy (pure) and its asyncio side: states from the registrar's answers,
the retry backoff, the line token that names a call's trunk, retries and unregistration."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from telephony_bot.sip import registration
from telephony_bot.sip.registration import (
    RegistrationState,
    line_token,
    on_answer,
    retry_delay_s,
    trunk_of_request,
)
from telephony_bot.sip.registrations import Registrations
from telephony_bot.sip.trunk_accounts import TrunkLine
from telephony_bot.trunk_config import TrunkRegister

START = RegistrationState("pbx", "sip:pbx.example.com", "2001")


def test_answers_move_the_state() -> None:
    ok = on_answer(START, 200, "OK", 300, now=10.0)
    assert (ok.state, ok.expires_s, ok.since, ok.failures, ok.ok) == (
        "registered",
        300,
        10.0,
        0,
        True,
    )
    refreshed = on_answer(ok, 200, "OK", 300, now=20.0)
    assert refreshed.since == 10.0  # registered since the first success
    bad = on_answer(refreshed, 401, "Unauthorized", 300, now=30.0, rnd=random.Random(1))
    assert (bad.state, bad.status_code, bad.expires_s, bad.failures) == ("failed", 401, 0, 1)
    assert bad.retry_in_s is not None and 4.5 <= bad.retry_in_s <= 5.5 and not bad.ok
    assert bad.describe() == (
        f"registration as 2001 at sip:pbx.example.com failed: 401 Unauthorized (1 in a row); "
        f"retrying after {bad.retry_in_s:.0f} s"
    )
    worse = on_answer(bad, 408, "Request Timeout", 300, now=40.0)
    assert worse.failures == 2 and worse.since == 30.0  # failing since the first failure
    again = on_answer(worse, 200, "OK", 120, now=50.0)
    assert (again.state, again.failures, again.retry_in_s) == ("registered", 0, None)
    gone = on_answer(again, 200, "OK", 0, now=60.0)
    assert gone.state == "unregistered"


def test_the_backoff_doubles_up_to_five_minutes_with_jitter() -> None:
    rnd = random.Random(7)
    delays = [retry_delay_s(n, rnd) for n in range(1, 10)]
    for got, want in zip(delays, (5, 10, 20, 40, 80, 160, 300, 300, 300), strict=True):
        assert want * 0.9 <= got <= want * 1.1


def test_the_line_token_names_the_trunk_only_with_its_password() -> None:
    token = line_token("pbx", "pw")
    assert len(token) == 16 and token == line_token("pbx", "pw")  # same on every worker
    assert token != line_token("pbx", "other-pw") and token != line_token("pbx2", "pw")
    lines = {token: "pbx"}
    assert trunk_of_request(f"sip:2001@10.0.0.5:5060;line={token}", lines) == "pbx"
    assert trunk_of_request(f"sip:2001@10.0.0.5;transport=tcp;LINE={token};x=1", lines) == "pbx"
    assert trunk_of_request(f"sip:2001@10.0.0.5?line={token}", lines) == ""  # a header, no param
    assert trunk_of_request(f"sip:2001@10.0.0.5;line={token}0", lines) == ""
    assert trunk_of_request("sip:2001@10.0.0.5;line=0123456789abcdef", lines) == ""
    assert trunk_of_request("sip:2001@10.0.0.5", lines) == ""


def _line(name: str = "pbx") -> TrunkLine:
    reg = TrunkRegister(registrar="sip:pbx.example.com", user="2001", password_env="X")
    return TrunkLine(name, reg, "pw", line_token(name, "pw"))


class FakeAccount:
    def __init__(self, regs: Registrations, answer_unregister: bool = True) -> None:
        self.regs = regs
        self.calls: list[bool] = []
        self.answer_unregister = answer_unregister

    def setRegistration(self, renew: bool) -> None:  # noqa: N802 - pjsua2's name
        self.calls.append(renew)
        if not renew and self.answer_unregister:
            loop = asyncio.get_running_loop()
            loop.call_later(0.01, self.regs.on_answer, "pbx", 200, "OK", 0)


async def test_a_failure_is_retried_after_the_backoff_and_listeners_hear_each_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(registration, "BACKOFF_S", (0.05, 0.1))
    regs = Registrations({"pbx": _line()}, register=True)
    account = FakeAccount(regs)

    async def on_owner(name: str, fn: Any) -> Any:
        assert name == "pbx"
        return fn(account)

    regs.attach(on_owner)
    heard: list[str] = []
    regs.listeners.append(lambda s: heard.append(s.state))
    assert regs.snapshot()[0].state == "registering"
    regs.on_answer("pbx", 403, "Forbidden", 300)
    await asyncio.sleep(0.2)
    assert account.calls == [True]  # REGISTER again after the backoff
    regs.on_answer("pbx", 200, "OK", 300)
    assert heard == ["failed", "registered"]
    await regs.unregister(timeout_s=1)
    assert account.calls == [True, False] and regs.snapshot()[0].state == "unregistered"
    regs.on_answer("pbx", 503, "Service Unavailable", 0)  # after shutdown: no retry planned
    assert regs.snapshot()[0].retry_in_s is None


async def test_unregistration_waits_at_most_its_timeout() -> None:
    regs = Registrations({"pbx": _line()}, register=True)
    account = FakeAccount(regs, answer_unregister=False)

    async def on_owner(name: str, fn: Any) -> Any:
        return fn(account)

    regs.attach(on_owner)
    regs.on_answer("pbx", 200, "OK", 300)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await regs.unregister(timeout_s=0.2)
    assert 0.15 <= loop.time() - t0 < 1 and account.calls == [False]


async def test_a_worker_that_does_not_register_reports_off_and_sends_nothing() -> None:
    regs = Registrations({"pbx": _line()}, register=False)
    [state] = regs.snapshot()
    assert state.state == "off" and state.ok
    assert state.describe() == "2001 at sip:pbx.example.com: registered by another worker"
    await regs.unregister()  # nothing to do
