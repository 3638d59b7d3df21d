"""One SIP call: the pjsua2 `Call` (PJSIP threads) and its asyncio facade `SipCall`.

`PjCall` lives on PJSIP's side: its callbacks turn call state, media, DTMF and transfer
notifications into `callport` events handed to asyncio. `SipCall` is what the session
holds: it implements `CallPort` and asks the endpoint's owner thread to act. The facade
never touches a pjsua2 object itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import pjsua2 as pj

from telephony_bot import log
from telephony_bot.admission import RETRY_AFTER_S
from telephony_bot.callport import (
    CallAnswered,
    CallEnded,
    CallEvent,
    CallOffered,
    DtmfReceived,
    MediaReady,
    TransferOutcome,
)
from telephony_bot.config import SipSettings
from telephony_bot.errors import CallGoneError
from telephony_bot.media.bridge import MediaBridge
from telephony_bot.sip.early import Timing
from telephony_bot.sip.media_port import BridgePort, BridgePortPool
from telephony_bot.sip.native_port import NativePort, NativePortPool
from telephony_bot.sip.pythread import pin
from telephony_bot.sip.sdp_answer import our_answer_srtp, their_answer_srtp
from telephony_bot.sip.sipmsg import header_lines, tag_of

_log = log.get("sip.call")
T = TypeVar("T")


class CallOwner(Protocol):
    """What a call needs of the endpoint that owns it (`sip.endpoint.CallOwner`)."""

    loop: asyncio.AbstractEventLoop
    settings: SipSettings
    ports: BridgePortPool | NativePortPool

    async def run(self, fn: Callable[[], T]) -> T: ...

    def emit(self, call: SipCall, ev: CallEvent) -> None: ...

    def release_later(self, pjcall: PjCall) -> None: ...


_DTMF_METHODS = {
    getattr(pj, "PJSUA_DTMF_METHOD_RFC2833", 0): "rfc2833",
    getattr(pj, "PJSUA_DTMF_METHOD_SIP_INFO", 1): "sip-info",
}


@dataclass
class DialogIds:
    """What it takes to stand in for the caller's missing ACK, and to find the dialog."""

    call_id: str
    from_hdr: str  # the caller's From (with its tag)
    to_hdr: str  # the INVITE's To (no tag)
    cseq: int
    local_tag: str = ""  # our To tag, from the 2xx we sent

    @property
    def remote_tag(self) -> str:
        return tag_of(self.from_hdr)


class PjCall(pj.Call):  # type: ignore[misc]
    """pjsua2 call object; every method here runs on a PJSIP or the owner thread."""

    def __init__(self, endpoint: CallOwner, account: Any, pj_call_id: int) -> None:
        super().__init__(account, pj_call_id)
        self.endpoint = endpoint
        self.facade: SipCall | None = None
        self.port: BridgePort | NativePort | None = None
        self.local_hangup = False
        self.transfer_target = ""
        self.media_stats: dict[str, int] = {}
        self.codec = ""
        self.srtp: bool | None = None  # the SDP answer took SRTP; None: no answer yet
        self.media_logged = False
        self.answered = False
        self.ended = False
        self.source_ip = ""  # where an incoming INVITE came from (admission counts by it)
        self.timing = Timing(time.monotonic(), outbound=pj_call_id == pj.PJSUA_INVALID_ID)
        self.dialog: DialogIds | None = None  # an incoming call's identifiers (ACK timer)

    def age(self, now: float) -> float:
        return now - self.timing.created

    # -- helpers --

    def _emit(self, ev: CallEvent) -> None:
        if self.facade is not None:
            self.endpoint.emit(self.facade, ev)

    @property
    def call_id(self) -> str:
        return self.facade.call_id if self.facade else "-"

    # -- pjsua2 callbacks (PJSIP threads) --

    def onCallState(self, prm: Any) -> None:  # noqa: N802
        pin()
        try:
            ci = self.getInfo()
        except Exception:  # noqa: BLE001
            return
        if self.ended:
            return  # a call hung up before its ACK: PJSIP may still report it confirmed
        if ci.state == pj.PJSIP_INV_STATE_CONNECTING and self.timing.answered_at is None:
            self.timing.answered_at = time.monotonic()
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED and not self.answered:
            self.answered = True
            self.timing.confirmed = True
            self._emit(CallAnswered(self.call_id, self.codec))
        elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED and not self.ended:
            # Rejected calls (486/503/400) end here too: freeing a pjsua2 Call before its
            # DISCONNECTED state makes its destructor hang up again (and answer 500).
            self.ended = True
            if self.srtp is not None:
                self.media_stats["srtp"] = int(self.srtp)
            if self.port is not None:
                self.port.bridge.close()
                self.media_stats["bridge_callback_errors"] = self.port.callback_errors
                st = self.port.bridge.stats
                self.media_stats.update(
                    frames_in=st.frames_in,
                    frames_out=st.frames_out,
                    frames_dropped=st.frames_dropped,
                    underruns=st.underruns,
                )
            self._emit(
                CallEnded(
                    self.call_id,
                    ended_by="local" if self.local_hangup else "remote",
                    status_code=int(ci.lastStatusCode),
                    reason=str(ci.lastReason),
                    media=dict(self.media_stats),
                )
            )
            self.endpoint.release_later(self)

    def onCallTsxState(self, prm: Any) -> None:  # noqa: N802
        """An outbound call's SRTP, from the far end's SDP answer; and the tag of our 2xx to
        an incoming INVITE (pjsua2 does not tell it otherwise)."""
        pin()
        with contextlib.suppress(Exception):
            srtp = their_answer_srtp(prm)
            if srtp is not None:
                self.srtp = srtp
        d = self.dialog
        if d is None or d.local_tag:
            return
        try:
            tsx = prm.e.body.tsxState.tsx
            if (
                tsx.role == pj.PJSIP_ROLE_UAS
                and tsx.method == "INVITE"
                and (200 <= int(tsx.statusCode) < 300)
            ):
                sent = dict(header_lines(str(tsx.lastTx.wholeMsg)))
                d.local_tag = tag_of(sent.get("To", ""))
        except Exception:  # noqa: BLE001 - best effort: without it the timer only hangs up
            pass

    def onCallMediaState(self, prm: Any) -> None:  # noqa: N802
        pin()
        try:
            ci = self.getInfo()
            for i, mi in enumerate(ci.media):
                if mi.type != pj.PJMEDIA_TYPE_AUDIO or mi.status != pj.PJSUA_CALL_MEDIA_ACTIVE:
                    continue
                am = self.getAudioMedia(i)
                try:
                    si = self.getStreamInfo(i)
                    self.codec = f"{si.codecName}/{si.codecClockRate}"
                except Exception:  # noqa: BLE001
                    self.codec = "unknown"
                if not self.media_logged:
                    self.media_logged = True
                    _log.info("media active", call_id=self.call_id, codec=self.codec,
                              srtp=self.srtp)  # fmt: skip
                if self.endpoint.settings.media_loopback:
                    am.startTransmit(am)
                else:
                    if self.port is None and self.facade is not None:
                        self.port = self.endpoint.ports.acquire(self.facade.media)
                    if self.port is not None:
                        self.port.connect(am)
                self._emit(MediaReady(self.call_id, self.codec))
                break
        except Exception as exc:  # noqa: BLE001
            _log.error("media setup failed", call_id=self.call_id, error=str(exc))

    def onCallSdpCreated(self, prm: Any) -> None:  # noqa: N802
        pin()
        with contextlib.suppress(Exception):
            srtp = our_answer_srtp(prm)
            if srtp is not None:
                self.srtp = srtp

    def onStreamDestroyed(self, prm: Any) -> None:  # noqa: N802
        pin()
        try:
            st = self.getStreamStat(prm.streamIdx)
            rx, tx = st.rtcp.rxStat, st.rtcp.txStat
            self.media_stats.update(
                rtp_rx_packets=int(rx.pkt),
                rtp_tx_packets=int(tx.pkt),
                rtp_rx_lost=int(rx.loss),
                rtp_rx_discarded=int(rx.discard),
                rtp_rx_jitter_us=int(rx.jitterUsec.mean),
                jb_lost=int(st.jbuf.lost),
                jb_discarded=int(st.jbuf.discard),
            )
        except Exception:  # noqa: BLE001 - stats are best effort
            pass

    def onDtmfDigit(self, prm: Any) -> None:  # noqa: N802
        pin()
        self._emit(
            DtmfReceived(
                self.call_id,
                digit=str(prm.digit),
                method=_DTMF_METHODS.get(prm.method, str(prm.method)),
                duration_ms=int(prm.duration) if int(prm.duration) < 0xFFFF else 0,
            )
        )

    def onCallTransferStatus(self, prm: Any) -> None:  # noqa: N802
        pin()
        code = int(prm.statusCode)
        self._emit(
            TransferOutcome(
                self.call_id,
                target=self.transfer_target,
                status_code=code,
                reason=str(prm.reason),
                final=bool(prm.finalNotify),
            )
        )
        prm.cont = not prm.finalNotify


class SipCall:
    """The session's handle on a SIP call (implements `callport.CallPort`).

    It holds its pjsua2 call only weakly and resolves it on the owner thread for each
    action, so the pjsua2 object is always freed there (before `libDestroy`), never by
    the asyncio thread dropping its last reference.
    """

    def __init__(
        self, endpoint: CallOwner, pjcall: PjCall, offer: CallOffered, *, outbound: bool = False
    ) -> None:
        self.call_id = offer.call_id
        self.offer = offer
        self.outbound = outbound  # we dialled: answer() waits for the far end to pick up
        self.ring_timeout_s = 30.0
        rate = endpoint.settings.media_port_rate  # the session works at the port's own rate
        self.media = MediaBridge(
            endpoint.loop, sample_rate=rate, port_rate=rate, crossing=endpoint.ports.crossing
        )
        endpoint.ports.register(self.media)
        self.events: asyncio.Queue[CallEvent] = asyncio.Queue()
        self._endpoint = endpoint
        self._ref: weakref.ref[PjCall] | None = weakref.ref(pjcall)
        self._answered = asyncio.Event()
        self._ended = asyncio.Event()

    def deliver(self, ev: CallEvent) -> None:
        """A call event from PJSIP, on the asyncio thread."""
        if isinstance(ev, CallAnswered):
            self._answered.set()
        elif isinstance(ev, CallEnded):
            self._ended.set()
        self.events.put_nowait(ev)

    def detach(self) -> None:
        self._ref = None

    async def _act(self, fn: Callable[[PjCall], T], *, quiet: bool = False) -> T | None:
        """Run `fn(call)` on the owner thread; CallGoneError (or None if quiet) once ended."""

        def on_owner() -> T | None:
            c = self._ref() if self._ref is not None else None
            if c is None or c.ended:
                if quiet:
                    return None
                raise CallGoneError(f"call {self.call_id} has already ended")
            return fn(c)

        return await self._endpoint.run(on_owner)

    async def answer(self) -> None:
        if not self.outbound:
            await self._act(lambda c: c.answer(_op(200)))
            return
        waits = {asyncio.ensure_future(self._answered.wait()),
                 asyncio.ensure_future(self._ended.wait())}  # fmt: skip
        try:
            await asyncio.wait(waits, timeout=self.ring_timeout_s, return_when="FIRST_COMPLETED")
        finally:
            for w in waits:
                w.cancel()
        if self._answered.is_set():
            return
        if not self._ended.is_set():
            _log.info("no answer: giving up", call_id=self.call_id, after_s=self.ring_timeout_s)
            await self.hangup("no answer")
        raise CallGoneError(f"call {self.call_id} was not answered")

    async def reject(self, status_code: int, reason: str = "") -> None:
        def _do(c: PjCall) -> None:
            c.local_hangup = True
            c.answer(_op(status_code, reason))

        await self._act(_do)

    async def hangup(self, reason: str = "normal") -> None:
        def _do(c: PjCall) -> None:
            _log.info("hanging up", call_id=self.call_id, reason=reason)
            c.local_hangup = True
            c.hangup(_op(0 if c.answered else 480))

        await self._act(_do, quiet=True)

    async def transfer(self, target: str) -> None:
        def _do(c: PjCall) -> None:
            c.transfer_target = target
            c.xfer(target, pj.CallOpParam(True))

        await self._act(_do)

    async def send_dtmf(self, digits: str) -> None:
        await self._act(lambda c: c.dialDtmf(digits))


def _op(
    status_code: int,
    reason: str = "",
    *,
    retry_after: bool = False,
    headers: tuple[tuple[str, str], ...] = (),
) -> Any:
    prm = pj.CallOpParam(True)
    if status_code:
        prm.statusCode = status_code
    if reason:
        prm.reason = reason
    if retry_after:
        headers = (*headers, ("Retry-After", str(RETRY_AFTER_S)))
    for name, value in headers:
        h = pj.SipHeader()
        h.hName, h.hValue = name, value
        prm.txOption.headers.append(h)
    return prm
