from __future__ import annotations

from telephony_bot.sip.sipmsg import parse_request, uri_user

INVITE = (
    "INVITE sip:+4930123456@10.0.0.1:5060;transport=udp SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n"
    'f: "Alice" <sip:+4917012345@trunk.example>;tag=abc\r\n'
    "t: <sip:+4930123456@10.0.0.1>\r\n"
    "i: 1234@host\r\n"
    "X-Customer-Id: 42\r\n"
    "Subject: long\r\n"
    " folded\r\n"
    "\r\n"
    "v=0\r\n"
)


def test_dialed_number_and_caller_id_come_from_request_uri_and_from() -> None:
    req = parse_request(INVITE)
    assert req.method == "INVITE"
    assert uri_user(req.request_uri) == "+4930123456"
    assert uri_user(req.headers["From"]) == "+4917012345"
    assert req.headers["Call-ID"] == "1234@host"  # compact form expanded
    assert req.headers["X-Customer-Id"] == "42"
    assert req.headers["Subject"] == "long folded"


def test_odd_uris() -> None:
    assert uri_user("tel:+15551234") == "+15551234"
    assert uri_user("<sips:100@h;user=phone>") == "100"
    assert uri_user("sip:host.only") == "host.only"
    assert uri_user("garbage") == ""


def test_garbage_does_not_raise() -> None:
    req = parse_request("\x00\xff not sip at all")
    assert req.headers == {}
    assert parse_request("").method == ""
