"""Sensitive values never leave a call as they were said or typed: redaction patterns
(cards by Luhn, IBANs by their check digits, regexes), sensitive tool parameters, masked
DTMF, transcripts in the log only at debug level or when configured. The rules (pure), the
dialplan that states them (errors with file and line), and a session that applies them
while the tool and the model still get the real values."""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from telephony_bot import app, log
from telephony_bot.callport import DtmfReceived
from telephony_bot.dialplan.loader import load
from telephony_bot.dialplan.router import effective
from telephony_bot.errors import DialplanError
from telephony_bot.events.cdr import build_record
from telephony_bot.providers.base import FunctionCall, ResponseDone, SessionConfig, TranscriptDelta
from telephony_bot.redact import MASK, Privacy, Redactor, check_pattern, iban_ok, luhn_ok
from telephony_bot.session.lifecycle import CallSession
from telephony_bot.session.settings import CallLimits, CallMeta, SessionOptions
from tests.support.fake_call import Events, FakeCall, FakeProvider

CARD = "4111 1111 1111 1111"  # Luhn-valid test card
IBAN = "DE89 3704 0044 0532 0130 00"  # the standard example IBAN


# ---------- the patterns ----------


def test_luhn_and_iban_checks() -> None:
    assert luhn_ok("4111111111111111") and luhn_ok("79927398713")
    assert not luhn_ok("4111111111111112")
    assert iban_ok("DE89370400440532013000") and iban_ok("gb82west12345698765432")
    assert not iban_ok("DE88370400440532013000") and not iban_ok("DE89")


@pytest.mark.parametrize(
    ("said", "published"),
    [
        (f"my card is {CARD} thanks", "my card is *** thanks"),
        ("card 4111-1111-1111-1111, expiry 12 27", "card ***, expiry 12 27"),
        ("4111111111111111", "***"),
        (f"{CARD} 12 27", "*** 12 27"),  # the expiry after it is not swallowed
        ("4111 1111 1111 1112", "4111 1111 1111 1112"),  # not a card: fails Luhn
        ("call 030 1234 5678 please", "call 030 1234 5678 please"),  # a phone number
        (f"IBAN {IBAN} please", "IBAN *** please"),
        ("de89370400440532013000.", "***."),
        ("DE88 3704 0044 0532 0130 00", "DE88 3704 0044 0532 0130 00"),  # wrong check digits
        (f"{CARD} and {IBAN}", "*** and ***"),
    ],
)
def test_card_and_iban_patterns_mask_only_what_is_one(said: str, published: str) -> None:
    assert Redactor(["card", "iban"]).text(said) == published


def test_regex_patterns_and_no_patterns() -> None:
    r = Redactor(["regex:(?i)pin is [0-9]( ?[0-9])*", "card"])
    assert r.text(f"My PIN is 1 2 3 4 and {CARD}") == "My *** and ***"
    assert Redactor([]).text(f"card {CARD}") == f"card {CARD}"  # nothing named: as said
    assert not Redactor([]) and Redactor(["iban"])
    # patterns that overlap mask the stretch once
    four = Redactor(["card", r"regex:\b[0-9](?:[ -]?[0-9]){3}\b"])
    assert four.text(f"pin 8 6 4 2, card {CARD}.") == "pin ***, card ***."


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("creditcard", "unknown redaction pattern 'creditcard': use card, iban, or regex:"),
        ("regex:", '"regex:" needs an expression after it'),
        ("regex:([0-9]", "invalid regular expression '([0-9]': missing ), unterminated"),
    ],
)
def test_a_pattern_that_cannot_work_says_why(name: str, error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        check_pattern(name)


# ---------- one call's rules ----------

PRIVACY = Privacy(sensitive={"verify_pin": frozenset({"pin"})}, mask_dtmf=True)


def test_sensitive_arguments_are_masked_and_their_values_taken_out_of_error_texts() -> None:
    args = {"customer_id": "C-1", "pin": "8642"}
    assert PRIVACY.arguments("verify_pin", args) == {"customer_id": "C-1", "pin": MASK}
    assert PRIVACY.arguments("lookup", {"pin": "1"}) == {"pin": "1"}  # not marked there
    assert PRIVACY.arguments("verify_pin", "{not json") == MASK  # cannot pick: all of it
    error = "invalid arguments at pin: '86420' does not match '^[0-9]{4}$'"
    assert PRIVACY.tool_text("verify_pin", '{"pin": "86420"}', error) == (
        "invalid arguments at pin: '***' does not match '^[0-9]{4}$'"
    )
    # a value inside a longer number is not one: "8" is not masked in "8 s"
    assert PRIVACY.tool_text("verify_pin", '{"pin": 8}', "took 8 s, 88 tries") == (
        "took *** s, 88 tries"
    )
    assert PRIVACY.digits("8642") == MASK and PRIVACY.digits("") == ""
    assert Privacy().digits("8642") == "8642"


# ---------- the dialplan states them ----------


def _plan(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


PLAN = """
    tools:
      verify_pin:
        description: Check the caller's PIN.
        python: "tests.unit.test_privacy:verify_pin"
        parameters:
          type: object
          properties:
            customer_id: {type: string}
            pin: {type: string, pattern: "^[0-9]{4}$", sensitive: true}
          required: [customer_id, pin]
    defaults:
      provider: echo
      tools: [verify_pin]
      dtmf: {mask: true}
      redact: [card, iban]
    routes:
      - name: plain
        match: {number: "+4930100"}
        dtmf: {}
        redact: []
      - name: bank
        match: {number: "+4930200"}
    """


def test_the_plan_marks_parameters_keys_and_patterns_and_the_model_never_sees_the_mark(
    tmp_path: Path,
) -> None:
    plan = load(_plan(tmp_path, PLAN), env={}).plan
    tool = plan.tools["verify_pin"]
    assert tool.sensitive == {"pin"}
    assert "sensitive" not in json.dumps(tool.model_parameters)
    setup = app.for_route(plan, effective(plan, plan.route("bank")))
    assert setup.config.tools[0].parameters["properties"]["pin"] == {
        "type": "string", "pattern": "^[0-9]{4}$"
    }  # fmt: skip
    p = setup.options.privacy
    assert p.sensitive == {"verify_pin": {"pin"}} and p.mask_dtmf
    assert p.transcript(f"card {CARD}") == "card ***"
    plain = app.for_route(plan, effective(plan, plan.route("plain"))).options.privacy
    assert not plain.mask_dtmf and plain.transcript(f"card {CARD}") == f"card {CARD}"


@pytest.mark.parametrize(
    ("edit", "error"),
    [
        (("sensitive: true}", "sensitive: yes please}"),
         "6:7 tools.verify_pin.parameters: parameters.properties.pin.sensitive must be true "
         "or false"),
        (("customer_id: {type: string}", "customer_id: {type: object, properties: {x: "
          "{type: string, sensitive: true}}}"),
         "6:7 tools.verify_pin.parameters: sensitive at parameters.properties.customer_id."
         "properties.x would do nothing: mark a top-level parameter, "
         "parameters.properties.NAME.sensitive: true"),
        (("redact: [card, iban]", "redact: [card, creditcard]"),
         "15:18 defaults.redact[1]: unknown redaction pattern 'creditcard': use card, iban, or "
         "regex:<expression>"),
        (("dtmf: {mask: true}", "dtmf: {mask: sometimes}"),
         "14:16 defaults.dtmf.mask: expected true or false, got 'sometimes'"),
    ],
)  # fmt: skip
def test_a_mark_that_cannot_work_is_refused_at_its_line(
    tmp_path: Path, edit: tuple[str, str], error: str
) -> None:
    path = _plan(tmp_path, PLAN.replace(*edit))
    with pytest.raises(DialplanError) as info:
        load(path, env={})
    assert f"{path}:{error}" in str(info.value).splitlines(), str(info.value)


# ---------- a call applies them ----------

RECEIVED: list[dict[str, Any]] = []


def verify_pin(customer_id: str, pin: str) -> dict[str, Any]:
    """The back office: gets the PIN as the caller gave it."""
    RECEIVED.append({"customer_id": customer_id, "pin": pin})
    if pin != "8642":
        raise ValueError(f"wrong PIN {pin}")
    return {"ok": True}


async def _until(cond: Any, timeout: float = 5.0) -> None:
    async def wait() -> None:
        while not cond():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), timeout)


async def test_a_call_publishes_masked_values_while_the_tool_and_the_model_get_them(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    log.setup("json", "info")
    RECEIVED.clear()
    plan = load(_plan(tmp_path, PLAN), env={}).plan
    setup = app.for_route(plan, effective(plan, plan.route("bank")))
    events, calls = Events(), []
    call, provider = FakeCall(calls), FakeProvider(calls, first_audio_s=None)
    session = CallSession(
        call, provider, SessionConfig(), setup.options, CallLimits(), bus=events,
        meta=CallMeta(route="bank"),
    )  # fmt: skip
    task = asyncio.create_task(session.run())
    await _until(lambda: session.ctx.ready.is_set() and session.result.answered_at)
    model = session.ctx.session
    for key in "8642#":
        call.events.put_nowait(DtmfReceived("c1", key, "rfc2833", 100))
    await _until(lambda: any("pressed" in e for e in calls))  # the model got the keys
    assert "item user: The caller pressed the keys: 8642 (ended with #)" in calls
    said = f"my card is {CARD} and my IBAN {IBAN}"
    model.queue.put_nowait(TranscriptDelta("user", said, "i1", final=True))  # type: ignore[union-attr]
    for n, pin in enumerate(("86420", "8642")):  # a schema error first, then the right one
        args = json.dumps({"customer_id": "C-1", "pin": pin})
        model.queue.put_nowait(FunctionCall(f"fc{n}", "verify_pin", args, f"it{n}", f"r{n}"))  # type: ignore[union-attr]
        model.queue.put_nowait(ResponseDone(f"r{n}", "completed"))  # type: ignore[union-attr]
        await _until(lambda n=n: any(e.startswith(f"function_output fc{n}") for e in calls))
    call.end()
    result = await asyncio.wait_for(task, 5)

    assert RECEIVED == [{"customer_id": "C-1", "pin": "8642"}]  # the tool: the real PIN
    schema_error = next(e for e in calls if e.startswith("function_output fc0"))
    assert "'86420' does not match" in schema_error  # the model is told what it sent
    assert [e["arguments"] for e in events.of("tool.called")] == [
        {"customer_id": "C-1", "pin": MASK}
    ] * 2
    assert events.of("tool.result")[0]["error"] == (
        "invalid arguments at pin: '***' does not match '^[0-9]{4}$'"
    )
    assert [e["digit"] for e in events.of("dtmf")] == [MASK] * 5
    assert events.of("dtmf.input")[0]["digits"] == MASK
    assert events.of("turn.user")[0]["text"] == "my card is *** and my IBAN ***"
    record = build_record(result, call.offer, CallMeta(route="bank"))
    assert record["dtmf"] == MASK
    assert (
        record["tools"][0]["error"] == "invalid arguments at pin: '***' does not match '^[0-9]{4}$'"
    )
    published = json.dumps([events.seen, record])
    logged = capfd.readouterr().err
    # a timestamp's microseconds may hold any four digits: not what is looked for here
    scrubbed = re.sub(r'"timestamp": "[^"]*"', "", logged)
    for secret in ("8642", "86420", "4111", "DE89", "3704"):
        assert secret not in published, secret
        assert secret not in scrubbed, [x for x in scrubbed.splitlines() if secret in x]
    turn = next(json.loads(x) for x in logged.splitlines() if '"turn.user"' in x)
    assert turn["chars"] == len(said) and "text" not in turn  # info level: no transcript


@pytest.mark.parametrize(
    ("level", "configured", "logged"),
    [
        ("info", False, None),  # only the length
        ("debug", False, "card ***"),
        ("info", True, "card ***"),  # logging.transcripts: at info level, still redacted
    ],
)
async def test_transcripts_reach_the_log_at_debug_level_or_when_configured(
    level: str, configured: bool, logged: str | None, capfd: pytest.CaptureFixture[str]
) -> None:
    log.setup("json", level)
    privacy = Privacy(redactor=Redactor(["card"]), log_transcripts=configured)
    calls: list[str] = []
    call, provider = FakeCall(calls), FakeProvider(calls, first_audio_s=None)
    options = SessionOptions(greeting=None, prewarm=False, privacy=privacy)
    session = CallSession(call, provider, SessionConfig(), options, CallLimits())
    task = asyncio.create_task(session.run())
    await _until(lambda: session.ctx.ready.is_set() and session.result.answered_at)
    session.ctx.session.queue.put_nowait(TranscriptDelta("user", f"card {CARD}", "i1", True))  # type: ignore[union-attr]
    await _until(lambda: session.result.turns_user == 1)
    call.end()
    await asyncio.wait_for(task, 5)
    lines = [json.loads(x) for x in capfd.readouterr().err.splitlines() if x.startswith("{")]
    turn = next(x for x in lines if x["event"] == "turn.user")
    assert turn.get("text") == logged and turn["chars"] == len(f"card {CARD}")
    log.setup("json", "info")
