"""What a worker tells the local engine about a route's brain (session.update extras)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from telephony_bot import app
from telephony_bot.dialplan.loader import load
from telephony_bot.dialplan.router import CallInfo

PLAN = """
version: 1
providers:
  offline: {type: local}
  offline_llm:
    type: local
    llm: {base_url: "http://127.0.0.1:11434/v1", model: "llama3.2", api_key_env: LLM_KEY}
defaults:
  provider: offline
  instructions: "You answer for Example Clinic."
routes:
  - name: scripted
    match: {number: "+4930100"}
    flow:
      start: hello
      states:
        hello: {say: "Hello.", then: hangup}
  - name: llm
    match: {number: "+4930200"}
    provider: offline_llm
"""


def _setup(tmp_path: Path, called: str) -> app.CallSetup:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN)
    loaded = load([path])
    call = CallInfo(called, "+4930123", {}, datetime(2026, 11, 25, 10, tzinfo=UTC))
    setup, _reason = app.for_call(loaded, call)
    assert setup is not None
    return setup


def test_a_route_with_a_flow_sends_the_flow_and_the_caller(tmp_path: Path) -> None:
    extra = _setup(tmp_path, "+4930100").config.extra
    assert extra["flow"]["start"] == "hello" and "llm" not in extra
    assert extra["variables"]["caller"] == "+4930123"


def test_a_route_on_an_llm_sends_the_endpoint_but_never_a_key(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LLM_KEY", "sk-very-secret")
    setup = _setup(tmp_path, "+4930200")
    extra = setup.config.extra
    assert extra["llm"] == {
        "base_url": "http://127.0.0.1:11434/v1",
        "model": "llama3.2",
        "api_key_env": "LLM_KEY",
        "temperature": 0.3,
        "max_tokens": 300,
        "first_token_timeout_s": 8.0,
    }
    assert "flow" not in extra
    assert "sk-very-secret" not in repr(setup.config)
    assert setup.config.instructions == "You answer for Example Clinic."


GREETINGS = """
version: 1
providers:
  offline: {type: local}
  realtime: {type: openai, model: gpt-realtime, api_key_env: NO_SUCH_KEY_NEEDED_HERE}
defaults:
  provider: offline
  instructions: "You answer for Example Clinic."
  tools: [hangup]
  flow:
    start: lookup
    states:
      lookup:
        tool: {name: hangup, args: {}, result: r}
        say: "Hello {caller}."
        then: hangup
routes:
  - name: offline-no-greeting          # the flow's start (a lookup, then words) opens
    match: {number: "+4930101"}
    greeting: null
  - name: offline-greeting             # the greeting, then the flow's start
    match: {number: "+4930102"}
    greeting: "Example Clinic."
  - name: offline-listens-first        # a start state that only listens: the caller begins
    match: {number: "+4930103"}
    flow:
      start: menu
      states:
        menu: {intents: [{name: desk, examples: [desk], then: hangup}]}
  - name: realtime-no-greeting         # a realtime model: unchanged, the caller begins
    match: {number: "+4930104"}
    provider: realtime
    greeting: null
"""


def test_a_route_without_greeting_on_the_offline_engine_opens_with_its_flow(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("NO_SUCH_KEY_NEEDED_HERE", "sk-test")
    path = tmp_path / "plan.yaml"
    path.write_text(GREETINGS)
    loaded = load([path])
    when = datetime(2026, 11, 25, 10, tzinfo=UTC)

    def greeting(called: str, provider: str | None = None) -> str | None:
        setup, _ = app.for_call(loaded, CallInfo(called, "+4930123", {}, when), provider)
        assert setup is not None
        return setup.options.greeting

    assert greeting("+4930101") == ""  # "": the provider speaks first (the flow's start)
    assert greeting("+4930102") == "Example Clinic."
    assert greeting("+4930103") is None
    assert greeting("+4930104") is None
    assert greeting("+4930104", "offline") == ""  # --provider offline: the flow opens the call
