"""Read the few things the engine needs from a raw SIP request (pure, no pjsua2)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_URI_USER = re.compile(r"^(?:sips?|tel):(?P<user>[^@;>?]+)", re.IGNORECASE)
_COMPACT = {"f": "From", "t": "To", "i": "Call-ID", "m": "Contact", "v": "Via"}


@dataclass(frozen=True)
class RequestSummary:
    method: str
    request_uri: str
    headers: dict[str, str]  # first value of each header, canonical capitalisation


def uri_user(uri_or_header: str) -> str:
    """The user part of a SIP URI or name-addr (`"Bob" <sip:+4930123@host>;tag=x` → +4930123)."""
    text = uri_or_header.strip()
    m = re.search(r"<([^>]*)>", text)
    if m:
        text = m.group(1)
    else:
        text = text.split(";", 1)[0]
    text = text.strip()
    um = _URI_USER.match(text)
    return um.group("user") if um else ""


def parse_request(raw: str) -> RequestSummary:
    """Start line and headers of a SIP request; tolerant of folding and compact names."""
    head = raw.split("\r\n\r\n", 1)[0].split("\n\n", 1)[0]
    lines = head.replace("\r\n", "\n").split("\n")
    parts = lines[0].split() if lines else []
    method = parts[0] if parts else ""
    request_uri = parts[1] if len(parts) > 1 else ""
    headers: dict[str, str] = {}
    last = ""
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t" and last:  # folded continuation
            headers[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name = name.strip()
        name = _COMPACT.get(name.lower(), name) if len(name) == 1 else name
        canon = "-".join(w.capitalize() for w in name.split("-"))
        if canon == "Call-Id":
            canon = "Call-ID"
        if canon not in headers:
            headers[canon] = value.strip()
        last = canon
    return RequestSummary(method=method, request_uri=request_uri, headers=headers)


_VIA = re.compile(r"^\s*SIP\s*/\s*2\.0\s*/\s*(?P<transport>[A-Za-z]+)", re.IGNORECASE)


def via_transport(via: str) -> str:
    """The transport of a (top) Via header, lower case: `SIP/2.0/TLS host;...` → tls."""
    m = _VIA.match(via)
    return m.group("transport").lower() if m else ""


_SDES_KEY = re.compile(r"(inline:)[A-Za-z0-9+/=]+")


def mask_sdes_keys(text: str) -> str:
    """SRTP master keys in SDP (`a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY|2^20`) masked:
    anyone holding one can decrypt the call's audio."""
    return _SDES_KEY.sub(r"\1****", text)


def sdp_has_crypto(sdp: str) -> bool:
    """An audio stream of this SDP (not refused with port 0) carries an SDES `a=crypto` line."""
    audio = False
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("m="):
            parts = line[2:].split()
            audio = len(parts) > 1 and parts[0] == "audio" and parts[1] != "0"
        elif audio and line.startswith("a=crypto:"):
            return True
    return False
