"""The local engine with a chat-completions LLM as its brain (a route's `llm:`), driven by
the official `openai` SDK as a realtime client: the reply is spoken while the LLM still
streams it, the LLM's tool calls come out as realtime function calls and their outputs go
back into its history, and a dead LLM endpoint gives the caller an apology, not silence."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip("openai")

from openai import AsyncOpenAI  # noqa: E402

from telephony_bot.local_engine.chat_brain import APOLOGY, ClauseChunker  # noqa: E402
from telephony_bot.local_engine.engine import brain_factory  # noqa: E402
from telephony_bot.local_engine.pipeline import Pipeline  # noqa: E402
from telephony_bot.local_engine.server import LocalRealtimeServer  # noqa: E402
from tests.support.chat_server import ChatServer  # noqa: E402
from tests.support.speech_fakes import (  # noqa: E402
    EnergyDetector,
    FixedRecognizer,
    ToneSynthesizer,
    until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

MODEL = "gpt-4o-realtime-preview-2024-12-17"
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def _tone(ms: int) -> bytes:
    t = np.arange(ms * 24) / 24000
    return (np.sin(2 * np.pi * 300 * t) * 8000).astype("<i2").tobytes()


@pytest.fixture
async def chat() -> AsyncIterator[ChatServer]:
    srv = ChatServer()
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
def recognizer() -> FixedRecognizer:
    return FixedRecognizer("what is the weather like")


@pytest.fixture
async def server(recognizer: FixedRecognizer) -> AsyncIterator[LocalRealtimeServer]:
    pipeline = Pipeline(EnergyDetector, recognizer, ToneSynthesizer(), brain_factory, workers=2)
    srv = LocalRealtimeServer("127.0.0.1", 0, pipeline)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


def _session(base_url: str) -> dict[str, Any]:
    return {
        "instructions": "You are the weather line. Be brief.",
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
        "tools": [WEATHER_TOOL],
        # what a worker sends for a route whose local provider has `llm:`
        "llm": {"base_url": base_url, "model": "llama3.2:1b", "temperature": 0.2},
    }


@contextlib.asynccontextmanager
async def _connected(
    server: LocalRealtimeServer, session: dict[str, Any]
) -> AsyncIterator[tuple[Any, list[Any]]]:
    """An SDK realtime connection with `session` applied, and the list its events go to."""
    client = AsyncOpenAI(api_key="x", websocket_base_url=server.url)
    async with client.beta.realtime.connect(model=MODEL) as conn:
        log: list[Any] = []
        await until(conn, "session.created", log)
        await conn.session.update(session=session)  # type: ignore[arg-type]
        await until(conn, "session.updated", log)
        yield conn, log


async def test_llm_reply_streams_calls_a_tool_and_uses_its_result(
    server: LocalRealtimeServer, chat: ChatServer
) -> None:
    async with _connected(server, _session(chat.base_url)) as (conn, log):
        # The greeting: the LLM writes it; the first clause is heard before the LLM is done.
        await conn.response.create()
        await until(conn, "response.done", log)
        said = next(e for e in log if e.type == "response.audio_transcript.done").transcript
        assert said == "Hello, this is the assistant, how can I help you today?"
        types = [e.type for e in log]
        deltas = [i for i, t in enumerate(types) if t == "response.audio_transcript.delta"]
        first_audio = types.index("response.audio.delta")
        assert len(deltas) >= 2 and first_audio < deltas[1]
        assert chat.requests[0]["messages"][0] == {
            "role": "system",
            "content": "You are the weather line. Be brief.",
        }
        assert chat.requests[0]["tools"] == [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Current weather in a city",
                    "parameters": WEATHER_TOOL["parameters"],
                },
            }
        ]
        assert chat.requests[0]["model"] == "llama3.2:1b" and chat.requests[0]["stream"] is True

        # A voice turn: the LLM says a clause, then calls the tool (arguments in fragments).
        log.clear()
        for pcm in (bytes(9600), _tone(700), bytes(24000)):
            await conn.input_audio_buffer.append(audio=base64.b64encode(pcm).decode())
        done = await until(conn, "response.done", log)
        fc = [o for o in done.response.output if o.type == "function_call"]
        assert [(f.name, json.loads(f.arguments)) for f in fc] == [
            ("get_weather", {"city": "Paris"})
        ]
        spoken = [e.transcript for e in log if e.type == "response.audio_transcript.done"]
        assert spoken == ["Let me check."]

        # The tool's output goes back to the LLM, which answers from it.
        log.clear()
        await conn.conversation.item.create(
            item={
                "type": "function_call_output",
                "call_id": fc[0].call_id,
                "output": json.dumps({"temp": 21}),
            }  # fmt: skip
        )
        await conn.response.create()
        await until(conn, "response.done", log)
        spoken = [e.transcript for e in log if e.type == "response.audio_transcript.done"]
        assert spoken == ["It is 21 degrees in Paris. Anything else?"]
        history = chat.requests[-1]["messages"]
        assert [m["role"] for m in history] == ["system", "assistant", "user", "assistant", "tool"]
        assert history[2]["content"] == "what is the weather like"
        assert history[3]["tool_calls"][0]["function"]["name"] == "get_weather"
        assert history[4] == {"role": "tool", "tool_call_id": fc[0].call_id,
                              "content": json.dumps({"temp": 21})}  # fmt: skip


async def test_barge_in_stops_the_llm_stream_and_history_keeps_what_was_said(
    server: LocalRealtimeServer, chat: ChatServer, recognizer: FixedRecognizer
) -> None:
    chat.word_delay_s = 0.15  # a slow LLM: the caller interrupts mid-reply
    recognizer.transcript = "tell me something"
    async with _connected(server, _session(chat.base_url)) as (conn, log):
        await conn.response.create()
        await until(conn, "response.audio.delta", log)
        for pcm in (_tone(400), bytes(24000)):  # the caller talks over the greeting
            await conn.input_audio_buffer.append(audio=base64.b64encode(pcm).decode())
        done = await until(conn, "response.done", log)
        assert done.response.status == "cancelled"
        await until(conn, "response.done", log)  # the answer to what the caller said
    assistant = [m for m in chat.requests[-1]["messages"] if m["role"] == "assistant"]
    # The greeting was cut off: its history entry is what had been streamed, not all of it.
    full = "Hello, this is the assistant, how can I help you today?"
    assert assistant and assistant[0]["content"] != full
    assert full.startswith(assistant[0]["content"].strip())


@pytest.mark.parametrize("failure", ["refused", "silent"])
async def test_unreachable_or_silent_llm_gives_an_apology(
    server: LocalRealtimeServer, chat: ChatServer, failure: str
) -> None:
    from tests.support.engine import free_port

    session = _session(chat.base_url)
    if failure == "refused":
        session["llm"]["base_url"] = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens
    else:
        chat.hang = True  # accepts, never sends a token
        session["llm"]["first_token_timeout_s"] = 1.0
    async with _connected(server, session) as (conn, log):
        await conn.response.create()
        done = await until(conn, "response.done", log, timeout=10)
        assert done.response.status == "completed"
        spoken = [e.transcript for e in log if e.type == "response.audio_transcript.done"]
        assert spoken == [APOLOGY]
        assert any(e.type == "response.audio.delta" for e in log)


def test_clause_chunker_cuts_streamed_text_where_a_voice_can_pause() -> None:
    c = ClauseChunker()
    out: list[str] = []
    for piece in [
        "Sure",
        ", I",
        " can",
        " help",
        " with",
        " that",
        ". What",
        " is your",
        " nam",
        "e?",
    ]:
        out += c.feed(piece)
    assert out == ["Sure, I can help with that."]  # "Sure," alone is too short to cut
    assert c.flush() == "What is your name?"
    long = " ".join(["word"] * 40)
    c2 = ClauseChunker(max_words=25)
    first = c2.feed(long)
    assert len(first) == 1 and len(first[0].split()) == 25
    assert c2.flush().count("word") == 15
