"""The local engine's OpenAI-Realtime-compatible server, driven by the official `openai` SDK.

The speech parts are fakes that behave like the real ones (energy VAD on 20 ms frames with a
300 ms pre-roll, a recognizer that hears a fixed phrase in loud audio, a synthesizer that takes
real time per clause and makes a 60 ms-per-word tone, a tiny scripted brain), so these tests
check the protocol: event order and names (preview and GA), streaming, tool round trips,
truncation, cancellation, barge-in, errors that keep the socket open, and the shared pool.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("websockets")

from openai import AsyncOpenAI  # noqa: E402

from telephony_bot.local_engine.pipeline import (  # noqa: E402
    CallTool,
    Hangup,
    Pipeline,
    Say,
    Transfer,
)
from telephony_bot.local_engine.server import LocalRealtimeServer  # noqa: E402
from tests.support.speech_fakes import (  # noqa: E402
    EnergyDetector,
    FixedRecognizer,
    ToneSynthesizer,
)
from tests.support.speech_fakes import until as _until  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

PREVIEW_MODEL = "gpt-4o-realtime-preview-2024-12-17"
GA_MODEL = "gpt-realtime"
RATE = 24000


# ---------------------------------------------------------------- fakes


class ScriptBrain:
    """greeting on start; 'weather' -> tool call; 'transfer'/'bye' -> builtins; 'story' -> long."""

    def __init__(self, instructions: str, tools: list[dict[str, Any]], extra: dict[str, Any]):
        self.instructions = instructions
        self.tools = tools
        self.heard: list[str] = []
        self.results: list[tuple[str, bool, Any]] = []

    def start(self) -> list[Any]:
        return [Say("Hello, this is the test line. How can I help?")]

    def hear(self, text: str) -> list[Any]:
        self.heard.append(text)
        if "weather" in text:
            return [Say("Let me check."), CallTool("call_w1", "get_weather", {"city": "Paris"})]
        if "transfer" in text:
            return [Say("Putting you through."), Transfer("sip:100@example.org")]
        if "bye" in text:
            return [Hangup("caller said goodbye")]
        if "story" in text:
            clause = "once upon a time there was a very long story"
            return [Say(", ".join([clause] * 40) + ".")]
        return [Say(f"You said {text}. Anything else?")]

    def tool_result(self, call_id: str, ok: bool, result: Any) -> list[Any]:
        self.results.append((call_id, ok, result))
        if ok:
            return [Say(f"It is {result['temp']} degrees in Paris.")]
        return [Say("Sorry, that did not work.")]


class Parts:
    def __init__(self, workers: int = 2) -> None:
        self.recognizer = FixedRecognizer()
        self.synthesizer = ToneSynthesizer()
        self.brains: list[ScriptBrain] = []
        self.pipeline = Pipeline(
            detector_factory=EnergyDetector,
            recognizer=self.recognizer,
            synthesizer=self.synthesizer,
            brain_factory=self._brain,
            workers=workers,
        )

    def _brain(self, instructions: str, tools: list[dict[str, Any]], extra: dict[str, Any]):
        brain = ScriptBrain(instructions, tools, extra)
        self.brains.append(brain)
        return brain


# ---------------------------------------------------------------- helpers


def _tone(ms: int, amp: float = 8000.0) -> bytes:
    t = np.arange(ms * RATE // 1000) / RATE
    return (np.sin(2 * np.pi * 300 * t) * amp).astype("<i2").tobytes()


def _silence(ms: int) -> bytes:
    return bytes(ms * RATE // 1000 * 2)


async def _send_audio(conn: Any, pcm: bytes, chunk_ms: int = 100) -> None:
    step = chunk_ms * RATE // 1000 * 2
    for i in range(0, len(pcm), step):
        await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i : i + step]).decode())


def _types(log: list[Any]) -> list[str]:
    return [e.type for e in log]


@pytest.fixture
async def parts() -> Parts:
    return Parts()


@pytest.fixture
async def server(parts: Parts) -> AsyncIterator[LocalRealtimeServer]:
    srv = LocalRealtimeServer("127.0.0.1", 0, parts.pipeline)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


def _client(server: LocalRealtimeServer) -> AsyncOpenAI:
    return AsyncOpenAI(api_key="x", websocket_base_url=server.url)


PREVIEW_SESSION = {
    "instructions": "You are a test bot.",
    "voice": "alloy",
    "input_audio_format": "pcm16",
    "output_audio_format": "pcm16",
    "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
    "tools": [
        {
            "type": "function",
            "name": "get_weather",
            "description": "weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ],
}

GA_SESSION = {
    "type": "realtime",
    "instructions": "You are a test bot.",
    "audio": {
        "input": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
        },
        "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy"},
    },
    "tools": PREVIEW_SESSION["tools"],
}


# ---------------------------------------------------------------- tests


async def test_preview_voice_turn_streams_audio_and_reports_usage(
    server: LocalRealtimeServer, parts: Parts
) -> None:
    async with _client(server).beta.realtime.connect(model=PREVIEW_MODEL) as conn:
        log: list[Any] = []
        created = await _until(conn, "session.created", log)
        assert created.session.model == PREVIEW_MODEL
        await conn.session.update(session=PREVIEW_SESSION)
        updated = await _until(conn, "session.updated", log)
        assert updated.session.instructions == "You are a test bot."
        assert updated.session.turn_detection.silence_duration_ms == 300

        # Greeting on the first response.create.
        await conn.response.create()
        done = await _until(conn, "response.done", log)
        assert done.response.status == "completed"
        types = _types(log)
        assert "response.audio.delta" in types and "response.output_audio.delta" not in types
        transcript = next(e for e in log if e.type == "response.audio_transcript.done").transcript
        assert transcript == "Hello, this is the test line. How can I help?"
        # Streamed clause by clause: audio of the first clause before the second clause's text.
        i_tr = [i for i, t in enumerate(types) if t == "response.audio_transcript.delta"]
        i_au = [i for i, t in enumerate(types) if t == "response.audio.delta"]
        assert len(i_tr) == 3 and i_au[0] < i_tr[1]
        assert parts.brains[0].instructions == "You are a test bot."
        assert parts.brains[0].tools[0]["name"] == "get_weather"

        # A voice turn through the server VAD.
        log.clear()
        await _send_audio(conn, _silence(400) + _tone(700) + _silence(500))
        started = await _until(conn, "input_audio_buffer.speech_started", log)
        assert 0 <= started.audio_start_ms <= 400
        stopped = await _until(conn, "input_audio_buffer.speech_stopped", log)
        assert 1000 <= stopped.audio_end_ms <= 1200
        await _until(conn, "input_audio_buffer.committed", log)
        item = await _until(conn, "conversation.item.created", log)
        assert item.item.role == "user" and item.item.content[0].type == "input_audio"
        tr = await _until(conn, "conversation.item.input_audio_transcription.completed", log)
        assert tr.transcript == "hello there" and tr.item_id == started.item_id
        done = await _until(conn, "response.done", log)
        order = _types(log)
        assert order.index("response.created") > order.index(
            "conversation.item.input_audio_transcription.completed"
        )
        seq = [
            "response.output_item.added",
            "response.content_part.added",
            "response.audio_transcript.delta",
            "response.audio.delta",
            "response.audio.done",
            "response.audio_transcript.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.done",
        ]
        firsts = [order.index(t) for t in seq]
        assert firsts == sorted(firsts)
        audio = b"".join(base64.b64decode(e.delta) for e in log if e.type == "response.audio.delta")
        words = len("You said hello there. Anything else?".split())
        assert len(audio) == words * 60 * RATE // 1000 * 2
        assert all(
            len(base64.b64decode(e.delta)) <= 4800 for e in log if e.type == "response.audio.delta"
        )
        usage = done.response.usage
        assert usage.output_token_details.audio_tokens == round(words * 0.06 * 20)
        assert usage.output_token_details.text_tokens == words
        assert usage.input_token_details.audio_tokens == round(1.6 * 10)
        assert usage.input_token_details.text_tokens == 2
        assert usage.input_token_details.cached_tokens == 0
        assert usage.total_tokens == usage.input_tokens + usage.output_tokens
        assert "queue_wait_ms" in done.response.metadata
        assert parts.brains[0].heard == ["hello there"]


async def test_ga_function_call_round_trip_transfer_and_hangup(
    server: LocalRealtimeServer, parts: Parts
) -> None:
    async with _client(server).realtime.connect(model=GA_MODEL) as conn:
        log: list[Any] = []
        await _until(conn, "session.created", log)
        await conn.session.update(session=GA_SESSION)
        await _until(conn, "session.updated", log)
        await conn.response.create()
        await _until(conn, "response.done", log)
        types = _types(log)
        assert "response.output_audio.delta" in types and "response.audio.delta" not in types
        assert "response.output_audio_transcript.done" in types

        log.clear()
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "what is the weather"}],
            }
        )
        await _until(conn, "conversation.item.done", log)
        await conn.response.create()
        args = await _until(conn, "response.function_call_arguments.done", log)
        assert args.name == "get_weather" and args.call_id == "call_w1"
        assert json.loads(args.arguments) == {"city": "Paris"}
        done = await _until(conn, "response.done", log)
        assert done.response.status == "completed"
        assert [o.type for o in done.response.output] == ["message", "function_call"]
        assert "response.output_item.done" in _types(log)

        log.clear()
        await conn.conversation.item.create(
            item={"type": "function_call_output", "call_id": "call_w1", "output": '{"temp": 21}'}
        )
        await conn.response.create()
        done = await _until(conn, "response.done", log)
        said = next(e for e in log if e.type == "response.output_audio_transcript.done")
        assert said.transcript == "It is 21 degrees in Paris."
        assert parts.brains[0].results == [("call_w1", True, {"temp": 21})]

        # Transfer and Hangup become calls to the builtin tools.
        for text, name, expected in (
            ("transfer me", "transfer", {"destination": "sip:100@example.org"}),
            ("bye now", "hangup", {"reason": "caller said goodbye"}),
        ):
            log.clear()
            await conn.conversation.item.create(
                item={
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": text}],
                }
            )
            await conn.response.create()
            args = await _until(conn, "response.function_call_arguments.done", log)
            assert args.name == name and json.loads(args.arguments) == expected
            await _until(conn, "response.done", log)


async def test_truncate_and_malformed_events_give_errors_and_keep_the_socket(
    server: LocalRealtimeServer,
) -> None:
    async with _client(server).beta.realtime.connect(model=PREVIEW_MODEL) as conn:
        log: list[Any] = []
        await _until(conn, "session.created", log)
        await conn.response.create()
        done = await _until(conn, "response.done", log)
        item_id = done.response.output[0].id
        generated_ms = (
            sum(len(base64.b64decode(e.delta)) for e in log if e.type == "response.audio.delta")
            // 48
        )

        await conn.conversation.item.truncate(
            item_id=item_id, content_index=0, audio_end_ms=generated_ms - 200, event_id="evt_t1"
        )
        ok = await _until(conn, "conversation.item.truncated", log)
        assert ok.audio_end_ms == generated_ms - 200
        await conn.conversation.item.truncate(
            item_id=item_id, content_index=0, audio_end_ms=generated_ms + 500, event_id="evt_t2"
        )
        err = await _until(conn, "error", log)
        assert err.error.event_id == "evt_t2" and "shorter" in err.error.message

        await conn.input_audio_buffer.append(audio="!!not base64!!", event_id="evt_b64")
        err = await _until(conn, "error", log)
        assert err.error.event_id == "evt_b64"
        assert err.error.type == "invalid_request_error"

        await conn.send({"type": "no.such.event", "event_id": "evt_unknown"})  # type: ignore[arg-type]
        err = await _until(conn, "error", log)
        assert err.error.event_id == "evt_unknown" and err.error.param == "type"

        await conn._connection.send("{not json")  # the SDK has no raw send on the beta API
        err = await _until(conn, "error", log)
        assert err.error.code == "invalid_json"

        await conn.session.update(session={"output_audio_format": "speex"})
        err = await _until(conn, "error", log)
        assert err.error.param == "session.output_audio_format"

        await conn.response.cancel(event_id="evt_c")
        err = await _until(conn, "error", log)
        assert err.error.event_id == "evt_c"

        await conn.conversation.item.delete(item_id=item_id)
        await _until(conn, "conversation.item.deleted", log)

        # Still alive and working.
        await conn.session.update(session={"instructions": "still here"})
        updated = await _until(conn, "session.updated", log)
        assert updated.session.instructions == "still here"


async def test_cancel_mid_response_and_barge_in(server: LocalRealtimeServer, parts: Parts) -> None:
    async with _client(server).beta.realtime.connect(model=PREVIEW_MODEL) as conn:
        log: list[Any] = []
        await _until(conn, "session.created", log)
        await conn.session.update(session=PREVIEW_SESSION)
        await _until(conn, "session.updated", log)
        await conn.response.create()
        await _until(conn, "response.done", log)

        # Client cancel in the middle of a long reply.
        log.clear()
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "a story"}],
            }
        )
        await conn.response.create()
        await _until(conn, "response.audio.delta", log)
        t0 = time.monotonic()
        await conn.response.cancel()
        done = await _until(conn, "response.done", log)
        assert time.monotonic() - t0 < 1.0
        assert done.response.status == "cancelled"
        assert done.response.status_details.reason == "client_cancelled"
        assert done.response.output[0].status == "incomplete"
        assert len(parts.synthesizer.calls) < 30  # synthesis stopped, not run to the end
        await asyncio.sleep(0.2)  # nothing more for the cancelled response
        log.clear()

        # Barge-in: the caller speaks during a long reply -> server cancels it.
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "story again"}],
            }
        )
        await conn.response.create()
        first = await _until(conn, "response.audio.delta", log)
        await _send_audio(conn, _silence(200) + _tone(400))
        await _until(conn, "input_audio_buffer.speech_started", log)
        done = await _until(conn, "response.done", log)
        assert done.response.id == first.response_id
        assert done.response.status == "cancelled"
        assert done.response.status_details.reason == "turn_detected"
        # The caller's turn then gets its own answer.
        await _send_audio(conn, _silence(500))
        await _until(conn, "conversation.item.input_audio_transcription.completed", log)
        done = await _until(conn, "response.done", log)
        assert done.response.status == "completed"
        said = [e for e in log if e.type == "response.audio_transcript.done"][-1].transcript
        assert said == "You said hello there. Anything else?"


async def test_client_turns_and_shared_pool_queue_wait(parts: Parts) -> None:
    parts.pipeline.workers = 1
    parts.recognizer.delay = 0.3
    srv = LocalRealtimeServer("127.0.0.1", 0, parts.pipeline)
    await srv.start()
    try:
        client = _client(srv)

        async def one_turn() -> Any:
            async with client.beta.realtime.connect(model=PREVIEW_MODEL) as conn:
                log: list[Any] = []
                await _until(conn, "session.created", log)
                await conn.session.update(session={"turn_detection": None})
                await _until(conn, "session.updated", log)
                await _send_audio(conn, _tone(50))
                await conn.input_audio_buffer.commit(event_id="evt_small")
                err = await _until(conn, "error", log)
                assert err.error.code == "input_audio_buffer_commit_empty"
                await _send_audio(conn, _tone(500))
                await conn.input_audio_buffer.commit()
                await _until(conn, "input_audio_buffer.committed", log)
                assert "input_audio_buffer.speech_started" not in _types(log)
                tr = await _until(
                    conn, "conversation.item.input_audio_transcription.completed", log
                )
                assert tr.transcript == "hello there"
                await conn.response.create()
                done = await _until(conn, "response.done", log)
                said = [e for e in log if e.type == "response.audio_transcript.done"]
                assert said[-1].transcript == "You said hello there. Anything else?"
                return done

        t0 = time.monotonic()
        dones = await asyncio.gather(one_turn(), one_turn(), one_turn())
        elapsed = time.monotonic() - t0
        assert elapsed >= 0.85  # three 0.3 s transcriptions through one worker
        assert all(d.response.status == "completed" for d in dones)
        assert parts.recognizer.calls == 3
    finally:
        await srv.stop()


def _dominant_hz(pcm: bytes, rate: int) -> float:
    x = np.frombuffer(pcm, "<i2").astype(np.float64)
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / rate)[int(np.argmax(spec))])


@pytest.mark.parametrize(
    ("fmt", "ga_fmt", "encode", "decode"),
    [
        ("g711_ulaw", "audio/pcmu", "ulaw_encode", "ulaw_decode"),
        ("g711_alaw", "audio/pcma", "alaw_encode", "alaw_decode"),
    ],
)
@pytest.mark.parametrize("dialect", ["preview", "ga"])
async def test_g711_audio_both_ways(
    server: LocalRealtimeServer,
    parts: Parts,
    dialect: str,
    fmt: str,
    ga_fmt: str,
    encode: str,
    decode: str,
) -> None:
    """A client on G.711 (a telephony leg relayed as is): 8 kHz companded audio in, the VAD
    turn and transcript work, and the reply comes back as 8 kHz G.711 of the right length and
    pitch."""
    from telephony_bot.media.codecs import g711

    enc, dec = getattr(g711, encode), getattr(g711, decode)
    if dialect == "preview":
        model = PREVIEW_MODEL
        sess: dict[str, Any] = dict(
            PREVIEW_SESSION, input_audio_format=fmt, output_audio_format=fmt
        )
        delta_type = "response.audio.delta"
    else:
        model = GA_MODEL
        sess = json.loads(json.dumps(GA_SESSION))
        sess["audio"]["input"]["format"] = {"type": ga_fmt}
        sess["audio"]["output"]["format"] = {"type": ga_fmt}
        delta_type = "response.output_audio.delta"
    t = np.arange(8000 * 7 // 10) / 8000
    tone8k = (np.sin(2 * np.pi * 300 * t) * 8000).astype("<i2").tobytes()
    caller = enc(bytes(3200) + tone8k + bytes(4000))  # 0.2 s quiet, 0.7 s tone, 0.25 s quiet
    async with _client(server).beta.realtime.connect(model=model) as conn:
        log: list[Any] = []
        await _until(conn, "session.created", log)
        await conn.session.update(session=sess)
        await _until(conn, "session.updated", log)
        for i in range(0, len(caller), 800):  # 100 ms of G.711 per append
            await conn.input_audio_buffer.append(
                audio=base64.b64encode(caller[i : i + 800]).decode()
            )
        await conn.input_audio_buffer.append(audio=base64.b64encode(enc(bytes(4800))).decode())
        stopped = await _until(conn, "input_audio_buffer.speech_stopped", log)
        assert 850 <= stopped.audio_end_ms <= 1000  # the tone ends at 900 ms of stream time
        tr = await _until(conn, "conversation.item.input_audio_transcription.completed", log)
        assert tr.transcript == "hello there"  # the decoded audio reached the recognizer loud
        done = await _until(conn, "response.done", log)
        assert done.response.status == "completed"
        wire = b"".join(base64.b64decode(e.delta) for e in log if e.type == delta_type)
    # Greeting + "You said hello there. Anything else?": 60 ms of tone per word, 8 bytes/ms.
    words = len("Hello, this is the test line. How can I help?".split()) + len(
        "You said hello there. Anything else?".split()
    )
    assert abs(len(wire) - words * 60 * 8) <= 2 * 8 * 10  # within the resampler's few ms
    pcm8k = dec(wire)
    assert abs(_dominant_hz(pcm8k, 8000) - 440) < 10


async def test_unknown_audio_format_is_refused_and_the_session_goes_on(
    server: LocalRealtimeServer,
) -> None:
    async with _client(server).beta.realtime.connect(model=PREVIEW_MODEL) as conn:
        log: list[Any] = []
        await _until(conn, "session.created", log)
        await conn.session.update(session={"input_audio_format": "opus"})
        err = await _until(conn, "error", log)
        assert err.error.param == "session.input_audio_format"
        assert "g711_ulaw" in err.error.message  # says what is supported
        await conn.session.update(session={"instructions": "still here"})
        ok = await _until(conn, "session.updated", log)
        assert ok.session.input_audio_format == "pcm16"


async def test_say_exactly_is_spoken_verbatim_then_the_flow_goes_on(
    server: LocalRealtimeServer, parts: Parts
) -> None:
    """What the engine uses for a route's greeting and an operator's `say`: the text is
    spoken as given, and the brain's own start follows the greeting."""
    from telephony_bot.providers.base import say_exactly

    async with _client(server).beta.realtime.connect(model=PREVIEW_MODEL) as conn:
        log: list[Any] = []
        await _until(conn, "session.created", log)
        await conn.session.update(session=PREVIEW_SESSION)
        await _until(conn, "session.updated", log)
        await conn.response.create(response={"instructions": say_exactly("Welcome to Example.")})
        await _until(conn, "response.done", log)
        said = [e.transcript for e in log if e.type == "response.audio_transcript.done"]
        assert said == ["Welcome to Example.", "Hello, this is the test line. How can I help?"]
        log.clear()
        text = "Your parcel left the depot at nine; it arrives tomorrow."
        await conn.response.create(response={"instructions": say_exactly(text)})
        await _until(conn, "response.done", log)
        said = [e.transcript for e in log if e.type == "response.audio_transcript.done"]
        assert said == [text]
        assert parts.synthesizer.calls[-2:] == [
            "Your parcel left the depot at nine; ",
            "it arrives tomorrow.",
        ]  # clause by clause, as any reply

        # Other instructions do not make the flow say them: it follows its script.
        log.clear()
        await conn.response.create(response={"instructions": "Be brief."})
        await _until(conn, "response.done", log)
        assert not [e for e in log if e.type == "response.audio_transcript.done"]


KEYS_FLOW = {
    "start": "number",
    "states": {
        "number": {
            "say": "Please enter your customer number.",
            "intents": [
                {
                    "name": "customer",
                    "examples": ["my customer number is 1234"],
                    "slots": {"customer": {"type": "digits", "length": 4}},
                    "then": "menu",
                }
            ],
            "fallback": {"say": "Sorry, I need your customer number.", "then": "hangup"},
        },
        "menu": {
            "say": "Thank you, customer {customer}. Press 1 for sales or 2 for a person.",
            "intents": [
                {"name": "sales", "dtmf": "1", "then": "sales"},
                {"name": "desk", "dtmf": "2", "then": "hangup"},
            ],
        },
        "sales": {"say": "Sales it is. Goodbye.", "then": "hangup"},
    },
}


async def test_key_presses_drive_the_flow_and_a_new_connection_replays_them() -> None:
    """The item the worker sends for a burst of keys fills the flow's digits slot (the real
    flow brain, fake speech parts); given again as the conversation so far on a new
    connection (a reconnect, a failover), it puts the flow where the caller is."""
    from telephony_bot import keypad
    from telephony_bot.local_engine.engine import brain_factory
    from telephony_bot.providers.base import HistoryItem
    from telephony_bot.providers.openai.session_config import history_events

    synth = ToneSynthesizer()
    pipeline = Pipeline(EnergyDetector, FixedRecognizer(), synth, brain_factory)
    srv = LocalRealtimeServer("127.0.0.1", 0, pipeline)
    await srv.start()
    session = {**PREVIEW_SESSION, "tools": [], "flow": KEYS_FLOW}

    async def said(conn: Any, log: list[Any]) -> list[str]:
        await _until(conn, "response.done", log)
        return [e.transcript for e in log if e.type == "response.audio_transcript.done"]

    keys = keypad.pressed_text("0412", "#")
    try:
        async with _client(srv).beta.realtime.connect(model=PREVIEW_MODEL) as conn:
            log: list[Any] = []
            await _until(conn, "session.created", log)
            await conn.session.update(session=session)  # type: ignore[arg-type]
            await _until(conn, "session.updated", log)
            await conn.response.create()
            assert await said(conn, log) == ["Please enter your customer number."]
            log.clear()
            await conn.conversation.item.create(
                item={
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": keys}],
                }  # fmt: skip
            )
            await conn.response.create()
            assert await said(conn, log) == [
                "Thank you, customer 0 4 1 2. Press 1 for sales or 2 for a person."
            ]
        history = [
            HistoryItem("assistant", "Please enter your customer number."),
            HistoryItem("user", keys),
            HistoryItem("assistant", "Thank you, customer 0 4 1 2. Press 1 for sales."),
        ]
        async with _client(srv).beta.realtime.connect(model=PREVIEW_MODEL) as conn:
            log = []
            await _until(conn, "session.created", log)
            await conn.session.update(session=session)  # type: ignore[arg-type]
            await _until(conn, "session.updated", log)
            for event in history_events(history, "preview"):
                await conn.send(event)  # type: ignore[arg-type]
            await _send_audio(conn, _silence(100))  # the call goes on: restoring is over
            log.clear()
            await conn.conversation.item.create(
                item={"type": "message", "role": "user",
                      "content": [{"type": "input_text", "text": keypad.pressed_text("1")}]}
            )  # fmt: skip
            await conn.response.create()
            assert await said(conn, log) == ["Sales it is. Goodbye."]  # the menu's key 1
            calls = [e for e in log if e.type == "response.function_call_arguments.done"]
            assert [c.name for c in calls] == ["hangup"]
    finally:
        await srv.stop()


async def test_a_result_that_follows_reaches_the_brain_as_the_tools_result(
    server: LocalRealtimeServer, parts: Parts
) -> None:
    """An async tool (or one past the tool window): the output saying the result will
    follow leaves the brain waiting; the system message giving the result later is the
    tool's result to it, and the reply asked for then speaks it."""
    from telephony_bot.providers.base import PENDING_OUTPUT, result_follows

    async with _client(server).beta.realtime.connect(model=PREVIEW_MODEL) as conn:
        log: list[Any] = []
        await _until(conn, "session.created", log)
        await conn.session.update(session=PREVIEW_SESSION)
        await _until(conn, "session.updated", log)
        await conn.response.create()  # the greeting
        await _until(conn, "response.done", log)
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "what is the weather"}],
            }
        )
        await conn.response.create()
        await _until(conn, "response.function_call_arguments.done", log)
        await _until(conn, "response.done", log)
        log.clear()
        await conn.conversation.item.create(
            item={"type": "function_call_output", "call_id": "call_w1", "output": PENDING_OUTPUT}
        )
        await conn.response.create()
        await _until(conn, "response.done", log)
        assert parts.brains[0].results == []  # still waiting for the result
        assert not [e for e in log if e.type == "response.audio_transcript.done"]
        log.clear()
        text = result_follows("get_weather", "call_w1", '{"temp": 19}', True)
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "system",
                "content": [{"type": "input_text", "text": text}],
            }
        )
        await conn.response.create()
        await _until(conn, "response.done", log)
        said = [e.transcript for e in log if e.type == "response.audio_transcript.done"]
        assert said == ["It is 19 degrees in Paris."]
        assert parts.brains[0].results == [("call_w1", True, {"temp": 19})]
        assert parts.brains[0].heard == ["what is the weather"]  # not taken as the caller's
