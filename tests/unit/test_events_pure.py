"""The pure parts of events: topics, command validation, the bus's drop-oldest, agent turns,
live call state, CDR records, the outbound allow list."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from telephony_bot.callport import CallOffered
from telephony_bot.events import commands as c
from telephony_bot.events.bus import Bus, Event
from telephony_bot.events.cdr import CdrFile, build_record
from telephony_bot.events.control import CommandResult
from telephony_bot.events.live import LiveCalls
from telephony_bot.outbound import number_allowed, trunk_uri
from telephony_bot.session.result import CallResult
from telephony_bot.session.settings import CallMeta

# ---------------------------------------------------------------- topics


def test_command_topics_name_verb_and_call_and_other_nodes_are_ignored() -> None:
    assert c.parse_topic("tb", "n1", "tb/n1/calls/abc123/cmd/say") == c.CommandTopic(
        "say", "abc123", "call"
    )
    assert c.parse_topic("tb", "n1", "tb/n1/cmd/originate") == c.CommandTopic(
        "originate", None, "node"
    )
    assert c.parse_topic("tb", "n1", "tb/cmd/hangup") == c.CommandTopic("hangup", None, "global")
    assert c.parse_topic("tb", "n1", "tb/n2/calls/abc/cmd/say") is None  # another node's
    assert c.parse_topic("tb", "n1", "tb/n1/calls/abc/cmd/say/reply") is None  # a reply
    assert c.parse_topic("tb", "n1", "other/n1/cmd/say") is None
    assert c.event_topic("tb", "n1", "abc", "turn.user") == "tb/n1/calls/abc/events/turn.user"
    assert c.event_topic("tb", "n1", "abc", "cdr") == "tb/n1/calls/abc/cdr"


def test_originate_is_subscribed_once_per_cluster_through_a_shared_subscription() -> None:
    subs = c.subscriptions("tb", "n1", ("hangup", "say", "originate"))
    assert "$share/tb/tb/cmd/originate" in subs
    assert "tb/cmd/originate" not in subs  # else every worker would dial
    assert "tb/cmd/hangup" in subs and "tb/cmd/transfer" not in subs  # disabled verb
    assert "tb/n1/calls/+/cmd/+" in subs


# ---------------------------------------------------------------- payloads


@pytest.mark.parametrize(
    ("verb", "payload", "reason"),
    [
        ("say", "{}", "text: Field required"),
        ("say", '{"text": ""}', "text: String should have at least 1 character"),
        ("say", '{"text": "hi", "loud": true}', "loud: unknown field"),
        ("say", "[1]", "must be a JSON object"),
        ("say", "{bad", "not JSON"),
        ("transfer", '{"target": "sip:a b@x"}', "target: String should match pattern"),
        ("inject", "{}", "either text or image"),
        ("inject", '{"text": "a", "image": "aGk="}', "either text or image"),
        ("inject", '{"image": "aGk=", "mime": "text/html"}', "mime: String should match"),
        ("originate", '{"from": "1"}', "to: Field required"),
        ("fly", "{}", "unknown verb 'fly'"),
    ],
)
def test_invalid_commands_are_refused_with_the_reason(verb: str, payload: str, reason: str) -> None:
    with pytest.raises(c.CommandError, match=reason.replace("(", r"\(")):
        c.parse_payload(verb, payload)


def test_valid_commands_parse_and_an_empty_hangup_is_fine() -> None:
    assert c.parse_payload("hangup", b"") == c.Hangup()
    say = c.parse_payload("say", '{"text": "Hello", "interrupt": true}')
    assert isinstance(say, c.Say) and say.interrupt
    orig = c.parse_payload("originate", '{"to": "+4930123", "from": "100", "route": "sales"}')
    assert isinstance(orig, c.Originate) and orig.from_ == "100"
    inj = c.parse_payload("inject", json.dumps({"image": base64.b64encode(b"PNG").decode()}))
    assert isinstance(inj, c.Inject) and inj.image_bytes() == b"PNG"
    bad = c.parse_payload("inject", '{"image": "***"}')
    with pytest.raises(c.CommandError, match="not valid base64"):
        bad.image_bytes()  # type: ignore[attr-defined]


def test_the_call_comes_from_the_topic_or_the_payload_and_must_agree() -> None:
    on_call = c.CommandTopic("say", "abc", "call")
    glob = c.CommandTopic("say", None, "global")
    assert c.target_call(on_call, c.Say(text="x")) == "abc"
    assert c.target_call(glob, c.Say(text="x", call_id="def")) == "def"
    with pytest.raises(c.CommandError, match="call_id is required"):
        c.target_call(glob, c.Say(text="x"))
    with pytest.raises(c.CommandError, match="differs"):
        c.target_call(on_call, c.Say(text="x", call_id="zzz"))
    with pytest.raises(c.CommandError, match="not a call command"):
        c.target_call(c.CommandTopic("originate", "abc", "call"), c.Originate(to="1"))


def test_command_result_json_carries_ok_reason_and_data() -> None:
    assert CommandResult(False, "nope").to_json() == {"ok": False, "reason": "nope"}
    assert CommandResult(True, data={"call_id": "a"}).to_json() == {"ok": True, "call_id": "a"}


# ---------------------------------------------------------------- bus


async def test_a_stalled_subscriber_loses_its_oldest_events_counted_and_never_blocks() -> None:
    bus = Bus()
    slow = bus.subscribe("slow", maxsize=3)
    fast = bus.subscribe("fast", maxsize=100)
    for i in range(10):
        bus.emit("dtmf", "call1", digit=str(i))
    assert slow.dropped == 7 and bus.dropped_total == 7 and fast.dropped == 0
    got = [slow.get_nowait().data["digit"] for _ in range(3)]  # type: ignore[union-attr]
    assert got == ["7", "8", "9"]  # the newest survive, in order
    assert fast.pending() == 10
    waiter = asyncio.create_task(slow.get())
    await asyncio.sleep(0)
    bus.emit("call.ended", "call1")
    assert (await asyncio.wait_for(waiter, 1)).type == "call.ended"


# ---------------------------------------------------------------- live calls


def test_live_calls_follow_the_bus_until_the_call_ends() -> None:
    bus = Bus()
    live = LiveCalls(bus)
    bus.emit("call.started", "c1", called="100", caller="200", route="sales", plan_version="v")
    assert live.call("c1")["state"] == "ringing"  # type: ignore[index]
    bus.emit("call.answered", "c1", codec="PCMU/8000")
    bus.emit("turn.agent", "c1", text="Hi", interrupted=False, played_ms=900)
    bus.emit("turn.user", "c1", text="Hello")
    bus.emit("transfer.started", "c1", target="sip:x@y")
    snap = live.calls()[0]
    assert snap["state"] == "transferring" and snap["route"] == "sales"
    assert [t["role"] for t in snap["transcript"]] == ["agent", "user"]
    snap["transcript"].clear()  # a snapshot: the registry is unchanged
    assert len(live.call("c1")["transcript"]) == 2  # type: ignore[index]
    bus.emit("call.ended", "c1", reason="x")
    assert live.calls() == [] and "c1" not in live


# ---------------------------------------------------------------- CDR


def _result() -> tuple[CallResult, CallOffered, CallMeta]:
    r = CallResult("c1", ended_by="remote", reason="200 Normal", sip_status=200)
    r.setup_at, r.answered_at, r.first_audio_at, r.ended_at = 100.0, 100.5, 100.8, 130.5
    r.turns_user, r.turns_agent, r.barge_ins = 2, 3, 1
    r.tools = [{"name": "lookup", "ok": True, "duration_ms": 1500.2}]
    r.media = {"rtp_rx_packets": 1470, "rtp_rx_lost": 30, "rtp_rx_jitter_us": 2500,
               "underruns": 2, "frames_dropped": 1}  # fmt: skip
    r.usage = {"audio_in_s": 30.0, "audio_out_s": 9.5, "responses": 3, "input_text_tokens": 10,
               "input_audio_tokens": 300, "input_cached_tokens": 64,
               "input_cached_text_tokens": 10, "input_cached_audio_tokens": 54,
               "output_text_tokens": 40, "output_audio_tokens": 200, "total_tokens": 550,
               "cost_usd": 0.0285, "price_table": "t1"}  # fmt: skip
    r.transfers = [{"target": "sip:desk@pbx", "by": "model", "ok": False, "status": 486,
                    "reason": "Busy Here"}]  # fmt: skip
    offer = CallOffered("c1", "sip-1", "100", "200", "<sip:200@x>", "<sip:100@y>", "1.2.3.4",
                        trunk="pbx")  # fmt: skip
    return r, offer, CallMeta("inbound", "sales", "v1", "openai")


def test_a_cdr_holds_times_turns_tools_quality_and_usage() -> None:
    rec = build_record(*_result(), node="n1", worker=2)
    assert rec["called"] == "100" and rec["caller"] == "200" and rec["route"] == "sales"
    assert rec["trunk"] == "pbx"
    assert rec["times"]["setup"] == "1970-01-01T00:01:40.000+00:00"
    assert rec["ring_ms"] == 500 and rec["first_audio_ms"] == 300 and rec["duration_s"] == 30.0
    assert rec["turns"] == {"user": 2, "agent": 3} and rec["barge_ins"] == 1
    assert rec["tool_calls"] == 1 and rec["tools"][0]["duration_ms"] == 1500.2
    assert rec["media"]["loss_pct"] == 2.0 and rec["media"]["jitter_ms"] == 2.5
    assert rec["media"]["underruns"] == 2 and rec["media"]["overruns"] == 1
    tokens = {"input_text": 10, "input_audio": 300, "input_cached": 64, "input_cached_text": 10,
              "input_cached_audio": 54, "output_text": 40, "output_audio": 200,
              "total": 550}  # fmt: skip
    assert rec["usage"]["tokens"] == tokens
    assert rec["usage"]["cost_usd"] == 0.0285 and rec["usage"]["price_table"] == "t1"
    assert rec["end_reason"] == "200 Normal"
    assert rec["transfers"] == [{"target": "sip:desk@pbx", "by": "model", "ok": False,
                                 "status": 486, "reason": "Busy Here"}]  # fmt: skip


def test_a_cdr_names_the_engines_own_reason_when_it_hung_up() -> None:
    r, offer, meta = _result()
    r.ended_by, r.hangup_reason = "local", "max_call_seconds"
    rec = build_record(r, offer, meta)
    assert rec["end_reason"] == "max_call_seconds" and rec["sip_reason"] == "200 Normal"


def test_an_unanswered_call_has_no_answer_time_and_no_duration() -> None:
    r, offer, meta = _result()
    r.answered_at = r.first_audio_at = None
    rec = build_record(r, offer, meta)
    assert rec["answered"] is False and rec["times"]["answer"] is None
    assert rec["duration_s"] == 0.0 and rec["ring_ms"] is None


def test_cdr_records_from_several_processes_append_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "cdr.jsonl"
    code = (
        "import sys; from telephony_bot.events.cdr import CdrFile\n"
        "f = CdrFile(sys.argv[1])\n"
        "for i in range(200): f.append({'call_id': f'{sys.argv[2]}-{i}', 'pad': 'x' * 3000})\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(path), f"w{w}"], env=env)
        for w in range(3)
    ]
    assert all(p.wait(60) == 0 for p in procs)
    lines = path.read_text().splitlines()
    ids = {json.loads(line)["call_id"] for line in lines}  # every line is whole JSON
    assert len(lines) == 600 and len(ids) == 600


def test_a_cdr_file_that_cannot_be_written_is_counted_not_raised(tmp_path: Path) -> None:
    f = CdrFile(tmp_path / "missing-dir" / "cdr.jsonl")
    assert f.append({"call_id": "x"}) is False and f.failed == 1


# ---------------------------------------------------------------- outbound


def test_only_numbers_on_the_allow_list_may_be_dialled() -> None:
    allow = ("+4930*", "100", "2??")
    assert number_allowed("+4930123456", allow)
    assert number_allowed("100", allow) and number_allowed("234", allow)
    assert not number_allowed("+4940123", allow)
    assert not number_allowed("1000", allow) and not number_allowed("2345", allow)
    assert not number_allowed("100", ())  # an empty list allows nothing
    assert not number_allowed("[1]", ("[1]x",))  # no glob classes smuggled in
    assert trunk_uri("sip:10.0.0.5:5060;transport=tcp", "+4930") == (
        "sip:+4930@10.0.0.5:5060;transport=tcp"
    )


def test_events_are_json_with_type_call_and_sequence() -> None:
    ev = Event("dtmf", "c1", {"digit": "5"})
    body = ev.to_json()
    assert body["type"] == "dtmf" and body["call_id"] == "c1" and body["digit"] == "5"
    assert Event("dtmf", "c1").seq > ev.seq


def test_secret_named_sip_headers_are_masked_in_call_started() -> None:
    from telephony_bot.session.lifecycle import event_headers

    shown = event_headers({"X-Api-Key": "k-1", "X-Auth-Token": "t-2", "X-Customer": "42" * 200})
    assert shown["X-Api-Key"] == "***" and shown["X-Auth-Token"] == "***"
    assert shown["X-Customer"] == ("42" * 200)[:200]
