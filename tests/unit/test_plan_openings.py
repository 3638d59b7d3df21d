"""What callers hear first on the shipped plans' offline routes, spoken by the real offline
voice: short enough to answer soon, and nothing said twice."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from telephony_bot.dialplan.loader import load
from telephony_bot.dialplan.router import effective
from telephony_bot.local_engine.brain import FlowRunner
from telephony_bot.local_engine.pipeline import Say

DIALPLANS = Path(__file__).resolve().parents[2] / "dialplans"
ENV = {"OPENAI_API_KEY": "sk-test", "HOSPITAL_API_TOKEN": "t", "FIELD_API_TOKEN": "t"}
NIGHT = datetime(2026, 3, 28, 21, 0)


@pytest.fixture(scope="module")
def tts() -> object:
    from telephony_bot.local_engine.speech import Tts

    return Tts()


def _voiced_s(tts: object, text: str) -> float:
    """Seconds from the first to the last voiced 20 ms of `text` in the offline voice."""
    pcm = np.frombuffer(b"".join(tts.synthesize(text)), "<i2").astype(np.float64)  # type: ignore[attr-defined]
    frames = pcm[: len(pcm) // 480 * 480].reshape(-1, 480)  # 20 ms at 24 kHz
    voiced = np.flatnonzero(np.sqrt((frames**2).mean(axis=1)) > 32768 * 10 ** (-45 / 20))
    return float(voiced[-1] + 1 - voiced[0]) * 0.02


def _opening(plan_name: str, route_name: str) -> tuple[str, FlowRunner]:
    plan = load(DIALPLANS / plan_name, env=ENV).plan
    route = effective(plan, plan.route(route_name))
    assert route.flow is not None
    runner = FlowRunner(route.flow, now=NIGHT, variables={"caller": "+4930999"})
    said = [a.text for a in runner.start() if isinstance(a, Say)]
    return " ".join([route.greeting or "", *said]).strip(), runner


def test_the_after_hours_hospital_lets_the_caller_speak_within_about_5_s(tts: object) -> None:
    """Greeting and the flow's first question together (what a caller hears before they can
    answer): was 14.8 s; it still names the hospital, asks for the booking and names the
    nurse for urgent symptoms."""
    text, runner = _opening("hospital.yaml", "hospital-night")
    seconds = _voiced_s(tts, text)
    print(f"after-hours opening: {seconds:.1f} s: {text!r}")
    assert seconds <= 5.8, (seconds, text)
    words = text.lower()
    assert "example hospital" in words and "department" in words and "nurse" in words
    # what the old greeting said up front is told to a caller who asks for the desk
    said = " ".join(
        a.text for a in runner.hear("is the appointment desk open") if isinstance(a, Say)
    )
    assert said.startswith("The appointment desk is closed now"), said


def test_the_field_inspection_route_asks_for_the_site_once() -> None:
    text, _ = _opening("field_inspection.yaml", "field-inspection")
    assert text.lower().count("which site did you inspect") == 1, text
