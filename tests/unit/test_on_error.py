"""When every provider of the route has failed for good, the route's `on_error` decides what
the caller hears (its recorded `say`, else the engine's own phrase) and where they go (its
`transfer` target); a transfer that fails ends in the engine's apology, never in silence."""

from __future__ import annotations

import asyncio

from telephony_bot.providers.base import SessionConfig
from telephony_bot.session.lifecycle import CallSession
from telephony_bot.session.result import CallResult
from telephony_bot.session.settings import CallLimits, SessionOptions
from telephony_bot.transfer_target import TransferRules
from tests.support.fake_call import FakeCall, FakeProvider

DESK = "sip:desk@127.0.0.1:5070"
SAY = b"\x00\x10" * 24000  # 1 s at 24 kHz: the plan's recording


async def _dead_model_call(
    desk: tuple[int, str] = (200, "OK"), **options: object
) -> tuple[list[str], list[str], FakeCall, CallResult]:
    """A call whose only provider refuses at once (`desk`: how a transfer target answers);
    returns what the call did (`log`), what the caller was played (`heard`: prompt names,
    recordings), the call and the result."""
    log: list[str] = []
    heard: list[str] = []
    call, provider = FakeCall(log, line_speed=50), FakeProvider(log)
    call.transfer_status, call.transfer_reason = desk
    provider.fail, provider.retryable = True, False
    # the route's targets: on_error.transfer names one of them
    rules = TransferRules({"desk": DESK})
    opts = SessionOptions(greeting="Hello", transfers=rules, **options)  # type: ignore[arg-type]
    session = CallSession(call, provider, SessionConfig(), opts, CallLimits())  # type: ignore[arg-type]
    playout = session.playout
    prompt, recorded = playout.prompt, playout.recorded

    def spy_prompt(name: str, closing: bool = False) -> None:
        heard.append(name)
        prompt(name, closing)

    def spy_recorded(pcm24: bytes, closing: bool = False) -> None:
        heard.append(f"recording {len(pcm24) // 48} ms")
        recorded(pcm24, closing)

    playout.prompt, playout.recorded = spy_prompt, spy_recorded  # type: ignore[method-assign]
    result = await asyncio.wait_for(session.run(), 20)
    return log, heard, call, result


async def test_without_on_error_the_caller_hears_the_apology_and_is_hung_up() -> None:
    log, heard, _call, _result = await _dead_model_call()
    assert heard == ["apology"]
    assert log[-1] == "hangup provider unavailable"


async def test_on_error_say_replaces_the_apology() -> None:
    log, heard, _call, _result = await _dead_model_call(on_error_say=SAY)
    assert heard == ["recording 1000 ms"]
    assert log[-1] == "hangup provider unavailable"


async def test_on_error_transfer_puts_the_caller_through_after_the_recording() -> None:
    log, heard, _call, result = await _dead_model_call(on_error_say=SAY, on_error_transfer=DESK)
    assert heard == ["recording 1000 ms"]
    assert log[-2:] == [f"transfer {DESK}", "hangup transferred after provider unavailable"]
    assert result.transfers == [
        {"target": DESK, "by": "engine", "ok": True, "status": 200, "reason": "OK"}
    ]


async def test_a_fallback_transfer_that_fails_ends_in_the_apology_not_in_silence() -> None:
    log, heard, _call, result = await _dead_model_call(
        (486, "Busy Here"), on_error_say=SAY, on_error_transfer=DESK
    )
    assert heard == ["recording 1000 ms", "apology"]
    assert log[-2:] == [f"transfer {DESK}", "hangup provider unavailable"]
    assert result.transfers == [
        {"target": DESK, "by": "engine", "ok": False, "status": 486, "reason": "Busy Here"}
    ]
