"""What the SIP side does with hostile input, without sockets: PJSIP's log lines masked,
malformed messages summarised once per source and answered 400, call timers."""

from __future__ import annotations

import json

import pytest

from telephony_bot import log
from telephony_bot.sip.early import CallTimers, Timing, overdue
from telephony_bot.sip.malformed import MalformedPackets
from telephony_bot.sip.sipmsg import ack_for_2xx, bad_request, tag_of

SECRET_INVITE = (
    "INVITE sip:100@127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKabc\r\n"
    "From: <sip:a@127.0.0.1>;tag=9\r\n"
    "Call-ID: c1\r\n"
    "CSeq: 1 INVITE\r\n"
    'Authorization: Digest username="carrier", realm="r", nonce="n1", response="0123abcd"\r\n'
    "X-Api-Key: sk-live-999\r\n"
    "\r\n"
)


def test_secret_header_values_and_digest_responses_are_masked_in_free_text():
    masked = log.mask_text(SECRET_INVITE.replace("\r\n", "\n"))
    assert "0123abcd" not in masked and "sk-live-999" not in masked
    assert "Authorization: ***" in masked and "X-Api-Key: ***" in masked
    assert "Call-ID: c1" in masked  # the rest stays readable
    assert log.mask_text('digest response="feed", cnonce=x') == "digest response=***, cnonce=***"


def test_a_throttle_says_once_per_interval_and_counts_what_it_held_back():
    t = log.Throttle(60)
    assert t.hit("a", 0) == (True, 0)
    assert t.hit("a", 1) == (False, 0) and t.hit("a", 2) == (False, 0)
    assert t.hit("b", 2) == (True, 0)
    assert t.hit("a", 61) == (True, 2)


def test_a_400_goes_back_along_every_via_with_the_request_identity():
    raw = SECRET_INVITE.replace("CSeq: 1 INVITE", "CSeq: 99999999999999 INVITE").encode()
    raw = raw.replace(b"From:", b"v: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKdef\r\nFrom:")
    reply = bad_request(raw)
    assert reply is not None
    text = reply.decode()
    assert text.startswith("SIP/2.0 400 Bad Request\r\n")
    assert text.count("Via: ") == 2 and "branch=z9hG4bKdef" in text
    assert "CSeq: 99999999999999 INVITE" in text and "Call-ID: c1" in text
    assert "To: <sip:100@127.0.0.1>;tag=" in text  # none given: the request URI, tagged
    assert "0123abcd" not in text and "sk-live" not in text and text.endswith("\r\n\r\n")


@pytest.mark.parametrize(
    "raw",
    [
        b"ACK sip:1@x SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\n\r\n",
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\n\r\n",
        b"INVITE sip:1@x SIP/2.0\r\nFrom: <sip:a@b>\r\n\r\n",  # no Via: nowhere to answer
        b"\x00\x01garbage",
    ],
)
def test_no_answer_to_an_ack_a_response_or_a_request_without_via(raw: bytes):
    assert bad_request(raw) is None


def test_malformed_messages_are_logged_once_per_source_without_their_contents_and_answered(
    capfd: pytest.CaptureFixture[str],
):
    log.setup("json", "info")
    sent: list[tuple[str, int, bytes]] = []
    clock = [0.0]
    m = MalformedPackets(lambda ip, port, data: sent.append((ip, port, data)) or True,
                         clock=lambda: clock[0])  # fmt: skip
    line = (
        "Error processing packet from 127.0.0.1:5070: Missing required header(s) "
        "(PJSIP_EMISSINGHDR)  To [code 171050]:\n" + SECRET_INVITE + "\n-- end of packet."
    )
    for _ in range(3):
        assert m.on_pjsip_line(line)
        m.on_dropped(171050, SECRET_INVITE.encode())
    assert not m.on_pjsip_line("Unable to accept incoming call (too many calls)")
    out = capfd.readouterr().err
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert len(lines) == 1, out  # once per source
    assert lines[0]["event"] == "malformed SIP message dropped"
    assert lines[0]["source"] == "127.0.0.1:5070" and "EMISSINGHDR" in lines[0]["error"]
    assert "0123abcd" not in out and "sk-live" not in out and "INVITE sip" not in out
    assert len(sent) == 3 and sent[0][:2] == ("127.0.0.1", 5070)
    assert sent[0][2].startswith(b"SIP/2.0 400 ")
    clock[0] = 61
    m.on_pjsip_line(
        "Dropping 300 bytes packet from UDP 127.0.0.1:5070 : PJSIP syntax error exception "
        "when parsing 'CSeq' header on line 5 col 7"
    )
    again = [json.loads(x) for x in capfd.readouterr().err.splitlines() if x.startswith("{")]
    assert again[0]["error"] == "syntax error in the CSeq header" and again[0]["held_back"] == 2
    assert m.count == 4


def test_a_call_never_acked_or_never_answered_is_ended_by_its_timer():
    timers = CallTimers(ack_timeout_s=4, answer_timeout_s=30)
    t = Timing(created=0.0, answered_at=1.0)
    assert overdue(t, timers, 4.9) is None
    assert overdue(t, timers, 5.1) == (0, "", "call ended: no ACK for the 200 OK")
    t.confirmed = True
    assert overdue(t, timers, 100) is None
    ringing = Timing(created=0.0)
    assert overdue(ringing, timers, 29) is None
    assert overdue(ringing, timers, 31)[:2] == (408, "Request Timeout")  # type: ignore[index]
    assert overdue(Timing(created=0.0, outbound=True), timers, 100) is None


def test_the_ack_a_silent_caller_owes_matches_its_dialog():
    ack = ack_for_2xx(
        request_uri="sip:bot@127.0.0.1:5060",
        from_hdr="<sip:raw@127.0.0.3:4000>;tag=abc",
        to_hdr="<sip:100@127.0.0.1:5060>;tag=ours",
        call_id="cid-1",
        cseq=7,
        via="127.0.0.1:5060",
    ).decode()
    assert ack.startswith("ACK sip:bot@127.0.0.1:5060 SIP/2.0\r\n")
    assert "CSeq: 7 ACK" in ack and "Call-ID: cid-1" in ack and ack.endswith("\r\n\r\n")
    assert tag_of("<sip:100@127.0.0.1:5060>;tag=ours") == "ours"
    assert tag_of('"A" <sip:a;tag=x@b>;foo=1;tag=real') == "real"
    assert tag_of("<sip:100@127.0.0.1>") == ""
