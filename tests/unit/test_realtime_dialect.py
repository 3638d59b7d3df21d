"""The dialect a Realtime server answers in, and the audio format names it accepts."""

from __future__ import annotations

from telephony_bot.realtime.dialect import FORMATS, audio_format, canonical, request_dialect


def test_a_server_answers_in_the_dialect_the_client_asked_for() -> None:
    assert request_dialect("gpt-4o-realtime-preview", "realtime=v1") == "preview"
    assert request_dialect("gpt-4o-realtime-preview", None) == "ga"  # no beta header: GA
    assert request_dialect("gpt-realtime", "realtime=v1") == "ga"  # a GA model is GA


def test_each_format_means_one_codec_in_either_dialect() -> None:
    for fmt in FORMATS:
        assert canonical(fmt) == fmt
        ga = audio_format(fmt, "ga")
        assert isinstance(ga, dict) and canonical(ga["type"]) == fmt
    assert canonical("audio/opus") is None
