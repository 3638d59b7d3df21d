"""`telephony-bot dial`: a real SIP caller (pjsua2) for people, tests and benches.

It places one call, optionally plays a WAV file and sends RFC 4733 DTMF, records what it
hears, and writes a report: call setup time, negotiated codec, the signaling transport and
whether the media was SRTP, and the energy of every 20 ms frame received — so latency can be
measured from outside the engine. A `sips:` URI or `;transport=tls` calls over TLS (the
server's certificate checked against `tls_ca`, or the system's CAs); `srtp` offers SRTP. Sending and
recording share one media port on one clock, so `play_start_ms` and the received frame
timeline are on the same time axis.

With `say` (several WAVs) it holds a conversation instead: it waits for the far end to speak
and fall silent for `turn_gap` seconds, says the next WAV, and so on; the report's `turns`
give each utterance's start and end on the same time axis.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import math
import re
import ssl
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pjsua2 as pj

from telephony_bot.errors import ConfigError
from telephony_bot.sip import framebuf
from telephony_bot.sip.endpoint_config import (
    SRTP_USE,
    EndpointConfig,
    TlsTransport,
    account_config,
    init_endpoint,
    listen,
    new_endpoint,
)
from telephony_bot.sip.media_port import audio_format
from telephony_bot.sip.pythread import pin
from telephony_bot.sip.sdp_answer import their_answer_srtp

FRAME_MS = 20
SILENCE_DBFS = -50.0


@dataclass(frozen=True)
class DialOptions:
    uri: str
    play: str | None = None
    play_at: float = 0.0
    record: str | None = None
    duration: float = 5.0
    dtmf: str = ""
    dtmf_at: float = 0.5
    report: str | None = None
    codec: str = "PCMU"
    rate: int = 16000
    from_user: str = "dial"
    local_port: int = 0
    rtp_port: int = 0
    timeout: float = 10.0
    headers: tuple[str, ...] = ()
    say: tuple[str, ...] = ()  # WAVs to say in turn, each after the far end spoke and paused
    turn_gap: float = 1.0  # seconds of silence that end the far end's turn
    refuse_transfer: int = 0  # answer a REFER with this status (4xx-6xx) instead of following it
    srtp: str = "off"  # off | optional | mandatory: what SRTP (SDES) the call offers
    tls_ca: str | None = None  # CAs the server's certificate must chain to (default: system)
    tls_verify: bool = True  # False: accept any server certificate (tests, self-signed labs)
    tls_cert: str | None = None  # a client certificate, for servers that ask for one
    tls_key: str | None = None
    local_host: str = ""  # address to call from ("" : 127.0.0.1 for a loopback target, else any)
    auth_user: str = ""  # digest credentials for a 401/407 challenge (password below)
    auth_password: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if self.refuse_transfer and not 400 <= self.refuse_transfer <= 699:
            raise ConfigError(f"--refuse-transfer: a 4xx-6xx status, not {self.refuse_transfer}")
        if self.srtp not in SRTP_USE:
            raise ConfigError(f"--srtp: off, optional or mandatory, not {self.srtp!r}")
        for flag, path in (("--tls-ca", self.tls_ca), ("--tls-cert", self.tls_cert),
                           ("--tls-key", self.tls_key)):  # fmt: skip
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{flag} {path}: no such file")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("--tls-cert and --tls-key go together")

    @property
    def transport(self) -> str:
        """The signaling transport the URI asks for: tls (`sips:`, `;transport=tls`), tcp, udp."""
        uri = self.uri.lower()
        if uri.startswith("sips:") or "transport=tls" in uri:
            return "tls"
        return "tcp" if "transport=tcp" in uri else "udp"

    def tls_transport(self) -> TlsTransport:
        ca = self.tls_ca
        if ca is None and self.tls_verify:
            paths = ssl.get_default_verify_paths()
            ca = paths.cafile or paths.openssl_cafile or ""
        return TlsTransport(
            cert_file=self.tls_cert or "",
            key_file=self.tls_key or "",
            ca_file=ca or "",
            verify_server=self.tls_verify,
        )


def read_wav(path: str, rate: int) -> bytes:
    """Mono PCM16 samples of a WAV file at `rate` (resampled when it differs)."""
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2:
            raise ConfigError(f"{path}: need 16-bit PCM, got {8 * w.getsampwidth()}-bit")
        data = w.readframes(w.getnframes())
        ch, src_rate = w.getnchannels(), w.getframerate()
    if ch > 1:
        data = np.frombuffer(data, "<i2").reshape(-1, ch)[:, 0].astype("<i2").tobytes()
    if src_rate != rate:
        from telephony_bot.media.resample import resample_once

        data = resample_once(data, src_rate, rate)
    return data


def write_wav(path: str, pcm: bytes, rate: int) -> None:
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def frame_dbfs(frame: bytes) -> float:
    x = np.frombuffer(frame, "<i2").astype(np.float64)
    if x.size == 0:
        return -120.0
    rms = math.sqrt(float(np.mean(x * x)))
    return round(20 * math.log10(rms / 32768.0), 1) if rms > 0 else -120.0


class _Port(pj.AudioMediaPort):  # type: ignore[misc]
    def __init__(self, rate: int, play: bytes, play_frame: int) -> None:
        super().__init__()
        fb = framebuf.select()
        self._read, self._write = fb.read, fb.write
        self.frame_bytes = rate * FRAME_MS // 1000 * 2
        self.silence = b"\x00" * self.frame_bytes
        self.rx: list[bytes] = []
        self.play = play
        self.play_frame = play_frame
        self.tx_frames = 0
        self.play_offset = 0
        self.play_start_rx: int | None = None
        self.next_play: bytes | None = None  # set by the caller's thread; taken at a frame

    def say(self, pcm: bytes) -> None:
        self.next_play = pcm

    @property
    def saying(self) -> bool:
        return self.next_play is not None or self.play_offset < len(self.play)

    def onFrameReceived(self, frame: Any) -> None:  # noqa: N802
        pin()
        try:
            ok = frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO
            self.rx.append(self._read(frame.buf) if ok else self.silence)
        except Exception:  # noqa: BLE001 - also while the object is being torn down
            pass

    def onFrameRequested(self, frame: Any) -> None:  # noqa: N802
        pin()
        idx = self.tx_frames
        self.tx_frames += 1
        if self.next_play is not None:  # a new utterance starts with this frame
            self.play, self.play_offset, self.play_frame = self.next_play, 0, idx
            self.play_start_rx = None
            self.next_play = None
        try:
            if self.play and idx >= self.play_frame and self.play_offset < len(self.play):
                if self.play_start_rx is None:
                    self.play_start_rx = len(self.rx)
                chunk = self.play[self.play_offset : self.play_offset + self.frame_bytes]
                self.play_offset += len(chunk)
                chunk = chunk.ljust(self.frame_bytes, b"\x00")
                self._write(frame.buf, chunk)
                frame.size = len(chunk)
                frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
            else:
                frame.type = pj.PJMEDIA_FRAME_TYPE_NONE
                frame.size = 0
        except Exception:  # noqa: BLE001
            frame.type = pj.PJMEDIA_FRAME_TYPE_NONE
            frame.size = 0


class _TransferCall(pj.Call):  # type: ignore[misc]
    """The new call a REFER makes us place; only its outcome is recorded."""

    def __init__(self, acc: Any) -> None:
        super().__init__(acc)
        self.status = 0
        self.confirmed = False

    def onCallState(self, prm: Any) -> None:  # noqa: N802
        pin()
        ci = self.getInfo()
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.confirmed = True
        if ci.lastStatusCode:
            self.status = int(ci.lastStatusCode)


class _Call(pj.Call):  # type: ignore[misc]
    def __init__(self, acc: Any, port: _Port, refuse_transfer: int = 0) -> None:
        super().__init__(acc)
        self.account = acc
        self.port = port
        self.refuse_transfer = refuse_transfer
        self.transfer_target = ""
        self.transfer_call: _TransferCall | None = None
        self.dtmf_received = ""
        self.confirmed_at: float | None = None
        self.disconnected_at: float | None = None
        self.status = 0
        self.reason = ""
        self.codec = ""
        self.srtp: bool | None = None  # the SDP answer took SRTP; None: no answer
        self.rtp: dict[str, int] = {}
        self.connected = False

    def onCallState(self, prm: Any) -> None:  # noqa: N802
        pin()
        ci = self.getInfo()
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED and self.confirmed_at is None:
            self.confirmed_at = time.monotonic()
        if ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.status = int(ci.lastStatusCode)
            self.reason = str(ci.lastReason)
            self.disconnected_at = time.monotonic()
        elif ci.lastStatusCode:
            self.status = int(ci.lastStatusCode)

    def onCallMediaState(self, prm: Any) -> None:  # noqa: N802
        pin()
        ci = self.getInfo()
        for i, mi in enumerate(ci.media):
            if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                si = self.getStreamInfo(i)
                self.codec = f"{si.codecName}/{si.codecClockRate}"
                if not self.connected:
                    am = self.getAudioMedia(i)
                    am.startTransmit(self.port)
                    self.port.startTransmit(am)
                    self.connected = True

    def onCallTsxState(self, prm: Any) -> None:  # noqa: N802
        pin()
        with contextlib.suppress(Exception):
            srtp = their_answer_srtp(prm)
            if srtp is not None:
                self.srtp = srtp

    def onDtmfDigit(self, prm: Any) -> None:  # noqa: N802
        pin()
        self.dtmf_received += str(prm.digit)

    def onCallTransferRequest(self, prm: Any) -> None:  # noqa: N802
        """The far end asked us (REFER) to call someone else: do it, as a phone would, or
        refuse the REFER with `refuse_transfer` (a phone whose user declines)."""
        pin()
        self.transfer_target = str(prm.dstUri)
        if self.refuse_transfer:
            prm.statusCode = self.refuse_transfer
            return
        self.transfer_call = _TransferCall(self.account)
        prm.newCall = self.transfer_call

    def onStreamDestroyed(self, prm: Any) -> None:  # noqa: N802
        pin()
        try:
            st = self.getStreamStat(prm.streamIdx)
            self.rtp = {
                "rx_packets": int(st.rtcp.rxStat.pkt),
                "tx_packets": int(st.rtcp.txStat.pkt),
                "rx_lost": int(st.rtcp.rxStat.loss),
                "rx_jitter_us": int(st.rtcp.rxStat.jitterUsec.mean),
            }
        except Exception:  # noqa: BLE001
            pass


class _Endpoint(pj.Endpoint):  # type: ignore[misc]
    """Keeps what the TLS connection's handshake said (protocol, cipher, certificate check)."""

    def __init__(self) -> None:
        super().__init__()
        self.tls: dict[str, Any] | None = None

    def onTransportState(self, prm: Any) -> None:  # noqa: N802
        pin()
        try:
            ti = prm.tlsInfo
            if ti.isEmpty() or not ti.established and ti.verifyStatus == 0:
                return
            verified = int(ti.verifyStatus) == 0
            self.tls = {
                "established": bool(ti.established) and prm.state == pj.PJSIP_TP_STATE_CONNECTED,
                "cipher": str(ti.cipherName),
                "verified": verified,
                "verify_errors": [] if verified else [str(m) for m in ti.verifyMsgs],
                "peer": str(ti.remoteCertInfo.subjectCn),
            }
        except Exception:  # noqa: BLE001 - the report says less, the call goes on
            pass


def _converse(call: _Call, port: _Port, opts: DialOptions, turns: list[dict[str, int]]) -> str:
    """Say each `opts.say` WAV once the far end has spoken and paused; "local" when done."""
    gap = max(1, int(opts.turn_gap * 1000) // FRAME_MS)
    utterances = [read_wav(p, opts.rate) for p in opts.say]
    deadline = time.monotonic() + opts.duration  # the whole conversation's limit
    heard_from = 0  # rx frame from which the far end's answer is awaited

    def answered_and_paused() -> bool:
        rx = port.rx[heard_from:]
        voiced = [i for i, f in enumerate(rx) if frame_dbfs(f) > SILENCE_DBFS + 5]
        return bool(voiced) and len(rx) - 1 - voiced[-1] >= gap

    queue = list(utterances)
    while call.disconnected_at is None and time.monotonic() < deadline:
        if not port.saying and answered_and_paused():
            if not queue:
                call.hangup(pj.CallOpParam(True))
                return "local"
            pcm = queue.pop(0)
            start = len(port.rx)
            port.say(pcm)
            said_ms = len(pcm) * 1000 // (2 * opts.rate)
            turns.append({"start_ms": start * FRAME_MS, "end_ms": start * FRAME_MS + said_ms})
            heard_from = start + len(pcm) // (2 * opts.rate // 1000 * FRAME_MS)
        time.sleep(0.02)
    if call.disconnected_at is None:
        call.hangup(pj.CallOpParam(True))
        return "timeout"
    return "remote"


def _local_host(uri: str) -> str:
    m = re.match(r"^sips?:(?:[^@]*@)?\[?([^\]:;>]+)", uri)
    if not m:
        raise ConfigError(f"not a SIP URI: {uri!r} (expected e.g. sip:100@127.0.0.1:5060)")
    try:
        return "127.0.0.1" if ipaddress.ip_address(m.group(1)).is_loopback else "0.0.0.0"
    except ValueError:
        return "0.0.0.0"


def dial(opts: DialOptions) -> dict[str, Any]:
    local = opts.local_host or _local_host(opts.uri)
    play = read_wav(opts.play, opts.rate) if opts.play else b""
    for path in opts.say:
        if not Path(path).is_file():
            raise ConfigError(f"--say {path}: no such file")
    ep = new_endpoint(_Endpoint)
    objs: dict[str, Any] = {}
    try:
        return _dial(ep, opts, local, play, objs)
    finally:
        _release(ep, objs)
        ep.libDestroy()


def _release(ep: Any, objs: dict[str, Any]) -> None:
    """Free pjsua2 objects in order, before libDestroy (early or late frees abort), and
    only after pjmedia's clock has stopped, so no media callback is running."""
    call = objs.get("call")
    with contextlib.suppress(Exception):
        if call is not None and call.transfer_call is not None and call.transfer_call.isActive():
            call.transfer_call.hangup(pj.CallOpParam(True))
            time.sleep(0.2)
    with contextlib.suppress(Exception):
        if call is not None and call.isActive():
            call.hangup(pj.CallOpParam(True))
            time.sleep(0.2)
    with contextlib.suppress(Exception):
        ep.audDevManager().setNoDev()
    if call is not None:
        call.transfer_call = None
    del call
    objs.pop("call", None)
    objs.pop("port", None)
    acc = objs.pop("acc", None)
    if acc is not None:
        with contextlib.suppress(Exception):
            acc.shutdown()
    del acc


def _dial(
    ep: Any, opts: DialOptions, local: str, play: bytes, objs: dict[str, Any]
) -> dict[str, Any]:
    config = EndpointConfig(
        user_agent="telephony-bot-dial", clock_rate=opts.rate, codecs=[opts.codec], log_level=1
    )
    init_endpoint(ep, config)
    kind = opts.transport
    listen(ep, kind, local, opts.local_port, opts.tls_transport() if kind == "tls" else None)
    ep.libStart()

    scheme = "sips" if opts.uri.lower().startswith("sips:") else "sip"  # sips: Contact too
    id_uri = f"{scheme}:{opts.from_user}@{local if local != '0.0.0.0' else '127.0.0.1'}"
    acc = objs["acc"] = pj.Account()
    acfg = account_config(id_uri, local, opts.rtp_port, srtp=opts.srtp)
    if opts.auth_user:
        acfg.sipConfig.authCreds.append(
            pj.AuthCredInfo("digest", "*", opts.auth_user, 0, opts.auth_password)
        )
    acc.create(acfg)

    port = objs["port"] = _Port(opts.rate, play, int(opts.play_at * 1000) // FRAME_MS)
    port.createPort("dial", audio_format(opts.rate))
    call = objs["call"] = _Call(acc, port, opts.refuse_transfer)
    prm = pj.CallOpParam(True)
    for h in opts.headers:
        name, _, value = h.partition(":")
        hdr = pj.SipHeader()
        hdr.hName, hdr.hValue = name.strip(), value.strip()
        prm.txOption.headers.append(hdr)

    t0 = time.monotonic()
    try:
        call.makeCall(opts.uri, prm)
    except pj.Error as exc:
        call.status, call.reason = 0, f"cannot place the call: {exc.reason}"
        call.disconnected_at = time.monotonic()
    ended_by = "remote"
    dtmf_sent = ""
    deadline = t0 + opts.timeout
    while call.confirmed_at is None and call.disconnected_at is None:
        if time.monotonic() > deadline:
            ended_by = "timeout"
            call.hangup(pj.CallOpParam(True))
            break
        time.sleep(0.005)
    turns: list[dict[str, int]] = []
    if call.confirmed_at is not None and opts.say:
        ended_by = _converse(call, port, opts, turns)
    elif call.confirmed_at is not None:
        answered_at = call.confirmed_at
        end_at = answered_at + opts.duration
        while call.disconnected_at is None:
            now = time.monotonic()
            if opts.dtmf and not dtmf_sent and now >= answered_at + opts.dtmf_at:
                call.dialDtmf(opts.dtmf)
                dtmf_sent = opts.dtmf
            if now >= end_at:
                ended_by = "local"
                call.hangup(pj.CallOpParam(True))
                break
            time.sleep(0.005)
    stop = time.monotonic() + 3
    while call.disconnected_at is None and time.monotonic() < stop:
        time.sleep(0.01)
    time.sleep(0.05)

    rx = b"".join(port.rx)
    energy = [frame_dbfs(f) for f in port.rx]
    report: dict[str, Any] = {
        "uri": opts.uri,
        "answered": call.confirmed_at is not None,
        "sip_status": call.status,
        "reason": call.reason,
        "setup_ms": round((call.confirmed_at - t0) * 1000, 1) if call.confirmed_at else None,
        "codec": call.codec,
        "transport": kind,
        "tls": ep.tls if kind == "tls" else None,  # the handshake: protocol, cipher, checks
        "srtp": call.srtp,  # None: no audio was negotiated
        "rate": opts.rate,
        "ended_by": ended_by,
        "duration_ms": len(port.rx) * FRAME_MS,
        "play_start_ms": (
            port.play_start_rx * FRAME_MS if port.play_start_rx is not None else None
        ),
        "dtmf_sent": dtmf_sent,
        "dtmf_received": call.dtmf_received,
        "frame_ms": FRAME_MS,
        "energy_dbfs": energy,
        "heard_ms": sum(FRAME_MS for e in energy if e > SILENCE_DBFS),
        "rtp": call.rtp,
        "turns": turns,
        "transfer": (
            {
                "target": call.transfer_target,
                "answered": bool(call.transfer_call and call.transfer_call.confirmed),
                "sip_status": call.transfer_call.status if call.transfer_call else 0,
                "refused": opts.refuse_transfer or None,  # our answer to the REFER
            }
            if call.transfer_target
            else None
        ),
    }
    if opts.record:
        write_wav(opts.record, rx, opts.rate)
    if opts.report:
        Path(opts.report).write_text(json.dumps(report, indent=1))
    return report
