"""OpenAI Realtime wire protocol: parsing recorded-style server flows, mapping them to the
provider port, building client events, and building endpoints. No network."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from telephony_bot.providers.base import (
    AudioDelta,
    AudioDone,
    FunctionCall,
    ProviderErrorEvent,
    ResponseDone,
    ResponseStarted,
    SessionConfig,
    SpeechStarted,
    SpeechStopped,
    ToolSpec,
    TranscriptDelta,
    TurnDetection,
    Usage,
)
from telephony_bot.providers.openai import protocol as rt
from telephony_bot.providers.openai.endpoints import (
    RealtimeEndpoint,
    azure_endpoint,
    compatible_endpoint,
    openai_endpoint,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "realtime"
FLOWS = [
    "preview_voice_turn.jsonl",
    "preview_function_call.jsonl",
    "preview_barge_in.jsonl",
    "ga_voice_turn.jsonl",
    "ga_function_call.jsonl",
]
DELIBERATELY_UNKNOWN = {"output_audio_buffer.started", "response.some_future_event"}

USER_ITEM = "item_BoX7ZkQ2mR8nVf3sT1uYc"
ASSIST_ITEM = "item_BoX7ZnW5pL0aXg7hJ2kEd"
RESP = "resp_BoX7ZmA9uD4qHs6cB8vNf"
FC_ITEM = "item_BoX8Q2rT5yU7iO9pA1sDf"
CALL = "call_Wk3pQ8nZr5TyLm2x"
RESP2 = "resp_BoX8QxV4bN6mC8zL0kJhG"
ASSIST2 = "item_BoX8R4gH6jK8lZ0xC2vBn"
NEW_USER = "item_BoX9A7sD9fG1hJ3kL5zXc"


def load(name: str) -> list[dict[str, Any]]:
    with open(FIXTURES / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def port_events(name: str, *, mapper: bool = False) -> list[Any]:
    m = rt.RealtimeEventMapper() if mapper else None
    out: list[Any] = []
    for raw in load(name):
        ev = rt.parse_server_event(raw)
        out += m.map(ev) if m else rt.to_provider_events(ev)
    return out


def audio_payloads(name: str) -> list[bytes]:
    """The PCM in a fixture's audio deltas, decoded independently of the module."""
    return [
        base64.b64decode(raw["delta"])
        for raw in load(name)
        if raw["type"] in ("response.audio.delta", "response.output_audio.delta")
    ]


def without_event_id(ev: dict[str, Any]) -> dict[str, Any]:
    assert re.fullmatch(r"evt_[0-9a-f]{16}", ev["event_id"])
    return {k: v for k, v in ev.items() if k != "event_id"}


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize("name", FLOWS)
def test_every_flow_parses_into_known_models(name: str) -> None:
    for raw in load(name):
        ev = rt.parse_server_event(json.dumps(raw))
        assert not isinstance(ev, rt.UnknownEvent), raw["type"]
        assert ev.type == raw["type"]
        assert ev.event_id == raw["event_id"]


def test_errors_fixture_has_only_the_deliberately_unknown_events() -> None:
    unknown = [rt.parse_server_event(raw) for raw in load("errors.jsonl")]
    unknown = [ev for ev in unknown if isinstance(ev, rt.UnknownEvent)]
    assert {ev.type for ev in unknown} == DELIBERATELY_UNKNOWN
    future = next(ev for ev in unknown if ev.type == "response.some_future_event")
    assert future.raw["detail"] == {"x": 1}
    assert rt.to_provider_events(future) == []
    assert rt.RealtimeEventMapper().map(future) == []


def test_all_event_names_the_engine_uses_are_modelled() -> None:
    expected = {
        "session.created", "session.updated", "error", "rate_limits.updated",
        "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed", "input_audio_buffer.cleared",
        "conversation.item.created", "conversation.item.added", "conversation.item.done",
        "conversation.item.truncated", "conversation.item.deleted",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.failed",
        "response.created", "response.done",
        "response.output_item.added", "response.output_item.done",
        "response.content_part.added", "response.content_part.done",
        "response.audio.delta", "response.output_audio.delta",
        "response.audio.done", "response.output_audio.done",
        "response.audio_transcript.delta", "response.output_audio_transcript.delta",
        "response.audio_transcript.done", "response.output_audio_transcript.done",
        "response.text.delta", "response.output_text.delta",
        "response.text.done", "response.output_text.done",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
    }  # fmt: skip
    assert expected <= rt.KNOWN_SERVER_EVENT_TYPES


def test_bytes_and_dicts_parse_like_text() -> None:
    raw = load("preview_voice_turn.jsonl")[2]
    as_text = rt.parse_server_event(json.dumps(raw))
    assert rt.parse_server_event(json.dumps(raw).encode()) == as_text
    assert rt.parse_server_event(raw) == as_text
    assert isinstance(as_text, rt.SpeechStartedEvent)
    assert (as_text.audio_start_ms, as_text.item_id) == (1280, USER_ITEM)


def test_unknown_type_is_returned_not_raised() -> None:
    raw = {"type": "conversation.item.sparkled", "event_id": "event_1", "glitter": [1, 2]}
    ev = rt.parse_server_event(json.dumps(raw))
    assert isinstance(ev, rt.UnknownEvent)
    assert ev.type == "conversation.item.sparkled"
    assert ev.raw == raw
    assert rt.to_provider_events(ev) == []


def test_new_fields_anywhere_do_not_break_parsing() -> None:
    raws = load("preview_voice_turn.jsonl")
    baseline = [e for raw in raws for e in rt.to_provider_events(rt.parse_server_event(raw))]
    mutated = []
    for raw in raws:
        raw = dict(raw, brand_new_field={"nested": True}, sequence_number=7)
        if "response" in raw:
            raw["response"] = dict(raw["response"], new_response_field="x")
            if raw["response"].get("usage"):
                usage = dict(raw["response"]["usage"], reasoning_tokens=3)
                usage["output_token_details"] = dict(usage["output_token_details"], image_tokens=1)
                raw["response"]["usage"] = usage
        if "item" in raw:
            raw["item"] = dict(raw["item"], new_item_field=1)
        mutated.append(raw)
    parsed = [rt.parse_server_event(raw) for raw in mutated]
    assert not any(isinstance(ev, rt.UnknownEvent) for ev in parsed)
    assert parsed[2].model_extra == {"brand_new_field": {"nested": True}, "sequence_number": 7}
    assert [e for ev in parsed for e in rt.to_provider_events(ev)] == baseline


@pytest.mark.parametrize(
    "frame",
    [
        "{not json",
        b"\xff\xfe\x00garbage",
        "[1, 2, 3]",
        '"error"',
        "{}",
        '{"event_id": "event_1"}',
        '{"type": 42}',
        '{"type": ""}',
    ],
)
def test_frames_that_are_not_events_raise_protocol_error(frame: str | bytes) -> None:
    with pytest.raises(rt.ProtocolError):
        rt.parse_server_event(frame)


def test_protocol_error_is_a_value_error_and_names_the_problem() -> None:
    assert issubclass(rt.ProtocolError, ValueError)
    with pytest.raises(rt.ProtocolError, match="not JSON"):
        rt.parse_server_event("{oops")
    with pytest.raises(rt.ProtocolError, match="no 'type'"):
        rt.parse_server_event({"event_id": "x"})
    bad = {"type": "input_audio_buffer.speech_started", "audio_start_ms": "soon"}
    with pytest.raises(rt.ProtocolError, match="speech_started.*audio_start_ms"):
        rt.parse_server_event(bad)


def test_known_events_with_missing_fields_still_parse() -> None:
    ev = rt.parse_server_event({"type": "response.done", "response": {"id": "resp_1"}})
    assert rt.to_provider_events(ev) == [ResponseDone("resp_1", "", Usage())]
    assert rt.to_provider_events(rt.parse_server_event({"type": "response.done"})) == [
        ResponseDone("", "", Usage())
    ]


# ---------------------------------------------------------------- mapping: voice turn

VOICE_USAGE = Usage(
    input_text_tokens=119,
    input_audio_tokens=55,
    input_cached_tokens=64,
    output_text_tokens=22,
    output_audio_tokens=57,
    total_tokens=253,
    input_cached_text_tokens=64,  # the recorded usage splits its cached tokens: all text
)


def expected_voice_turn(pcm: list[bytes]) -> list[Any]:
    a = {"item_id": ASSIST_ITEM, "response_id": RESP}
    return [
        SpeechStarted(audio_start_ms=1280, item_id=USER_ITEM),
        SpeechStopped(audio_end_ms=3104, item_id=USER_ITEM),
        ResponseStarted(RESP),
        TranscriptDelta("assistant", "Hello", item_id=ASSIST_ITEM),
        AudioDelta(pcm[0], **a),
        TranscriptDelta("user", "Hi, is anyone there?", item_id=USER_ITEM, final=True),
        TranscriptDelta("assistant", "! How", item_id=ASSIST_ITEM),
        AudioDelta(pcm[1], **a),
        TranscriptDelta("assistant", " can I help?", item_id=ASSIST_ITEM),
        AudioDelta(pcm[2], **a),
        AudioDelta(pcm[3], **a),
        AudioDone(**a),
        TranscriptDelta("assistant", "Hello! How can I help?", item_id=ASSIST_ITEM, final=True),
        ResponseDone(RESP, "completed", VOICE_USAGE),
    ]


def test_preview_voice_turn_maps_to_what_a_session_needs() -> None:
    pcm = audio_payloads("preview_voice_turn.jsonl")
    assert len(pcm) == 4 and all(len(p) == 480 for p in pcm)
    assert pcm[3] == bytes(480)  # a silent tail chunk
    events = port_events("preview_voice_turn.jsonl")
    assert events == expected_voice_turn(pcm)
    played = b"".join(e.pcm for e in events if isinstance(e, AudioDelta))
    assert played == b"".join(pcm)


def test_ga_voice_turn_gives_the_same_port_events_as_preview() -> None:
    assert audio_payloads("ga_voice_turn.jsonl") == audio_payloads("preview_voice_turn.jsonl")
    assert port_events("ga_voice_turn.jsonl") == port_events("preview_voice_turn.jsonl")


@pytest.mark.parametrize("name", FLOWS)
def test_mapper_agrees_with_the_stateless_mapping_when_names_are_sent(name: str) -> None:
    assert port_events(name, mapper=True) == port_events(name)


def test_ga_turn_uses_ga_names_and_shapes() -> None:
    types = [raw["type"] for raw in load("ga_voice_turn.jsonl")]
    assert "response.output_audio.delta" in types and "response.audio.delta" not in types
    assert "conversation.item.added" in types and "conversation.item.created" not in types
    session = rt.parse_server_event(load("ga_voice_turn.jsonl")[1])
    assert isinstance(session, rt.SessionUpdatedEvent)
    assert session.session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}


# ---------------------------------------------------------------- mapping: function call


def expected_function_call(pcm: list[bytes]) -> list[Any]:
    a = {"item_id": ASSIST2, "response_id": RESP2}
    return [
        SpeechStarted(audio_start_ms=960, item_id=USER_ITEM),
        SpeechStopped(audio_end_ms=2816, item_id=USER_ITEM),
        TranscriptDelta("user", "Where is my order 4417?", item_id=USER_ITEM, final=True),
        ResponseStarted(RESP),
        FunctionCall(
            call_id=CALL,
            name="get_order_status",
            arguments='{"order_id":"4417"}',
            item_id=FC_ITEM,
            response_id=RESP,
        ),
        ResponseDone(RESP, "completed", Usage(230, 52, 0, 19, 0, 301)),
        ResponseStarted(RESP2),
        TranscriptDelta("assistant", "Your order", item_id=ASSIST2),
        AudioDelta(pcm[0], **a),
        TranscriptDelta("assistant", " shipped and arrives", item_id=ASSIST2),
        AudioDelta(pcm[1], **a),
        TranscriptDelta("assistant", " Friday.", item_id=ASSIST2),
        AudioDelta(pcm[2], **a),
        AudioDelta(pcm[3], **a),
        AudioDone(**a),
        TranscriptDelta(
            "assistant", "Your order shipped and arrives Friday.", item_id=ASSIST2, final=True
        ),
        ResponseDone(RESP2, "completed", Usage(278, 52, 256, 24, 57, 411, 256, 0)),
    ]


def test_preview_function_call_is_emitted_exactly_once() -> None:
    events = port_events("preview_function_call.jsonl")
    assert events == expected_function_call(audio_payloads("preview_function_call.jsonl"))
    # output_item.done repeats the call as a function_call item; it must not give a 2nd call
    done = [
        rt.parse_server_event(raw)
        for raw in load("preview_function_call.jsonl")
        if raw["type"] == "response.output_item.done"
    ]
    assert done[0].item.type == "function_call" and done[0].item.call_id == CALL
    assert rt.to_provider_events(done[0]) == []


def test_ga_function_call_gives_the_same_port_events_as_preview() -> None:
    assert port_events("ga_function_call.jsonl") == port_events("preview_function_call.jsonl")


def _strip_name(raws: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for raw in raws:
        if raw["type"] == "response.function_call_arguments.done":
            raw = {k: v for k, v in raw.items() if k != "name"}
        out.append(raw)
    return out


def _map_all(raws: list[dict[str, Any]]) -> list[Any]:
    m = rt.RealtimeEventMapper()
    return [e for raw in raws for e in m.map(rt.parse_server_event(raw))]


def test_mapper_fills_a_missing_name_from_output_item_added() -> None:
    """The preview reference has no ``name`` in ``function_call_arguments.done``."""
    raws = _strip_name(load("preview_function_call.jsonl"))
    stateless = [e for raw in raws for e in rt.to_provider_events(rt.parse_server_event(raw))]
    assert [e.name for e in stateless if isinstance(e, FunctionCall)] == [""]
    assert _map_all(raws) == port_events("preview_function_call.jsonl")


def test_mapper_falls_back_to_output_item_done_when_the_name_is_unknown() -> None:
    raws = [
        raw
        for raw in _strip_name(load("preview_function_call.jsonl"))
        if not (raw.get("item", {}).get("type") == "function_call" and "added" in raw["type"])
        and not (raw["type"] == "conversation.item.created"
                 and raw["item"]["type"] == "function_call")
    ]  # fmt: skip
    events = _map_all(raws)
    calls = [e for e in events if isinstance(e, FunctionCall)]
    assert calls == [FunctionCall(CALL, "get_order_status", '{"order_id":"4417"}', FC_ITEM, RESP)]
    # still before the response's ResponseDone, so the session sees it in order
    assert events.index(calls[0]) < events.index(
        next(e for e in events if isinstance(e, ResponseDone))
    )


# ---------------------------------------------------------------- mapping: barge-in


def test_preview_barge_in_cancels_and_reports_what_was_generated() -> None:
    pcm = audio_payloads("preview_barge_in.jsonl")
    a = {"item_id": ASSIST_ITEM, "response_id": RESP}
    events = port_events("preview_barge_in.jsonl")
    assert events == [
        SpeechStarted(1280, USER_ITEM),
        SpeechStopped(3104, USER_ITEM),
        TranscriptDelta("user", "Tell me about your opening hours.", USER_ITEM, final=True),
        ResponseStarted(RESP),
        TranscriptDelta("assistant", "We're open", ASSIST_ITEM),
        AudioDelta(pcm[0], **a),
        TranscriptDelta("assistant", " from seven", ASSIST_ITEM),
        AudioDelta(pcm[1], **a),
        AudioDelta(pcm[2], **a),
        SpeechStarted(4672, NEW_USER),  # the caller talks over the bot
        AudioDone(**a),
        TranscriptDelta("assistant", "We're open from seven", ASSIST_ITEM, final=True),
        ResponseDone(RESP, "cancelled", Usage(112, 48, 0, 9, 29, 198)),
        SpeechStopped(5920, NEW_USER),
        TranscriptDelta("user", "Sorry, do you deliver?", NEW_USER, final=True),
    ]
    parsed = [rt.parse_server_event(raw) for raw in load("preview_barge_in.jsonl")]
    done = next(ev for ev in parsed if isinstance(ev, rt.ResponseDoneEvent))
    assert done.response.status_details is not None
    assert done.response.status_details.reason == "turn_detected"
    assert done.response.output is not None and done.response.output[0].status == "incomplete"
    truncated = next(ev for ev in parsed if isinstance(ev, rt.ConversationItemTruncatedEvent))
    assert (truncated.item_id, truncated.audio_end_ms) == (ASSIST_ITEM, 20)


# ---------------------------------------------------------------- mapping: errors


def test_error_classification_from_the_errors_fixture() -> None:
    errors = [
        e
        for raw in load("errors.jsonl")
        for e in rt.to_provider_events(rt.parse_server_event(raw))
        if isinstance(e, ProviderErrorEvent)
    ]
    got = [(e.code, e.retryable, e.fatal, e.event_id) for e in errors]
    assert got == [
        ("invalid_value", False, False, "evt_5c1f0a9e2b7d4e31"),
        ("response_cancel_not_active", False, False, "evt_a04b6c2d9e8f1735"),
        ("conversation_already_has_active_response", False, False, "evt_77e3d1c0b9a84f26"),
        ("input_audio_buffer_commit_empty", False, False, "evt_0d9c8b7a6f5e4d3c"),
        ("unknown_parameter", False, False, "evt_1e2d3c4b5a697887"),
        ("rate_limit_exceeded", True, False, ""),
        ("server_error", True, False, ""),  # no code: the type stands in
        ("session_expired", True, True, ""),  # this session is over; a new one may go on
        ("invalid_api_key", False, True, ""),
        ("insufficient_quota", False, True, ""),
    ]
    assert errors[0].message == "Audio content of 1500ms is already shorter than 2400ms"


def test_invalid_request_error_keeps_the_call_going_and_names_the_client_event() -> None:
    raw = {
        "type": "error",
        "event_id": "event_9",
        "error": {
            "type": "invalid_request_error",
            "code": "invalid_value",
            "message": "bad truncate",
            "param": "audio_end_ms",
            "event_id": "evt_0123456789abcdef",
        },
    }
    (ev,) = rt.to_provider_events(rt.parse_server_event(raw))
    assert ev == ProviderErrorEvent(
        message="bad truncate",
        code="invalid_value",
        event_id="evt_0123456789abcdef",
        retryable=False,
        fatal=False,
    )


def test_auth_errors_are_fatal() -> None:
    for err_type, code in [
        ("invalid_request_error", "invalid_api_key"),
        ("authentication_error", None),
        ("insufficient_quota", "insufficient_quota"),
    ]:
        raw = {"type": "error", "error": {"type": err_type, "code": code, "message": "no"}}
        (ev,) = rt.to_provider_events(rt.parse_server_event(raw))
        assert ev.fatal and not ev.retryable, (err_type, code)
    assert rt.classify_error("invalid_request_error", None) == (False, False)
    assert rt.classify_error(None, None) == (False, False)


def test_other_events_in_the_errors_fixture_map_sensibly() -> None:
    parsed = {
        raw["type"]: rt.parse_server_event(raw)
        for raw in load("errors.jsonl")
        if raw["type"] != "error"
    }
    failed = parsed["conversation.item.input_audio_transcription.failed"]
    assert isinstance(failed, rt.InputTranscriptionFailedEvent)
    assert failed.error.code == "audio_unintelligible"
    assert rt.to_provider_events(failed) == []
    # a failed response without usage: status carried, usage zeros
    assert rt.to_provider_events(parsed["response.done"]) == [ResponseDone(RESP, "failed", Usage())]


def test_undecodable_audio_is_a_non_fatal_error_not_an_exception() -> None:
    raw = {
        "type": "response.audio.delta",
        "event_id": "event_7",
        "response_id": "resp_1",
        "item_id": "item_1",
        "delta": "not base64!!",
    }
    (ev,) = rt.to_provider_events(rt.parse_server_event(raw))
    assert isinstance(ev, ProviderErrorEvent)
    assert ev.code == "invalid_audio_delta" and not ev.fatal and ev.event_id == "event_7"


def test_text_output_counts_as_assistant_transcript() -> None:
    for prefix in ("response.text", "response.output_text"):
        delta = {"type": f"{prefix}.delta", "item_id": "item_1", "delta": "hi"}
        done = {"type": f"{prefix}.done", "item_id": "item_1", "text": "hi there"}
        assert rt.to_provider_events(rt.parse_server_event(delta)) == [
            TranscriptDelta("assistant", "hi", "item_1")
        ]
        assert rt.to_provider_events(rt.parse_server_event(done)) == [
            TranscriptDelta("assistant", "hi there", "item_1", final=True)
        ]


def test_user_transcription_deltas_are_not_final() -> None:
    raw = {
        "type": "conversation.item.input_audio_transcription.delta",
        "item_id": "item_1",
        "content_index": 0,
        "delta": "Hel",
    }
    assert rt.to_provider_events(rt.parse_server_event(raw)) == [
        TranscriptDelta("user", "Hel", "item_1")
    ]


# ---------------------------------------------------------------- client events

TOOL = ToolSpec(
    name="get_order_status",
    description="Look up an order by its number.",
    parameters={
        "type": "object",
        "properties": {"order_id": {"type": "string"}},
        "required": ["order_id"],
    },
)
TOOL_JSON = {
    "type": "function",
    "name": "get_order_status",
    "description": "Look up an order by its number.",
    "parameters": TOOL.parameters,
}
VAD_JSON = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 500,
    "create_response": True,
    "interrupt_response": True,
}
FULL = SessionConfig(
    provider="openai",
    instructions="Be brief.",
    voice="alloy",
    tools=(TOOL,),
    input_transcription_model="whisper-1",
    temperature=0.7,
)
BARE = SessionConfig(provider="openai", audio_format="g711_ulaw", turn_detection=None)


def test_session_update_preview_pcm16_with_tools() -> None:
    ev = rt.session_update(FULL, "preview")
    assert without_event_id(ev) == {
        "type": "session.update",
        "session": {
            "modalities": ["text", "audio"],
            "instructions": "Be brief.",
            "voice": "alloy",
            "input_audio_format": "pcm16",
            "output_audio_format": "pcm16",
            "input_audio_transcription": {"model": "whisper-1"},
            "turn_detection": VAD_JSON,
            "tools": [TOOL_JSON],
            "tool_choice": "auto",
            "temperature": 0.7,
        },
    }


def test_session_update_preview_g711_and_client_side_turns() -> None:
    session = rt.session_update(BARE, "preview")["session"]
    assert session == {
        "modalities": ["text", "audio"],
        "input_audio_format": "g711_ulaw",
        "output_audio_format": "g711_ulaw",
        "turn_detection": None,
        "tools": [],
        "tool_choice": "auto",
    }
    alaw = SessionConfig(audio_format="g711_alaw")
    assert rt.session_update(alaw, "preview")["session"]["input_audio_format"] == "g711_alaw"


def test_session_update_ga_pcm16_with_tools() -> None:
    ev = rt.session_update(FULL, "ga", event_id="evt_00000000000000aa")
    assert without_event_id(ev) == {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "output_modalities": ["audio"],
            "instructions": "Be brief.",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "turn_detection": VAD_JSON,
                    "transcription": {"model": "whisper-1"},
                },
                "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy"},
            },
            "tools": [TOOL_JSON],
            "tool_choice": "auto",
        },
    }
    assert ev["event_id"] == "evt_00000000000000aa"
    assert "temperature" not in json.dumps(ev)  # the GA session has no temperature


def test_session_update_ga_g711_and_client_side_turns() -> None:
    session = rt.session_update(BARE, "ga")["session"]
    assert session["audio"] == {
        "input": {"format": {"type": "audio/pcmu"}, "turn_detection": None},
        "output": {"format": {"type": "audio/pcmu"}},
    }
    assert session["tools"] == [] and "instructions" not in session
    alaw = rt.session_update(SessionConfig(audio_format="g711_alaw"), "ga")["session"]
    assert alaw["audio"]["input"]["format"] == alaw["audio"]["output"]["format"]
    assert alaw["audio"]["input"]["format"] == {"type": "audio/pcma"}


def test_semantic_vad_has_no_server_vad_knobs() -> None:
    cfg = SessionConfig(turn_detection=TurnDetection(type="semantic_vad", interrupt_response=False))
    for dialect in rt.DIALECTS:
        ev = rt.session_update(cfg, dialect)
        td = (
            ev["session"]["turn_detection"]
            if dialect == "preview"
            else ev["session"]["audio"]["input"]["turn_detection"]
        )
        assert td == {"type": "semantic_vad", "create_response": True, "interrupt_response": False}


def test_bad_dialect_or_format_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="dialect"):
        rt.session_update(FULL, "beta")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="audio format"):
        rt.audio_format("opus", "ga")


def test_event_ids_are_fresh_unless_given() -> None:
    ids = {rt.input_audio_commit()["event_id"] for _ in range(50)}
    assert len(ids) == 50 and all(re.fullmatch(r"evt_[0-9a-f]{16}", i) for i in ids)
    assert rt.response_cancel(event_id="evt_mine")["event_id"] == "evt_mine"


def test_audio_buffer_events() -> None:
    pcm = bytes(range(256)) * 2
    ev = rt.input_audio_append(pcm)
    assert without_event_id(ev) == {
        "type": "input_audio_buffer.append",
        "audio": base64.b64encode(pcm).decode(),
    }
    assert base64.b64decode(ev["audio"]) == pcm
    assert without_event_id(rt.input_audio_commit()) == {"type": "input_audio_buffer.commit"}
    assert without_event_id(rt.input_audio_clear()) == {"type": "input_audio_buffer.clear"}


def test_response_events() -> None:
    assert without_event_id(rt.response_create()) == {"type": "response.create"}
    assert without_event_id(rt.response_create("Say goodbye.")) == {
        "type": "response.create",
        "response": {"instructions": "Say goodbye."},
    }
    assert without_event_id(rt.response_cancel()) == {"type": "response.cancel"}
    assert without_event_id(rt.response_cancel("resp_1")) == {
        "type": "response.cancel",
        "response_id": "resp_1",
    }


def test_truncate_and_delete() -> None:
    assert without_event_id(rt.item_truncate("item_1", 1234)) == {
        "type": "conversation.item.truncate",
        "item_id": "item_1",
        "content_index": 0,
        "audio_end_ms": 1234,
    }
    assert rt.item_truncate("item_1", -5)["audio_end_ms"] == 0
    assert rt.item_truncate("item_1", 10, content_index=1)["content_index"] == 1
    assert without_event_id(rt.item_delete("item_1")) == {
        "type": "conversation.item.delete",
        "item_id": "item_1",
    }


def test_conversation_items() -> None:
    assert without_event_id(rt.function_call_output(CALL, '{"status":"shipped"}')) == {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": CALL, "output": '{"status":"shipped"}'},
    }
    assert without_event_id(rt.user_text_item("hello")) == {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "hello"}],
        },
    }
    assert rt.system_text_item("be nice")["item"] == {
        "type": "message",
        "role": "system",
        "content": [{"type": "input_text", "text": "be nice"}],
    }


def test_assistant_text_items_differ_by_dialect() -> None:
    assert rt.assistant_text_item("Sure.", "preview")["item"] == {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": "Sure."}],
    }
    assert rt.assistant_text_item("Sure.", "ga")["item"]["content"] == [
        {"type": "output_text", "text": "Sure."}
    ]


def test_image_items_are_ga_only_data_urls() -> None:
    url = "data:image/png;base64,iVBORw0KGgo="
    assert rt.user_image_item(url)["item"] == {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_image", "image_url": url}],
    }
    assert rt.user_image_item(url, "ga", detail="low")["item"]["content"][0]["detail"] == "low"
    with pytest.raises(ValueError, match="GA"):
        rt.user_image_item(url, "preview")
    with pytest.raises(ValueError, match="data URL"):
        rt.user_image_item("https://example.com/cat.png")


def test_every_client_event_is_json_ready() -> None:
    events = [
        rt.session_update(FULL, "preview"),
        rt.session_update(FULL, "ga"),
        rt.input_audio_append(b"\x00\x01"),
        rt.input_audio_commit(),
        rt.input_audio_clear(),
        rt.response_create("x"),
        rt.response_cancel(),
        rt.item_truncate("item_1", 5),
        rt.item_delete("item_1"),
        rt.function_call_output(CALL, "{}"),
        rt.user_text_item("t"),
        rt.system_text_item("s"),
        rt.assistant_text_item("a", "preview"),
        rt.assistant_text_item("a", "ga"),
        rt.user_image_item("data:image/jpeg;base64,/9j/"),
    ]
    for ev in events:
        assert json.loads(json.dumps(ev)) == ev
        assert ev["event_id"].startswith("evt_")


# ---------------------------------------------------------------- endpoints

KEY = "sk-proj-SECRETSECRET1234567890"


def assert_no_secret(ep: RealtimeEndpoint, secret: str) -> None:
    assert secret not in repr(ep)
    assert secret not in str(ep)
    assert secret not in json.dumps(ep.redacted())
    assert secret not in f"{ep!r} {ep!s} {[ep]}"


def test_openai_ga_endpoint() -> None:
    ep = openai_endpoint("gpt-realtime", KEY)
    assert ep.url == "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    assert ep.headers == {"Authorization": f"Bearer {KEY}"}
    assert ep.dialect == "ga"
    assert ep.redacted()["headers"] == {"Authorization": "Bearer ***"}
    assert_no_secret(ep, KEY)


def test_openai_preview_endpoint() -> None:
    ep = openai_endpoint("gpt-4o-realtime-preview-2024-12-17", KEY)
    assert ep.url == "wss://api.openai.com/v1/realtime?model=gpt-4o-realtime-preview-2024-12-17"
    assert ep.headers == {"Authorization": f"Bearer {KEY}", "OpenAI-Beta": "realtime=v1"}
    assert ep.dialect == "preview"
    assert ep.redacted()["headers"]["OpenAI-Beta"] == "realtime=v1"
    assert_no_secret(ep, KEY)


def test_openai_endpoint_overrides_and_encoding() -> None:
    ga = openai_endpoint("gpt-4o-realtime-preview", KEY, dialect="ga")
    assert ga.dialect == "ga" and "OpenAI-Beta" not in ga.headers
    pv = openai_endpoint("gpt-realtime", KEY, dialect="preview")
    assert pv.headers["OpenAI-Beta"] == "realtime=v1"
    ep = openai_endpoint("my model/v2&x=1", KEY, base_url="https://proxy.example.com/v1/")
    assert ep.url == "wss://proxy.example.com/v1/realtime?model=my%20model%2Fv2%26x%3D1"
    with pytest.raises(ValueError, match="key"):
        openai_endpoint("gpt-realtime", "")
    with pytest.raises(ValueError):
        openai_endpoint("gpt-realtime", KEY, base_url="ftp://example.com")


def test_azure_endpoint_with_api_key() -> None:
    ep = azure_endpoint("contoso-voice", "gpt-4o-realtime", "2024-10-01-preview", api_key=KEY)
    assert ep.url == (
        "wss://contoso-voice.openai.azure.com/openai/realtime"
        "?api-version=2024-10-01-preview&deployment=gpt-4o-realtime"
    )
    assert ep.headers == {"api-key": KEY}
    assert ep.dialect == "preview"
    assert ep.redacted()["headers"] == {"api-key": "***"}
    assert_no_secret(ep, KEY)


def test_azure_endpoint_with_bearer_token_and_base_urls() -> None:
    token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.payload.sig"
    for base in (
        "https://contoso-voice.openai.azure.com",
        "https://contoso-voice.openai.azure.com/",
        "https://contoso-voice.openai.azure.com/openai",
        "wss://contoso-voice.openai.azure.com/openai/",
    ):
        ep = azure_endpoint(base, "my deployment", "2025-04-01-preview", bearer_token=token)
        assert ep.url == (
            "wss://contoso-voice.openai.azure.com/openai/realtime"
            "?api-version=2025-04-01-preview&deployment=my%20deployment"
        ), base
        assert ep.headers == {"Authorization": f"Bearer {token}"}
        assert_no_secret(ep, token)


def test_azure_endpoint_needs_exactly_one_credential() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        azure_endpoint("contoso", "d", "2024-10-01-preview")
    with pytest.raises(ValueError, match="exactly one"):
        azure_endpoint("contoso", "d", "2024-10-01-preview", api_key="k", bearer_token="t")
    with pytest.raises(ValueError, match="Azure resource"):
        azure_endpoint("not a resource!", "d", "2024-10-01-preview", api_key="k")


def test_compatible_endpoint_converts_http_to_ws() -> None:
    ep = compatible_endpoint("http://127.0.0.1:8765/v1", "local-model", api_key=KEY)
    assert ep.url == "ws://127.0.0.1:8765/v1/realtime?model=local-model"
    assert ep.headers == {"Authorization": f"Bearer {KEY}", "OpenAI-Beta": "realtime=v1"}
    assert ep.dialect == "preview"
    assert_no_secret(ep, KEY)
    tls = compatible_endpoint("https://rt.example.com/v1/realtime", "m", None, dialect="ga")
    assert tls.url == "wss://rt.example.com/v1/realtime?model=m"
    assert tls.headers == {} and tls.dialect == "ga"
    assert compatible_endpoint("ws://localhost:9000", "m").url == (
        "ws://localhost:9000/realtime?model=m"
    )


def test_credentials_in_a_url_are_masked_too() -> None:
    ep = compatible_endpoint("ws://user:hunter2@127.0.0.1:9/v1?api_key=topsecret", "m")
    assert ep.url.startswith("ws://user:hunter2@127.0.0.1:9/v1/realtime?")
    for secret in ("hunter2", "topsecret"):
        assert_no_secret(ep, secret)


def test_endpoint_is_frozen() -> None:
    ep = openai_endpoint("gpt-realtime", KEY)
    with pytest.raises(AttributeError):
        ep.url = "wss://evil.example.com"  # type: ignore[misc]


def test_the_append_text_fast_path_is_the_json_of_the_append_event() -> None:
    pcm = bytes(range(256)) * 4
    text = rt.input_audio_append_text(pcm)
    ev = json.loads(text)
    assert ev["type"] == "input_audio_buffer.append"
    assert re.fullmatch(r"evt_[0-9a-f]{16}", ev["event_id"])
    assert text == json.dumps(rt.input_audio_append(pcm, event_id=ev["event_id"]))
    assert base64.b64decode(ev["audio"]) == pcm


@pytest.mark.parametrize("bad", ["AAA*", "AA=A", "A", "=="])
def test_an_audio_delta_that_is_not_strict_base64_is_reported_not_played(bad: str) -> None:
    ev = rt.parse_server_event(
        {"type": "response.audio.delta", "item_id": "i", "response_id": "r", "delta": bad}
    )
    out = rt.to_provider_events(ev)
    assert len(out) == 1 and out[0].code == "invalid_audio_delta"
