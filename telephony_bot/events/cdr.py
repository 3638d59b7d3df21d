"""Call detail records: one JSON object per call, appended to a JSON-lines file.

`build_record()` is pure (a finished call's result in, a dict out); `CdrFile.append()` writes
one line with a single `write(2)` on an `O_APPEND` descriptor, so several worker processes
appending to the same file never interleave or overwrite each other's records.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from telephony_bot.callport import CallOffered
from telephony_bot.session.result import CallResult
from telephony_bot.session.settings import CallMeta

# 2: `transfers`; tokens split into cached text and cached audio; `cost_usd` null when the
# price table lacks a provider's model; `price_table` (its version); `billed` (false: only
# free providers answered, the record names no price table).
CDR_VERSION = 2


def _iso(ts: float | None) -> str | None:
    if ts is None or ts <= 0:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def _ms_between(a: float | None, b: float | None) -> int | None:
    if a is None or b is None or a <= 0 or b <= 0:
        return None
    return max(0, round((b - a) * 1000))


def media_quality(media: dict[str, int]) -> dict[str, Any]:
    """RTP and bridge counters as an operator reads them: packets, loss, jitter, gaps."""
    rx = media.get("rtp_rx_packets", 0)
    lost = media.get("rtp_rx_lost", 0)
    return {
        "rtp_rx_packets": rx,
        "rtp_tx_packets": media.get("rtp_tx_packets", 0),
        "rtp_rx_lost": lost,
        "loss_pct": round(100.0 * lost / (rx + lost), 2) if rx + lost else 0.0,
        "jitter_ms": round(media.get("rtp_rx_jitter_us", 0) / 1000, 2),
        "jb_lost": media.get("jb_lost", 0),
        "jb_discarded": media.get("jb_discarded", 0),
        "srtp": bool(media.get("srtp", 0)),  # the call's audio was SRTP (encrypted)
        "frames_in": media.get("frames_in", 0),
        "frames_out": media.get("frames_out", 0),
        "underruns": media.get("underruns", 0),  # bot audio ran dry mid-reply
        "overruns": media.get("frames_dropped", 0),  # caller frames dropped: engine behind
    }


def build_record(
    result: CallResult, offer: CallOffered, meta: CallMeta, *, node: str = "", worker: int = 0
) -> dict[str, Any]:
    u = result.usage
    answered = result.answered_at
    # A pre-warmed greeting is queued while the call still rings; the caller hears it from
    # the answer on.
    first_audio = result.first_audio_at
    if first_audio is not None and answered is not None:
        first_audio = max(first_audio, answered)
    return {
        "cdr_version": CDR_VERSION,
        "call_id": result.call_id,
        "sip_call_id": offer.sip_call_id,
        "node": node,
        "worker": worker,
        "direction": meta.direction,
        "called": offer.called,
        "caller": offer.caller,
        "transport": offer.transport,  # udp, tcp, tls: how the call's signaling came
        "trunk": offer.trunk or None,
        "route": meta.route,
        "plan_version": meta.plan_version,
        "provider": meta.provider,
        "times": {
            "setup": _iso(result.setup_at),
            "answer": _iso(answered),
            "first_audio": _iso(first_audio),
            "end": _iso(result.ended_at),
        },
        "ring_ms": _ms_between(result.setup_at, answered),
        "first_audio_ms": _ms_between(answered, first_audio),  # after the answer
        "duration_s": round(result.ended_at - answered, 2) if answered else 0.0,
        "answered": answered is not None,
        "ended_by": result.ended_by,
        "end_reason": result.end_reason,
        "sip_reason": result.reason,
        "sip_status": result.sip_status,
        "codec": result.codec,
        "turns": {"user": result.turns_user, "agent": result.turns_agent},
        "barge_ins": result.barge_ins,
        "dtmf": "".join(result.dtmf),
        "tool_calls": len(result.tools),
        "tools": list(result.tools),
        "failovers": list(result.failovers),  # the providers that took the call over
        "stalls": list(result.stalls),  # providers that stopped answering
        "transfers": list(result.transfers),  # target, by (model, operator, engine), ok, status
        "media": media_quality(result.media),
        "usage": {
            "audio_in_s": u.get("audio_in_s", 0.0),
            "audio_out_s": u.get("audio_out_s", 0.0),
            "responses": u.get("responses", 0),
            "tokens": {
                "input_text": u.get("input_text_tokens", 0),
                "input_audio": u.get("input_audio_tokens", 0),
                "input_cached": u.get("input_cached_tokens", 0),  # within the two above
                "input_cached_text": u.get("input_cached_text_tokens", 0),
                "input_cached_audio": u.get("input_cached_audio_tokens", 0),
                "output_text": u.get("output_text_tokens", 0),
                "output_audio": u.get("output_audio_tokens", 0),
                "total": u.get("total_tokens", 0),
            },
            "cost_usd": u.get("cost_usd"),  # None: a provider's model has no known price
            "price_table": u.get("price_table"),  # the version of the table it was priced with
            "billed": u.get("billed", False),  # False: only free providers (offline, echo)
        },
    }


class CdrFile:
    """Appends records to a JSON-lines file, one `write(2)` per record."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.written = 0
        self.failed = 0

    def append(self, record: dict[str, Any]) -> bool:
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                n = os.write(fd, line)
            finally:
                os.close(fd)
        except OSError:
            self.failed += 1
            return False
        if n != len(line):  # a full disk: a torn record, counted as failed
            self.failed += 1
            return False
        self.written += 1
        return True
