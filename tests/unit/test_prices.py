"""Cost you can trust: prices per provider type and model from a versioned table (shipped,
or a file the engine config names), each response priced at its own provider's rates with
cached input at the cached rate, the offline engine free, and an unknown model's cost
recorded as unknown (null), never as a wrong number."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from telephony_bot import app, price_table
from telephony_bot.config import load_engine_settings
from telephony_bot.dialplan.loader import load as load_plan
from telephony_bot.dialplan.router import CallInfo
from telephony_bot.errors import ConfigError
from telephony_bot.providers.base import Usage
from telephony_bot.providers.openai.protocol import usage_from
from telephony_bot.realtime.events import ResponseUsage
from telephony_bot.session.usage import CallUsage, Price, Rates
from tests.support.usage import WIRE_USAGE


def test_the_shipped_table_prices_preview_and_ga_models_apart_and_the_offline_engine_free() -> None:
    table = price_table.load()
    assert table.version == "openai-2026-12-07"
    preview = table.price("openai", "gpt-4o-realtime-preview-2024-12-17").rates
    ga = table.price("openai", "gpt-realtime").rates
    mini = table.price("openai", "gpt-4o-mini-realtime-preview").rates
    assert preview == Rates(5.0, 2.5, 20.0, 40.0, 2.5, 80.0)
    assert ga == Rates(4.0, 0.4, 16.0, 32.0, 0.4, 64.0)
    assert mini == Rates(0.6, 0.3, 2.4, 10.0, 0.3, 20.0)
    assert table.price("local", "").rates == table.price("echo", "").rates == Rates()
    assert table.price("openai", "gpt-realtime").table_version == table.version


def test_a_model_the_table_lacks_has_no_price_and_is_warned_about_once() -> None:
    table = price_table.load()
    with capture_logs() as logs:
        for _ in range(3):
            # an exact name only: a dated snapshot the table does not list is not guessed
            assert table.price("openai", "gpt-4o-realtime-preview-2024-10-01").rates is None
        assert table.price("compatible", "gpt-realtime").rates is None  # someone else's server
    warned = [e for e in logs if e["event"].startswith("no price for this provider and model")]
    assert [(e["provider_type"], e["model"]) for e in warned] == [
        ("openai", "gpt-4o-realtime-preview-2024-10-01"),
        ("compatible", "gpt-realtime"),
    ]
    assert warned[0]["log_level"] == "warning" and warned[0]["price_table"] == table.version


def test_a_response_is_priced_by_kind_with_cached_input_at_the_cached_rate() -> None:
    usage = usage_from(ResponseUsage.model_validate(WIRE_USAGE))
    assert (usage.input_cached_text_tokens, usage.input_cached_audio_tokens) == (256, 384)
    rates = price_table.load().price("openai", "gpt-4o-realtime-preview-2024-12-17").rates
    assert rates is not None
    # 57 text at $5, 256 cached text at $2.50, 92 audio at $40, 384 cached audio at $2.50,
    # 9 text out at $20, 23 audio out at $80 (per 1M tokens)
    expected = (57 * 5 + 256 * 2.5 + 92 * 40 + 384 * 2.5 + 9 * 20 + 23 * 80) / 1e6
    assert rates.cost(usage) == pytest.approx(expected) == pytest.approx(0.007585)


def test_a_server_that_does_not_split_its_cached_tokens_is_split_in_proportion() -> None:
    wire = {
        "total_tokens": 450,
        "input_token_details": {"text_tokens": 100, "audio_tokens": 300, "cached_tokens": 200},
        "output_token_details": {"text_tokens": 10, "audio_tokens": 40},
    }
    usage = usage_from(ResponseUsage.model_validate(wire))
    assert (usage.input_cached_text_tokens, usage.input_cached_audio_tokens) == (50, 150)


GA = Price("t1", "openai", "gpt-realtime", Rates(4.0, 0.4, 16.0, 32.0, 0.4, 64.0))
LOCAL = Price("t1", "local", "", Rates(), free=True)
UNKNOWN = Price("t1", "compatible", "my-model", None)
ONE = Usage(input_text_tokens=1000, input_audio_tokens=1000, output_audio_tokens=500)


def test_a_call_handed_to_the_offline_engine_pays_only_for_what_the_model_did() -> None:
    u = CallUsage(price_table="t1")
    u.add_response(ONE, GA)
    u.add_response(ONE, LOCAL)  # after a failover: the offline engine costs nothing
    assert u.cost == pytest.approx((1000 * 4 + 1000 * 32 + 500 * 64) / 1e6)
    s = u.summary()
    assert s["price_table"] == "t1" and s["input_audio_tokens"] == 2000
    assert s["cost_usd"] == pytest.approx(0.068) and "unpriced" not in s


def test_a_call_only_the_offline_engine_answered_is_not_billed_and_names_no_price_table() -> None:
    """The offline engine reports token-like counts; its call costs nothing and its record
    shows no dollar price table (the admin page says "free")."""
    u = CallUsage(price_table="t1")
    u.add_response(ONE, price_table.load().price("local", ""))
    s = u.summary()
    assert (s["cost_usd"], s["price_table"], s["billed"]) == (0.0, None, False)
    u.add_response(ONE, GA)  # a realtime model took over: billed from then on
    s = u.summary()
    assert s["billed"] is True and s["price_table"] == "t1" and s["cost_usd"] > 0


def test_a_response_of_an_unknown_model_makes_the_cost_unknown_not_wrong() -> None:
    u = CallUsage(price_table="t1")
    u.add_response(ONE, GA)
    u.add_response(Usage(), UNKNOWN)  # no tokens: nothing to price
    assert u.cost is not None
    u.add_response(ONE, UNKNOWN)
    s = u.summary()
    assert s["cost_usd"] is None and s["unpriced"] == ["compatible my-model"]
    assert s["output_audio_tokens"] == 1000  # the tokens are still counted


PLAN = """
version: 1
providers:
  realtime: {type: openai, model: gpt-realtime, api_key_env: TB_PRICES_KEY}
  offline: {type: local}
defaults:
  provider: [realtime, offline]
routes:
  - name: mini
    match: {number: "+4930100"}
    model: gpt-4o-mini-realtime-preview
  - name: others
"""


def _prices(tmp_path: Path, called: str, table: price_table.PriceTable | None = None) -> dict:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN)
    call = CallInfo(called, "+4930123", {}, datetime(2026, 11, 25, 10, tzinfo=UTC))
    setup, _ = app.for_call(load_plan([path], env={}), call, prices=table)
    assert setup is not None
    p = setup.options.prices
    return {"version": p.table_version, **{n: (x.model, x.rates) for n, x in p.by_provider.items()}}


def test_each_provider_of_a_route_is_priced_by_the_model_it_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TB_PRICES_KEY", "sk-test")
    got = _prices(tmp_path, "+4930100")
    assert got["version"] == "openai-2026-12-07"
    assert got["realtime"] == ("gpt-4o-mini-realtime-preview", Rates(0.6, 0.3, 2.4, 10, 0.3, 20))
    assert got["offline"] == ("", Rates())
    assert _prices(tmp_path, "+4930999")["realtime"][0] == "gpt-realtime"  # the defaults


OWN = """
version: acme-2027-01  # negotiated
free: [local]
models:
  openai:
    gpt-realtime:
      text: {input: 3, cached_input: 0.3, output: 12}
      audio: {input: 24, cached_input: 0.3, output: 48}
"""


def test_a_prices_file_in_the_engine_config_replaces_the_shipped_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = tmp_path / "prices.yaml"
    own.write_text(OWN)
    engine = load_engine_settings(env={"TELEPHONY_BOT_PRICES_FILE": str(own)})
    assert engine.prices.file == own
    table = price_table.load(engine.prices.file)
    monkeypatch.setenv("TB_PRICES_KEY", "sk-test")
    got = _prices(tmp_path, "+4930999", table)
    assert got["version"] == "acme-2027-01"
    assert got["realtime"] == ("gpt-realtime", Rates(3, 0.3, 12, 24, 0.3, 48))
    # the shipped table's other models are gone with it: a whole table, one version
    assert _prices(tmp_path, "+4930100", table)["realtime"][1] is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: x\nmodels: {openai: {m: {text: {input: -1, cached_input: 0, output: 0},"
         " audio: {input: 0, cached_input: 0, output: 0}}}}",
         "models.openai.m.text.input: Input should be greater than or equal to 0"),
        ("version: x\nmodels: {opnai: {}}", "models.opnai.[key]: Input should be 'openai'"),
        ("models: {}", "version: Field required"),
        ("version: x\nfree: [local]\nmodels: {local: {m: {text: {input: 0, cached_input: 0,"
         " output: 0}, audio: {input: 0, cached_input: 0, output: 0}}}}",
         "local is listed as free and has model prices too"),
        ("version: x\nmodels: {openai: {m: {text: {input: 1, cached_input: 1, output: 1}}}}",
         "models.openai.m.audio: Field required"),
        ("version: x\ncolour: blue", "colour: unknown field"),
    ],
)  # fmt: skip
def test_a_prices_file_with_a_mistake_is_refused_naming_file_and_field(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        price_table.load(path)
    assert str(path) in str(info.value) and expected in str(info.value), str(info.value)


def test_a_date_as_version_is_kept_as_written(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("version: 2027-01-31\n")
    assert price_table.load(path).version == "2027-01-31"


def test_a_prices_file_that_does_not_exist_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="prices.file: no such file"):
        load_engine_settings(env={"TELEPHONY_BOT_PRICES_FILE": str(tmp_path / "nope.yaml")})
