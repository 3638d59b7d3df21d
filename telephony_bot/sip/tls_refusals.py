"""Why a TLS connection the engine opened was dropped, in words an operator can act on.

PJSIP answers a request whose TLS connection failed the certificate check with one
generic reason ("SSL certificate verification error (PJSIP_TLS_ECERTVERIF)"), whatever
the check found. The endpoint hears the details first, from the transport (`verifyStatus`
flags and OpenSSL's messages, pjsua2 `onTransportState`), and keeps the latest per far
end here; a registration that failed for that reason is then reported with them:
"... (PJSIP_TLS_ECERTVERIF): 127.0.0.1:5061 presented a certificate not signed by a CA
in sip.tls.ca_file (or the system's CAs)".

Pure: the caller passes PJSIP's flags, messages and the time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

# PJSIP's pj_ssl_cert_verify_flag_t bits (pj/ssl_sock.h; the same in pjsua2's constants)
ISSUER_NOT_FOUND = 1 << 0
UNTRUSTED = 1 << 1
VALIDITY_PERIOD = 1 << 2
INVALID_FORMAT = 1 << 3
INVALID_PURPOSE = 1 << 4
ISSUER_MISMATCH = 1 << 5
CRL_FAILURE = 1 << 6
REVOKED = 1 << 7
CHAIN_TOO_LONG = 1 << 8
WEAK_SIGNATURE = 1 << 9
IDENTITY_NOT_MATCH = 1 << 30

_PHRASES = (
    (ISSUER_NOT_FOUND | UNTRUSTED | ISSUER_MISMATCH,
     "not signed by a CA the engine trusts (sip.tls.ca_file, else the system's CAs)"),
    (IDENTITY_NOT_MATCH, "issued for another name than the host it was reached at"),
    (VALIDITY_PERIOD, "expired or not yet valid"),
    (REVOKED, "revoked"),
    (INVALID_PURPOSE, "not meant for a TLS server"),
    (WEAK_SIGNATURE, "signed with a weak algorithm"),
)  # fmt: skip
CERT_ERROR = "PJSIP_TLS_ECERTVERIF"  # PJSIP's reason for any of these
KEEP_S = 60.0  # a refusal older than this explains nothing PJSIP reports now


def describe(status: int, messages: Iterable[str] = ()) -> str:
    """`status` (PJSIP's verify flags) as "a certificate <what is wrong>"."""
    found = [text for bits, text in _PHRASES if status & bits]
    if not found:  # a flag without a phrase: OpenSSL's own words
        found = [m.strip() for m in messages if m.strip()] or [f"failing the check ({status:#x})"]
    return "a certificate " + " and ".join(found)


@dataclass
class TlsRefusals:
    """The latest certificate refusal per far end ("IP:port"), for the reasons of failures
    PJSIP reports later (any thread: one writer at a time, PJSIP's)."""

    seen: dict[str, tuple[float, str]] = field(default_factory=dict)

    def refused(self, remote: str, status: int, messages: Iterable[str], now: float) -> str:
        text = f"{remote} presented {describe(status, messages)}"
        self.seen[remote] = (now, text)
        return text

    def explain(self, reason: str, port: int, now: float) -> str:
        """`reason` with the latest refusal of a far end on `port` appended, when `reason` is
        PJSIP's certificate error and there is one (else `reason` as it is)."""
        if CERT_ERROR not in reason:
            return reason
        recent = [
            (at, text)
            for remote, (at, text) in self.seen.items()
            if now - at <= KEEP_S and remote.rsplit(":", 1)[-1] == str(port)
        ]
        if not recent:
            return reason
        return f"{reason}: {max(recent)[1]}"
