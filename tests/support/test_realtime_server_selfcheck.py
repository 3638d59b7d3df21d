"""Self-check of tests/support/realtime_server.py with a plain `websockets` client.

No engine code is involved: each test opens the scripted server, speaks the Realtime protocol by
hand and checks event names, order, payloads and the pacing of the streamed audio.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.realtime_server import ReceivedEvent, ScriptedRealtimeServer, ScriptedReply

RATE = 24000
BETA = {"OpenAI-Beta": "realtime=v1", "Authorization": "Bearer sk-test"}
Timed = tuple[float, dict[str, Any]]


def tone(seconds: float, freq: float = 440.0, dbfs: float = -10.0) -> bytes:
    t = np.arange(int(round(seconds * RATE))) / RATE
    amp = 32767 * 10 ** (dbfs / 20) * np.sqrt(2)
    return (amp * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def silence(seconds: float) -> bytes:
    return bytes(2 * int(round(seconds * RATE)))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture
def make_server() -> Iterator[Callable[..., ScriptedRealtimeServer]]:
    servers: list[ScriptedRealtimeServer] = []

    def make(**kwargs: Any) -> ScriptedRealtimeServer:
        srv = ScriptedRealtimeServer(**kwargs)
        srv.start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


@asynccontextmanager
async def client(
    srv: ScriptedRealtimeServer, headers: dict[str, str] | None = None, model: str = "m1"
) -> AsyncIterator[ClientConnection]:
    hdrs = BETA if headers is None else headers
    async with connect(f"{srv.url}/realtime?model={model}", additional_headers=hdrs) as ws:
        yield ws


async def send(ws: ClientConnection, event: dict[str, Any]) -> None:
    await ws.send(json.dumps(event))


async def recv(ws: ClientConnection, timeout: float = 3.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def collect_until(ws: ClientConnection, type_: str, timeout: float = 5.0) -> list[Timed]:
    """Every event (with its arrival time) up to and including the first of `type_`."""
    out: list[Timed] = []
    deadline = time.monotonic() + timeout
    while True:
        ev = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        out.append((time.monotonic(), ev))
        if ev["type"] == type_:
            return out


async def quiet(ws: ClientConnection, seconds: float, allowed: tuple[str, ...] = ()) -> None:
    """Assert that nothing but `allowed` events arrives for `seconds`."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            ev = json.loads(await asyncio.wait_for(ws.recv(), left))
        except TimeoutError:
            return
        assert ev["type"] in allowed, f"unexpected {ev['type']} while the model should wait"


def types(events: list[Timed], skip_deltas: bool = True) -> list[str]:
    return [e["type"] for _, e in events if not (skip_deltas and e["type"].endswith(".delta"))]


def of(events: list[Timed], type_: str) -> list[dict[str, Any]]:
    return [e for _, e in events if e["type"] == type_]


PREVIEW_REPLY_TAIL = [
    "response.created",
    "response.output_item.added",
    "conversation.item.created",
    "response.content_part.added",
    "response.audio.done",
    "response.audio_transcript.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.done",
]


async def test_greeting_streams_at_real_time(
    make_server: Callable[..., ScriptedRealtimeServer],
) -> None:
    pcm = tone(1.0)
    text = "Hello there, thanks for calling, how can I help you today?"
    srv = make_server(greeting=ScriptedReply(pcm=pcm, transcript=text, delay_ms=50))
    async with client(srv) as ws:
        assert (await recv(ws))["type"] == "session.created"
        session = {"instructions": "Be brief and kind.", "turn_detection": None}
        await send(ws, {"type": "session.update", "session": session})
        updated = await recv(ws)
        assert updated["type"] == "session.updated"
        assert updated["session"]["instructions"] == "Be brief and kind."
        assert updated["session"]["turn_detection"] is None
        t_create = time.monotonic()
        await send(ws, {"type": "response.create", "event_id": "evt_greet"})
        events = await collect_until(ws, "response.done")

    assert types(events) == PREVIEW_REPLY_TAIL
    deltas = [(t, e) for t, e in events if e["type"] == "response.audio.delta"]
    assert b"".join(base64.b64decode(e["delta"]) for _, e in deltas) == pcm
    assert len(deltas) == 25  # 1000 ms / 40 ms chunks
    span = deltas[-1][0] - deltas[0][0]
    assert abs(span - (1.0 - 0.040)) <= 0.060, f"audio span {span * 1000:.1f} ms"
    jitter = max(abs(t - (deltas[0][0] + k * 0.040)) for k, (t, _) in enumerate(deltas))
    assert jitter < 0.030, f"max pacing error {jitter * 1000:.1f} ms"
    first_latency = deltas[0][0] - t_create
    assert 0.040 <= first_latency <= 0.150, f"first delta after {first_latency * 1000:.1f} ms"

    words = "".join(e["delta"] for e in of(events, "response.audio_transcript.delta"))
    assert words == text
    assert of(events, "response.audio_transcript.done")[0]["transcript"] == text
    # transcript deltas are interleaved with the audio, not all sent up front
    order = types(events, skip_deltas=False)
    assert order.index("response.audio.delta") < len(order) - 1 - order[::-1].index(
        "response.audio_transcript.delta"
    )
    item_id = of(events, "response.output_item.added")[0]["item"]["id"]
    assert {e["item_id"] for _, e in deltas} == {item_id}
    done = of(events, "response.done")[0]["response"]
    assert done["status"] == "completed"
    assert done["output"][0]["content"][0]["transcript"] == text
    usage = done["usage"]
    assert usage["output_token_details"]["audio_tokens"] == 20  # 20 tokens per second
    assert usage["output_token_details"]["text_tokens"] == len(text.split())
    assert usage["input_token_details"]["text_tokens"] == 4  # words of the instructions
    assert srv.usage_sent == [usage]
    got = await asyncio.to_thread(srv.wait_for, "response.create", 1, 2)
    assert got[0].data["event_id"] == "evt_greet" and got[0].conn == 0
    assert isinstance(got[0], ReceivedEvent)


async def test_voice_turn_event_order(make_server: Callable[..., ScriptedRealtimeServer]) -> None:
    reply = ScriptedReply(pcm=tone(0.2, 330), transcript="Sure, one moment.", delay_ms=30)
    srv = make_server(replies=[reply], silence_ms=300, prefix_padding_ms=300)
    caller = silence(0.6) + tone(0.5, 300) + silence(0.4)
    async with client(srv) as ws:
        assert (await recv(ws))["type"] == "session.created"
        for i in range(0, len(caller), 4800):  # 100 ms appends
            await send(
                ws, {"type": "input_audio_buffer.append", "audio": b64(caller[i : i + 4800])}
            )
        events = await collect_until(ws, "response.done")

    assert types(events) == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.created",
        "conversation.item.input_audio_transcription.completed",
        *PREVIEW_REPLY_TAIL,
    ]
    started = of(events, "input_audio_buffer.speech_started")[0]
    stopped = of(events, "input_audio_buffer.speech_stopped")[0]
    committed = of(events, "input_audio_buffer.committed")[0]
    user_item = of(events, "conversation.item.created")[0]
    transcription = of(events, "conversation.item.input_audio_transcription.completed")[0]
    assert started["audio_start_ms"] == 600 - 300  # onset minus prefix padding
    assert stopped["audio_end_ms"] == 1100 + 300  # end of speech plus silence_ms
    item_id = started["item_id"]
    assert committed["item_id"] == stopped["item_id"] == item_id
    assert committed["previous_item_id"] is None
    assert user_item["item"]["id"] == item_id and user_item["item"]["role"] == "user"
    assert user_item["item"]["content"][0]["type"] == "input_audio"
    assert transcription["item_id"] == item_id
    assert transcription["transcript"] == "<caller audio 1100 ms>"
    assistant = of(events, "conversation.item.created")[1]
    assert assistant["previous_item_id"] == item_id
    t_stop = next(t for t, e in events if e["type"] == "input_audio_buffer.speech_stopped")
    t_first = next(t for t, e in events if e["type"] == "response.audio.delta")
    assert 0.020 <= t_first - t_stop <= 0.120
    done = of(events, "response.done")[0]["response"]
    # 1.4 s of caller audio had arrived when the response started (the last 100 ms came later)
    assert done["usage"]["input_token_details"]["audio_tokens"] == 14
    assert done["usage"]["output_token_details"]["audio_tokens"] == 4  # 0.2 s
    assert srv.audio_received_ms() == 1500


async def test_barge_in_cancels_and_truncate(
    make_server: Callable[..., ScriptedRealtimeServer],
) -> None:
    pcm = tone(2.0, 500)
    greeting = ScriptedReply(pcm=pcm, transcript="one two three four five six seven eight")
    srv = make_server(greeting=greeting, silence_ms=300)
    async with client(srv) as ws:
        assert (await recv(ws))["type"] == "session.created"
        await send(ws, {"type": "response.create"})
        events = await collect_until(ws, "response.audio.delta")
        t_first = events[-1][0]
        while time.monotonic() - t_first < 0.3:
            events += await collect_until(ws, "response.audio.delta")
        await send(ws, {"type": "input_audio_buffer.append", "audio": b64(tone(0.1, 300, -6))})
        events += await collect_until(ws, "response.done")
        await quiet(ws, 0.25, allowed=("rate_limits.updated",))

        order = types(events, skip_deltas=False)
        i_started = order.index("input_audio_buffer.speech_started")
        assert "response.audio.delta" not in order[i_started:]
        assert order[i_started:] == [
            "input_audio_buffer.speech_started",
            "response.audio.done",
            "response.audio_transcript.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.done",
        ]
        done = of(events, "response.done")[0]["response"]
        assert done["status"] == "cancelled"
        assert done["status_details"]["reason"] == "turn_detected"
        assert done["output"][0]["status"] == "incomplete"
        assert of(events, "response.output_item.done")[0]["item"]["status"] == "incomplete"
        got = b"".join(base64.b64decode(e["delta"]) for e in of(events, "response.audio.delta"))
        assert 0 < len(got) < len(pcm) // 2
        played_ms = len(got) // 48
        assert done["usage"]["output_token_details"]["audio_tokens"] == round(played_ms / 50)

        item_id = of(events, "response.output_item.added")[0]["item"]["id"]
        await send(
            ws,
            {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": played_ms,
            },
        )
        truncated = await recv(ws)
        assert truncated["type"] == "conversation.item.truncated"
        assert truncated["audio_end_ms"] == played_ms
    assert srv.truncations[-1]["ok"] and srv.truncations[-1]["item_id"] == item_id


async def test_function_call_waits_for_output_and_response_create(
    make_server: Callable[..., ScriptedRealtimeServer],
) -> None:
    call = ScriptedReply(function_call=("get_weather", {"city": "Paris", "unit": "C"}))
    after = ScriptedReply(pcm=tone(0.2), transcript="It is sunny in Paris.", delay_ms=20)
    srv = make_server(replies=[call, after])
    async with client(srv) as ws:
        assert (await recv(ws))["type"] == "session.created"
        await send(ws, {"type": "response.create"})
        events = await collect_until(ws, "response.done")
        assert types(events) == [
            "response.created",
            "response.output_item.added",
            "conversation.item.created",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.done",
        ]
        added = of(events, "response.output_item.added")[0]["item"]
        assert added["type"] == "function_call" and added["name"] == "get_weather"
        args_done = of(events, "response.function_call_arguments.done")[0]
        pieces = of(events, "response.function_call_arguments.delta")
        assert len(pieces) >= 2
        assert "".join(p["delta"] for p in pieces) == args_done["arguments"]
        assert json.loads(args_done["arguments"]) == {"city": "Paris", "unit": "C"}
        assert args_done["call_id"] == added["call_id"] and args_done["name"] == "get_weather"
        assert args_done["item_id"] == added["id"] and args_done["output_index"] == 0
        done = of(events, "response.done")[0]["response"]
        assert done["status"] == "completed" and done["output"][0]["type"] == "function_call"

        await quiet(ws, 0.4, allowed=("rate_limits.updated",))  # the model waits
        output = {
            "type": "function_call_output",
            "call_id": added["call_id"],
            "output": json.dumps({"temp": 21}),
        }
        await send(ws, {"type": "conversation.item.create", "item": output})
        echo = await recv(ws)
        assert echo["type"] == "conversation.item.created"
        assert echo["item"]["call_id"] == added["call_id"]
        assert echo["previous_item_id"] == added["id"]
        await quiet(ws, 0.3)  # still waiting: no response.create yet
        await send(ws, {"type": "response.create"})
        events = await collect_until(ws, "response.done")
        assert types(events) == PREVIEW_REPLY_TAIL
        assert of(events, "response.done")[0]["response"]["status"] == "completed"
    assert srv.function_outputs[0]["call_id"] == added["call_id"]
    assert json.loads(srv.function_outputs[0]["output"]) == {"temp": 21}


async def test_errors_keep_the_socket_open(
    make_server: Callable[..., ScriptedRealtimeServer],
) -> None:
    srv = make_server(greeting=ScriptedReply(pcm=tone(0.2), transcript="Hi."))
    async with client(srv) as ws:
        assert (await recv(ws))["type"] == "session.created"
        await send(ws, {"type": "response.create"})
        events = await collect_until(ws, "response.done")
        item_id = of(events, "response.output_item.added")[0]["item"]["id"]

        truncate = {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0}
        await send(ws, {**truncate, "audio_end_ms": 5000, "event_id": "evt_trunc_1"})
        err = await recv(ws)
        if err["type"] == "rate_limits.updated":
            err = await recv(ws)
        assert err["type"] == "error"
        assert err["error"]["event_id"] == "evt_trunc_1"
        assert err["error"]["type"] == "invalid_request_error"
        assert err["error"]["message"] == "Audio content of 200ms is already shorter than 5000ms"
        await send(ws, {**truncate, "audio_end_ms": 150})
        assert (await recv(ws))["type"] == "conversation.item.truncated"

        bad = {"type": "input_audio_buffer.append", "audio": "@@not base64@@", "event_id": "e_b64"}
        await send(ws, bad)
        err = await recv(ws)
        assert err["type"] == "error" and err["error"]["event_id"] == "e_b64"
        assert err["error"]["type"] == "invalid_request_error"

        await ws.send("{not json")
        err = await recv(ws)
        assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"

        await send(ws, {"type": "no.such.event", "event_id": "e_unknown"})
        err = await recv(ws)
        assert err["type"] == "error" and err["error"]["event_id"] == "e_unknown"

        await send(ws, {"type": "response.cancel", "event_id": "e_cancel"})
        err = await recv(ws)
        assert err["type"] == "error" and err["error"]["code"] == "response_cancel_not_active"

        await send(ws, {"type": "input_audio_buffer.commit", "event_id": "e_commit"})
        err = await recv(ws)
        assert err["error"]["code"] == "input_audio_buffer_commit_empty"

        # still usable
        await send(ws, {"type": "input_audio_buffer.append", "audio": b64(silence(0.2))})
        await send(ws, {"type": "input_audio_buffer.commit"})
        commit = await collect_until(ws, "conversation.item.input_audio_transcription.completed")
        assert types(commit) == [
            "input_audio_buffer.committed",
            "conversation.item.created",
            "conversation.item.input_audio_transcription.completed",
        ]
        assert commit[-1][1]["transcript"] == "<caller audio 200 ms>"
        await send(ws, {"type": "input_audio_buffer.clear"})
        assert (await recv(ws))["type"] == "input_audio_buffer.cleared"
        await send(ws, {"type": "conversation.item.delete", "item_id": item_id})
        assert (await recv(ws))["type"] == "conversation.item.deleted"
        await asyncio.to_thread(srv.send_error, "scripted failure", "server_error", "evt_x")
        err = await recv(ws)
        assert err["type"] == "error" and err["error"]["code"] == "server_error"
        assert err["error"]["event_id"] == "evt_x"
        await send(ws, {"type": "session.update", "session": {"voice": "verse"}})
        assert (await recv(ws))["session"]["voice"] == "verse"
    assert srv.audio_received_ms() == 200
    assert any(e.type == "<invalid-json>" for e in srv.received)
    assert srv.truncations[0]["ok"] is False and srv.truncations[1]["ok"] is True


async def test_kill_connection_and_reconnect(
    make_server: Callable[..., ScriptedRealtimeServer],
) -> None:
    srv = make_server()
    async with client(srv, model="first") as ws:
        first = await recv(ws)
        await send(ws, {"type": "session.update", "session": {"instructions": "one"}})
        assert (await recv(ws))["type"] == "session.updated"
        await asyncio.to_thread(srv.kill_connection)
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 2)
        assert info.value.rcvd is None  # no close frame: an abrupt drop
    async with client(srv, model="second") as ws:
        second = await recv(ws)
        assert second["type"] == "session.created"
        assert second["session"]["id"] != first["session"]["id"]
        assert second["session"]["instructions"] == ""  # a fresh session
        await send(ws, {"type": "session.update", "session": {"instructions": "two"}})
        assert (await recv(ws))["session"]["instructions"] == "two"
    assert srv.connections == 2
    assert [r["query"]["model"] for r in srv.requests] == ["first", "second"]
    updates = await asyncio.to_thread(srv.wait_for, "session.update", 2, 2)
    assert [e.conn for e in updates] == [0, 1]
    assert {e.conn for e in srv.sent} == {0, 1}


async def test_ga_dialect_uses_ga_names(
    make_server: Callable[..., ScriptedRealtimeServer],
) -> None:
    srv = make_server(dialect="ga", greeting=ScriptedReply(pcm=tone(0.2), transcript="Hello GA."))
    async with client(srv, headers={"Authorization": "Bearer sk-test"}) as ws:
        created = await recv(ws)
        assert created["type"] == "session.created" and created["session"]["type"] == "realtime"
        await send(ws, {"type": "session.update", "session": {"instructions": "x"}})
        err = await recv(ws)
        assert err["type"] == "error" and err["error"]["param"] == "session.type"
        update = {"type": "realtime", "input_audio_format": "pcm16"}
        await send(ws, {"type": "session.update", "session": update})
        err = await recv(ws)
        assert err["type"] == "error" and err["error"]["code"] == "unknown_parameter"
        update = {"type": "realtime", "audio": {"input": {"turn_detection": None}}}
        await send(ws, {"type": "session.update", "session": update})
        updated = await recv(ws)
        assert updated["type"] == "session.updated"
        assert updated["session"]["audio"]["input"]["turn_detection"] is None
        assert updated["session"]["audio"]["output"]["format"]["rate"] == 24000
        await send(ws, {"type": "response.create"})
        events = await collect_until(ws, "response.done")
    assert types(events) == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    all_types = set(types(events, skip_deltas=False))
    assert {"response.output_audio.delta", "response.output_audio_transcript.delta"} <= all_types
    assert not any(t.startswith(("response.audio", "conversation.item.created")) for t in all_types)
    done = of(events, "response.done")[0]["response"]
    assert done["output"][0]["content"][0]["type"] == "output_audio"
    assert "OpenAI-Beta" not in srv.requests[0]["headers"]

    async with client(srv, headers=BETA) as ws:  # GA refuses the retired beta header
        err = await recv(ws)
        assert err["error"]["code"] == "beta_api_shape_disabled"
        with pytest.raises(ConnectionClosed) as info:
            await recv(ws)
        assert info.value.rcvd is not None and info.value.rcvd.code == 4000


async def test_preview_requires_beta_header(
    make_server: Callable[..., ScriptedRealtimeServer],
) -> None:
    srv = make_server()
    async with client(srv, headers={"Authorization": "Bearer sk-test"}) as ws:
        err = await recv(ws)
        assert err["type"] == "error" and err["error"]["code"] == "missing_beta_header"
        with pytest.raises(ConnectionClosed) as info:
            await recv(ws)
        assert info.value.rcvd is not None and info.value.rcvd.code == 4000
    async with client(srv, model="gpt-4o-realtime-preview-2024-12-17") as ws:
        assert (await recv(ws))["type"] == "session.created"
    req = srv.requests[1]
    assert req["path"] == "/v1/realtime"
    assert req["query"] == {"model": "gpt-4o-realtime-preview-2024-12-17"}
    assert req["headers"]["openai-beta"] == "realtime=v1"
    assert req["headers"]["Authorization"] == "Bearer sk-test"
    with pytest.raises(InvalidStatus) as bad_path:
        async with connect(f"{srv.url}/nowhere", additional_headers=BETA):
            pass
    assert bad_path.value.response.status_code == 404


async def test_g711_ulaw_session(make_server: Callable[..., ScriptedRealtimeServer]) -> None:
    srv = make_server(greeting=ScriptedReply(pcm=tone(0.2), transcript="Hi."), silence_ms=200)
    async with client(srv) as ws:
        assert (await recv(ws))["type"] == "session.created"
        session = {"input_audio_format": "g711_ulaw", "output_audio_format": "g711_ulaw"}
        await send(ws, {"type": "session.update", "session": session})
        assert (await recv(ws))["type"] == "session.updated"
        await send(ws, {"type": "response.create"})
        events = await collect_until(ws, "response.done")
        ulaw = b"".join(base64.b64decode(e["delta"]) for e in of(events, "response.audio.delta"))
        assert len(ulaw) == 1600  # 200 ms at 8 kHz, one byte a sample
        assert all(
            len(base64.b64decode(e["delta"])) <= 320 for e in of(events, "response.audio.delta")
        )
        loud = bytes([0x80, 0x00]) * 800  # 200 ms of full-scale square wave in mu-law
        quiet_ulaw = b"\xff" * 1600
        await send(ws, {"type": "input_audio_buffer.append", "audio": b64(quiet_ulaw + loud)})
        started = await collect_until(ws, "input_audio_buffer.speech_started")
        assert started[-1][1]["audio_start_ms"] == 0  # 200 ms onset minus 300 ms padding
    assert srv.audio_received_ms() == 400
