"""Turn-taking in the offline engine with its real speech parts (Silero/WebRTC turn detector,
Whisper, piper), over the engine's Realtime websocket, the caller's words in piper's voice
through a G.711 line, streamed in real time.

A finished question is answered after a pause shorter than the session's 500 ms of silence
(the old rule needed all 500 ms); a caller who pauses after "and" is not cut off; and the
session's `silence_duration_ms` stays the most silence any turn waits for."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import connect

from bench.local_speech import phone_line
from telephony_bot.local_engine.pipeline import Pipeline, Say
from telephony_bot.local_engine.server import LocalRealtimeServer
from telephony_bot.media.vad import frame_dbfs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

MS = 48  # bytes per ms of 24 kHz PCM16


class EchoBrain:
    """No greeting; answers every turn by naming what it heard."""

    def __init__(self, *_: Any) -> None:
        pass

    def start(self) -> list[Any]:
        return []

    def hear(self, text: str) -> list[Any]:
        return [Say("Got it.")]

    def tool_result(self, call_id: str, ok: bool, result: Any) -> list[Any]:
        return []


@pytest.fixture(scope="module")
def parts() -> tuple[Any, Any, Any]:
    from telephony_bot.local_engine.speech import Asr, SpeechDetector, Tts

    asr = Asr()
    asr.warmup()
    return asr, Tts(), SpeechDetector


@pytest.fixture
async def server(parts: tuple[Any, Any, Any]) -> AsyncIterator[LocalRealtimeServer]:
    asr, tts, detector = parts
    pipeline = Pipeline(
        detector_factory=detector, recognizer=asr, synthesizer=tts, brain_factory=EchoBrain
    )
    srv = LocalRealtimeServer("127.0.0.1", 0, pipeline)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


def _said(tts: Any, text: str) -> bytes:
    """`text` in piper's voice through a phone line, without piper's own leading and trailing
    silence (so the pauses between phrases are the ones the test writes)."""
    pcm = phone_line(b"".join(tts.synthesize(text)))
    frames = [pcm[i : i + 20 * MS] for i in range(0, len(pcm) - 20 * MS + 1, 20 * MS)]
    voiced = [i for i, f in enumerate(frames) if frame_dbfs(f) > -45]
    return b"".join(frames[voiced[0] : voiced[-1] + 1])


async def _call(
    server: LocalRealtimeServer, audio: bytes, silence_duration_ms: int, listen_s: float
) -> list[dict[str, Any]]:
    """Stream `audio` in real time (20 ms a message), keep listening `listen_s` after it;
    the server's events, each with the seconds since the end of the audio (`at`)."""
    events: list[dict[str, Any]] = []
    async with connect(server.url + "/realtime?model=local", max_size=None,
                       additional_headers={"OpenAI-Beta": "realtime=v1"}) as ws:  # fmt: skip
        td = {"type": "server_vad", "silence_duration_ms": silence_duration_ms}
        await ws.send(json.dumps({"type": "session.update", "session": {"turn_detection": td}}))
        t0 = time.monotonic()
        end = t0 + len(audio) / MS / 1000

        async def send() -> None:
            for k, i in enumerate(range(0, len(audio), 20 * MS)):
                await asyncio.sleep(max(0.0, t0 + k * 0.02 - time.monotonic()))
                chunk = base64.b64encode(audio[i : i + 20 * MS]).decode()
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))

        sender = asyncio.create_task(send())
        try:
            while (left := end + listen_s - time.monotonic()) > 0:
                try:
                    ev = json.loads(await asyncio.wait_for(ws.recv(), left))
                except TimeoutError:
                    break
                ev["at"] = time.monotonic() - end
                events.append(ev)
        finally:
            await sender
    return events


def _kinds(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


async def test_a_finished_question_is_answered_before_500_ms_of_silence(
    server: LocalRealtimeServer, parts: tuple[Any, Any, Any]
) -> None:
    # The caller asks, then stays quiet for 450 ms and no more audio comes: the old rule
    # (500 ms of silence ends every turn) never ends this turn; a finished question does.
    audio = bytes(300 * MS) + _said(parts[1], "What is your address?") + bytes(450 * MS)
    events = await _call(server, audio, silence_duration_ms=500, listen_s=4.0)
    done = _kinds(events, "conversation.item.input_audio_transcription.completed")
    assert [d["transcript"] for d in done] == ["What is your address?"], events
    assert _kinds(events, "response.audio.delta"), "the question was not answered"


async def test_a_pause_after_and_does_not_cut_the_caller_off(
    server: LocalRealtimeServer, parts: tuple[Any, Any, Any]
) -> None:
    tts = parts[1]
    audio = (
        bytes(300 * MS)
        + _said(tts, "I would like to book an appointment and")
        + bytes(400 * MS)  # longer than a finished sentence's pause, shorter than 500 ms
        + _said(tts, "on Monday at nine.")
        + bytes(1000 * MS)
    )
    events = await _call(server, audio, silence_duration_ms=500, listen_s=3.0)
    done = _kinds(events, "conversation.item.input_audio_transcription.completed")
    assert len(done) == 1, [d["transcript"] for d in done]
    words = done[0]["transcript"].lower()
    assert "appointment" in words and "monday" in words, words
    assert len(_kinds(events, "response.created")) == 1  # answered once, after all of it


async def test_the_session_silence_duration_is_the_most_a_turn_waits(
    server: LocalRealtimeServer, parts: tuple[Any, Any, Any]
) -> None:
    # With silence_duration_ms 200 the same 400 ms pause after "and" ends the turn: the
    # session's setting bounds even an unfinished sentence's wait.
    tts = parts[1]
    audio = (
        bytes(300 * MS)
        + _said(tts, "I would like to book an appointment and")
        + bytes(400 * MS)
        + _said(tts, "on Monday at nine.")
        + bytes(1000 * MS)
    )
    events = await _call(server, audio, silence_duration_ms=200, listen_s=3.0)
    done = _kinds(events, "conversation.item.input_audio_transcription.completed")
    assert len(done) == 2, [d["transcript"] for d in done]
    assert "appointment" in done[0]["transcript"].lower()
    assert "monday" in done[1]["transcript"].lower()
