"""Hand-made SIP requests over UDP for tests that need what no well-behaved UA sends: an
INVITE from a chosen source address, one never ACKed, one missing a header.

    with RawSip("127.0.0.2") as s:
        s.send(invite(s, "127.0.0.1", port))
        status, text = s.final()          # first final response (skips 1xx)
"""

from __future__ import annotations

import socket
import time
import uuid


class RawSip:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.host, self.port = self.sock.getsockname()
        self.target: tuple[str, int] | None = None

    def __enter__(self) -> RawSip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes, target: tuple[str, int]) -> None:
        self.sock.sendto(data, target)

    def responses(self, timeout: float = 3.0) -> list[str]:
        """Everything that arrives within `timeout`."""
        out = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                out.append(self.sock.recv(65535).decode("latin-1"))
            except TimeoutError:
                break
        return out

    def final(self, timeout: float = 5.0, call_id: str | None = None) -> tuple[int, str]:
        """The first final (>= 200) response (of `call_id`), or (0, "") on timeout."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                text = self.sock.recv(65535).decode("latin-1")
            except TimeoutError:
                break
            if call_id is not None and f"Call-ID: {call_id}" not in text:
                continue
            status = int(text.split(" ", 2)[1]) if text.startswith("SIP/2.0 ") else 0
            if status >= 200:
                return status, text
        return 0, ""


def invite(
    s: RawSip,
    host: str,
    port: int,
    *,
    call_id: str | None = None,
    extra: str = "",
    drop: tuple[str, ...] = (),
    user: str = "100",
) -> tuple[bytes, str]:
    """An INVITE with a PCMU offer from `s` to host:port (headers named in `drop` left out)."""
    cid = call_id or uuid.uuid4().hex
    sdp = (
        f"v=0\r\no=- 1 1 IN IP4 {s.host}\r\ns=-\r\nc=IN IP4 {s.host}\r\nt=0 0\r\n"
        f"m=audio {s.port + 2} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    headers = [
        ("Via", f"SIP/2.0/UDP {s.host}:{s.port};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport"),
        ("Max-Forwards", "70"),
        ("From", f"<sip:raw@{s.host}:{s.port}>;tag={uuid.uuid4().hex[:8]}"),
        ("To", f"<sip:{user}@{host}:{port}>"),
        ("Call-ID", cid),
        ("CSeq", "1 INVITE"),
        ("Contact", f"<sip:raw@{s.host}:{s.port}>"),
        ("Content-Type", "application/sdp"),
    ]
    lines = [f"INVITE sip:{user}@{host}:{port} SIP/2.0"]
    lines += [f"{n}: {v}" for n, v in headers if n not in drop]
    lines += [x for x in extra.split("\r\n") if x]
    lines.append(f"Content-Length: {len(sdp)}")
    return ("\r\n".join(lines) + "\r\n\r\n" + sdp).encode(), cid
