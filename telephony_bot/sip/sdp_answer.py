"""Whether a call's media is SRTP, read from the SDP answer PJSIP negotiated.

The stream's profile does not say it: SRTP `optional` offers `RTP/AVP` with `a=crypto` lines
(best-effort SRTP), and an answer that takes one of them runs SRTP under an `RTP/AVP` profile.
What decides is the answer: a `crypto` attribute in it means both sides encrypt (RFC 4568).
We answer incoming calls (`onCallSdpCreated`, our SDP) and receive the answer to calls we place
(`onCallTsxState`, the 2xx to our INVITE)."""

from __future__ import annotations

from typing import Any

import pjsua2 as pj

from telephony_bot.sip.sipmsg import sdp_has_crypto


def our_answer_srtp(prm: Any) -> bool | None:
    """From `onCallSdpCreated`: None when we made an offer, else whether our answer is SRTP."""
    if not str(prm.remSdp.wholeSdp):
        return None
    return sdp_has_crypto(str(prm.sdp.wholeSdp))


def their_answer_srtp(prm: Any) -> bool | None:
    """From `onCallTsxState`: whether a 2xx to our INVITE carries an SRTP answer; None for
    any other transaction event."""
    e = prm.e
    if e.type != pj.PJSIP_EVENT_TSX_STATE:
        return None
    ts = e.body.tsxState
    if ts.type != pj.PJSIP_EVENT_RX_MSG or ts.tsx.method != "INVITE":
        return None
    if not 200 <= int(ts.tsx.statusCode) < 300:
        return None
    msg = str(ts.src.rdata.wholeMsg)
    if "\r\n\r\n" not in msg:
        return None
    return sdp_has_crypto(msg.split("\r\n\r\n", 1)[1])
