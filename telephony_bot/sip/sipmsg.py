"""Read the few things the engine needs from a raw SIP request (pure, no pjsua2)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

_URI_USER = re.compile(r"^(?:sips?|tel):(?P<user>[^@;>?]+)", re.IGNORECASE)
_COMPACT = {"f": "From", "t": "To", "i": "Call-ID", "m": "Contact", "v": "Via"}
_CANON = {"Call-Id": "Call-ID", "Cseq": "CSeq", "Www-Authenticate": "WWW-Authenticate"}


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
    for name, value in header_lines(raw):
        headers.setdefault(name, value)  # the first of a repeated header (the top Via)
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


def header_lines(raw: str) -> list[tuple[str, str]]:
    """Every header of a message, in order, compact names expanded (`v:` → Via); folded
    lines joined. Unlike `parse_request`, repeated headers (Via) are all kept."""
    head = raw.split("\r\n\r\n", 1)[0].split("\n\n", 1)[0]
    out: list[tuple[str, str]] = []
    for line in head.replace("\r\n", "\n").split("\n")[1:]:
        if not line:
            continue
        if line[0] in " \t" and out:
            out[-1] = (out[-1][0], out[-1][1] + " " + line.strip())
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name = name.strip()
        name = _COMPACT.get(name.lower(), name) if len(name) == 1 else name
        canon = "-".join(w.capitalize() for w in name.split("-"))
        out.append((_CANON.get(canon, canon), value.strip()))
    return out


def has_to_tag(to_header: str) -> bool:
    """Whether a To header carries a tag (the request is inside a dialog)."""
    m = re.search(r"<[^>]*>(.*)$", to_header)
    params = m.group(1) if m else ";" + to_header.split(";", 1)[1] if ";" in to_header else ""
    return re.search(r"(?i);\s*tag\s*=", params) is not None


def bad_request(raw: bytes, reason: str = "Bad Request") -> bytes | None:
    """A 400 answer to a request PJSIP could not take (from what can be read of it), or None
    when there is nothing to answer: a response, an ACK, or no Via to send it back along."""
    text = raw.decode("latin-1")
    first = text.split("\n", 1)[0].strip()
    parts = first.split()
    if len(parts) != 3 or not parts[2].upper().startswith("SIP/") or parts[0] == "ACK":
        return None
    headers = header_lines(text)
    vias = [v for n, v in headers if n == "Via"]
    if not vias:
        return None
    reason = re.sub(r"[\r\n]+", " ", reason)[:100]
    lines = [f"SIP/2.0 400 {reason}"] + [f"Via: {v}" for v in vias]
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = next((v for n, v in headers if n == name), None)
        if value is None and name == "To":
            value = f"<{parts[1]}>"  # none given: the request URI
        if value is None:
            continue
        if name == "To" and not has_to_tag(value):
            value += ";tag=tb-bad-request"
        lines.append(f"{name}: {value}")
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def tag_of(header: str) -> str:
    """The tag parameter of a From/To header value ("" if none)."""
    m = re.search(r"<[^>]*>(.*)$", header)
    params = m.group(1) if m else header
    t = re.search(r"(?i);\s*tag\s*=\s*([^;\s>]+)", params)
    return t.group(1) if t else ""


def ack_for_2xx(
    *, request_uri: str, from_hdr: str, to_hdr: str, call_id: str, cseq: int, via: str
) -> bytes:
    """The ACK a caller owes for a 2xx to its INVITE (RFC 3261 13.2.2.4): to_hdr with our
    tag, the INVITE's From, Call-ID and CSeq number; `via` is `host:port` of the sender."""
    branch = "z9hG4bK" + uuid.uuid4().hex[:16]
    lines = [
        f"ACK {request_uri} SIP/2.0",
        f"Via: SIP/2.0/UDP {via};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: {from_hdr}",
        f"To: {to_hdr}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} ACK",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
