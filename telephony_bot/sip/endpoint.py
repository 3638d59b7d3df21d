"""The owner of one pjsua2 Endpoint per process, on its own thread.

One thread creates the Endpoint, starts the transports and the account, and then runs
the actions asyncio asks for (`await endpoint.run(fn)`), one at a time. PJSIP's own worker
thread (threadCnt = 1) delivers SIP callbacks; pjmedia's clock thread delivers media
frames. Events reach asyncio through `loop.call_soon_threadsafe`. Every pjsua2 object
(Call, AudioMediaPort, Account) is created and released on PJSIP's threads or the owner
thread, and kept referenced until its call is over, so no object dies early or after
`libDestroy` (either aborts the process).
"""

from __future__ import annotations

import asyncio
import dataclasses
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import pjsua2 as pj

from telephony_bot import log
from telephony_bot.admission import Admission
from telephony_bot.callport import CallEvent, CallOffered
from telephony_bot.config import SipSettings
from telephony_bot.errors import SipError
from telephony_bot.sip import framebuf, native_port
from telephony_bot.sip.call import DialogIds, PjCall, SipCall, _op
from telephony_bot.sip.early import CallTimers, overdue
from telephony_bot.sip.endpoint_config import (
    ANY_HOST,
    EndpointConfig,
    TlsTransport,
    account_config,
    init_endpoint,
    listen,
    new_endpoint,
)
from telephony_bot.sip.gate import SipGate
from telephony_bot.sip.inbound import InboundGuard
from telephony_bot.sip.malformed import MalformedPackets
from telephony_bot.sip.media_port import BridgePortPool
from telephony_bot.sip.native_port import NativePortPool
from telephony_bot.sip.pjlog import PjLogWriter
from telephony_bot.sip.pythread import pin
from telephony_bot.sip.registration import trunk_of_request
from telephony_bot.sip.registrations import Registrations
from telephony_bot.sip.sipmsg import ack_for_2xx, parse_request, uri_user, via_transport
from telephony_bot.sip.tls_refusals import TlsRefusals
from telephony_bot.sip.trunk_accounts import (
    TrunkAccount,
    TrunkLine,
    calling_config,
    registering_config,
)

T = TypeVar("T")
# The trunk an incoming request belongs to, from its source address ("IP:port") and its
# whole message; None: no trunk (the engine's defaults apply).
TrunkOf = Callable[[str, str], str | None]
_log = log.get("sip")

_FORWARDED_HEADERS = ("User-Agent", "Diversion", "P-Asserted-Identity", "Referred-By")
_INTERNAL_PREFIX = "x-telephony-bot-"  # the front door's notes to the worker, not the call's
SWEEP_S = 0.25  # how often the owner thread looks for calls past their timers
BYE_GRACE_S = 2.0  # a BYE after a missing ACK: answered by then, or the session is ended


class SipAccount(pj.Account):  # type: ignore[misc]
    def __init__(self, endpoint: SipEndpoint) -> None:
        super().__init__()
        self.endpoint = endpoint

    def onIncomingCall(self, prm: Any) -> None:  # noqa: N802
        pin()
        self.endpoint._incoming(self, prm)


class _Endpoint(pj.Endpoint):  # type: ignore[misc]
    """The pjsua2 Endpoint, with the account choice for incoming requests handed to `select`."""

    def __init__(self) -> None:
        super().__init__()
        self.select: Callable[[Any, int], int] | None = None
        # a TLS connection dropped by the certificate check: (far end, flags, messages)
        self.on_cert_refused: Callable[[str, int, list[str]], None] | None = None

    def onTransportState(self, prm: Any) -> None:  # noqa: N802
        pin()
        try:
            ti = prm.tlsInfo
            if ti.isEmpty() or int(ti.verifyStatus) == 0 or int(prm.lastError) == 0:
                return  # not TLS, the certificate passed, or it failed and was let through
            if self.on_cert_refused is not None:
                msgs = [str(m) for m in ti.verifyMsgs]
                self.on_cert_refused(str(ti.remoteAddr), int(ti.verifyStatus), msgs)
        except Exception as exc:  # noqa: BLE001 - PJSIP's own report stands
            _log.error("TLS state report failed", error=str(exc))

    def onSelectAccount(self, prm: Any) -> None:  # noqa: N802
        pin()
        if self.select is None:
            return
        try:
            prm.accountIndex = self.select(prm.rdata, int(prm.accountIndex))
        except Exception as exc:  # noqa: BLE001 - PJSIP's own choice stands
            _log.error("account selection failed", error=str(exc))


class SipEndpoint:
    def __init__(
        self,
        settings: SipSettings,
        loop: asyncio.AbstractEventLoop,
        on_call: Callable[[SipCall], None],
        lines: Mapping[str, TrunkLine] | None = None,
        registrations: Registrations | None = None,
        trunk_of: TrunkOf | None = None,
        admission: Admission | None = None,
        timers: CallTimers | None = None,
    ) -> None:
        """`trunk_of` tells which trunk an incoming call belongs to, so it gets that trunk's
        SRTP mode (`settings.srtp`); without it every call gets the default mode."""
        self.settings = settings
        self.trunk_of = trunk_of
        self.loop = loop
        self.on_call = on_call
        self.lines = dict(lines or {})  # the trunks it registers with (trunk_accounts.py)
        self.registrations = registrations or Registrations(self.lines, register=False)
        self._line_tokens = {line.token: name for name, line in self.lines.items()}
        self.timers = timers or CallTimers()
        self.guard = InboundGuard(
            admission or Admission(max_calls=settings.max_calls),
            self._load_of,
            max_calls=settings.max_calls,
            draining=lambda: self.draining,
            line_trunk=lambda uri: trunk_of_request(uri, self._line_tokens),
        )
        self.gate = SipGate()
        self.malformed = MalformedPackets(self.gate.send_raw)
        self._terminate_at: list[tuple[float, DialogIds]] = []  # owner thread only
        self.frames = framebuf.select()
        self.draining = False
        self._queue: queue.Queue[tuple[Callable[[], Any], asyncio.Future[Any] | None] | None] = (
            queue.Queue()
        )
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._lock = threading.Lock()
        self._calls: dict[int, PjCall] = {}  # every live pjsua2 call, by object id
        self._ep: Any = None
        self._account: SipAccount | None = None  # the default: calls of the default SRTP mode
        # One account per SRTP mode a call can get: PJSIP decides SRTP (and answers 488 to an
        # offer the mode refuses) per account, before the call reaches the engine.
        self._mode_accounts: dict[str, SipAccount] = {}
        # per caller id and sips-ness, for outbound calls
        self._out_accounts: dict[tuple[str, bool], SipAccount] = {}
        self._trunk_reg: dict[str, TrunkAccount] = {}  # registering account, by trunk
        self._trunk_call: dict[str, TrunkAccount] = {}  # account placing its calls, by trunk
        self._log_writer: PjLogWriter | None = None
        self.tls_refusals = TlsRefusals()
        self.codecs: list[str] = []
        self.ports: BridgePortPool | NativePortPool = self._port_pool()

    def _port_pool(self) -> BridgePortPool | NativePortPool:
        s = self.settings
        if s.media_port != "python" and not s.media_loopback:
            if native_port.available():
                return NativePortPool(s.media_port_rate, self.loop)
            if s.media_port == "native":
                raise SipError(f"native media ports unavailable: {native_port.why_not()}")
            _log.warning("native media ports unavailable, using pjsua2 AudioMediaPort",
                         reason=native_port.why_not())  # fmt: skip
        return BridgePortPool(self.frames, s.media_port_rate)

    # ---- lifecycle ----

    async def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="sip-owner", daemon=True)
        self._thread.start()
        await asyncio.to_thread(self._ready.wait)
        if self._start_error is not None:
            raise SipError(f"SIP stack failed to start: {self._start_error}") from None

    async def stop(self) -> None:
        """Hang up what is left, destroy the Endpoint and end the owner thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join, 10)
        self._thread = None

    @property
    def running(self) -> bool:
        """The owner thread is up: the SIP stack takes calls (unless draining)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def active_calls(self) -> int:
        with self._lock:
            return sum(1 for c in self._calls.values() if not c.ended)

    def _load_of(self, ip: str) -> tuple[int, int]:
        """Calls live or being set up, and those of `ip` answered but not ACKed (any thread)."""
        with self._lock:
            live = [c for c in self._calls.values() if not c.ended]
        unacked = sum(
            1 for c in live
            if c.source_ip == ip and c.timing.answered_at is not None and not c.timing.confirmed
        )  # fmt: skip
        return len(live), unacked

    def refusals(self) -> dict[str, int]:
        """INVITEs refused so far, by reason (admission's `why`, and `malformed`)."""
        counts = dict(self.guard.refused)
        if self.malformed.count:
            counts["malformed"] = self.malformed.count
        return counts

    # ---- asyncio -> owner thread ----

    async def run(self, fn: Callable[[], T]) -> T:
        if self._thread is None:
            raise SipError("SIP endpoint is not running")
        fut: asyncio.Future[T] = self.loop.create_future()
        self._queue.put((fn, fut))
        return await fut

    def emit(self, call: SipCall, ev: CallEvent) -> None:
        """Hand a call event to asyncio (any thread)."""
        try:
            self.loop.call_soon_threadsafe(call.deliver, ev)
        except RuntimeError:  # loop closed during shutdown
            pass

    def release_later(self, pjcall: PjCall) -> None:
        """Drop our references to an ended call on the owner thread, after its callback returns."""
        self._queue.put((lambda: self._release(pjcall), None))

    def _release(self, pjcall: PjCall) -> None:
        with self._lock:
            self._calls.pop(id(pjcall), None)
        if pjcall.facade is not None:
            pjcall.facade.detach()
        if pjcall.port is not None:
            self.ports.release(pjcall.port)  # pooled: reused, never freed mid-callback
            pjcall.port = None

    # ---- owner thread ----

    def _main(self) -> None:
        try:
            self._create()
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._start_error = exc
            self._ready.set()
            self._destroy()
            return
        self._ready.set()
        next_sweep = time.monotonic() + SWEEP_S
        while True:
            try:
                item = self._queue.get(timeout=SWEEP_S)
            except queue.Empty:
                item = ()
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + SWEEP_S
                self._sweep()
            if item == ():
                continue
            if item is None:
                break
            fn, fut = item
            try:
                result = fn()
            except Exception as exc:  # noqa: BLE001 - handed back to the awaiting task
                if fut is not None:
                    self._resolve(fut, None, exc)
                else:
                    _log.error("sip action failed", error=str(exc))
                del fn, fut, item
                continue
            if fut is not None:
                self._resolve(fut, result, None)
            # Drop this thread's references now: a pjsua2 object kept alive by a stale local
            # would otherwise be freed after libDestroy, which aborts the process.
            del fn, fut, item, result
        self._destroy()

    def _resolve(self, fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
        def _set() -> None:
            if fut.done():
                return
            if exc is not None:
                fut.set_exception(exc if isinstance(exc, SipError) else SipError(str(exc)))
            else:
                fut.set_result(result)

        try:
            self.loop.call_soon_threadsafe(_set)
        except RuntimeError:
            pass

    def _sweep(self) -> None:
        """End calls past their timers: answered but never ACKed, or never answered."""
        now = time.monotonic()
        with self._lock:
            calls = [c for c in self._calls.values() if not c.ended]
        for c in calls:
            late = overdue(c.timing, self.timers, now)
            if late is None:
                continue
            status, reason, what = late
            _log.warning(what, call_id=c.call_id, source=c.source_ip, seconds=round(c.age(now), 1))
            c.timing.expired = True
            if status == 0:
                self._end_unacked(c, now)
                continue
            try:
                c.local_hangup = True
                c.hangup(_op(status, reason))
            except Exception as exc:  # noqa: BLE001 - already going away
                _log.debug("timer hangup failed", call_id=c.call_id, error=str(exc))
        del calls
        while self._terminate_at and self._terminate_at[0][0] <= now:
            _, ids = self._terminate_at.pop(0)
            self.gate.terminate(ids.call_id, ids.local_tag, ids.remote_tag, 408)

    def _end_unacked(self, c: PjCall, now: float) -> None:
        """A 200 OK never ACKed: PJSIP holds back its BYE, and the call's pjsua slot, until an
        ACK comes or 32 s pass. The worker hangs up, stands in for the missing ACK (sent to
        itself), so the BYE goes out now — through the front door, which then stops counting
        the call — and ends the session outright a little later if the BYE is not answered."""
        d = c.dialog
        try:
            contact = str(c.getInfo().localContact).strip().strip("<>")
            c.local_hangup = True
            c.hangup(_op(0))
        except Exception as exc:  # noqa: BLE001 - already going away
            _log.debug("timer hangup failed", call_id=c.call_id, error=str(exc))
            return
        if d is None or not d.local_tag or not self.gate.active:
            return
        s = self.settings
        host = s.host if s.host not in ANY_HOST else "127.0.0.1"
        ack = ack_for_2xx(
            request_uri=contact,
            from_hdr=d.from_hdr,
            to_hdr=f"{d.to_hdr};tag={d.local_tag}",
            call_id=d.call_id,
            cseq=d.cseq,
            via=f"{host}:{s.port}",
        )
        self.gate.send_raw(host, s.port, ack)
        self._terminate_at.append((now + BYE_GRACE_S, d))

    def _create(self) -> None:
        s = self.settings
        self._ep = ep = new_endpoint(_Endpoint)
        ep.on_cert_refused = self._cert_refused
        self._log_writer = PjLogWriter(s.max_calls, self.malformed)
        self.codecs = init_endpoint(
            ep,
            EndpointConfig(
                user_agent=s.user_agent,
                clock_rate=s.bridge_rate,
                codecs=("opus/48000",) + s.codecs,
                log_level=max(2, s.pjsip_log_level),
                log_writer=self._log_writer,
                max_calls=s.max_calls,
            ),
        )
        for kind in s.transports:
            listen(ep, kind, s.host, s.port)
        if s.tls is not None:
            listen(ep, "tls", s.host, s.tls.port, _tls_transport(s))
        ep.libStart()
        self._install_gate()
        self.ports.fill(s.max_calls + 2)  # spare ports cover calls still being released
        _log.info(
            "media ports ready",
            kind=self.ports.kind,
            rate=s.media_port_rate,
            ports=self.ports.size,
        )

        policy = s.srtp
        for mode in policy.modes:
            acc = SipAccount(self)
            cfg = self._account_config("bot", mode, secure=s.tls is not None)
            acc.create(cfg, mode == policy.default)
            self._mode_accounts[mode] = acc
        self._account = self._mode_accounts[policy.default]
        if len(self._mode_accounts) > 1:
            ep.select = self._select_account
        self._create_trunk_accounts()

    def _select_account(self, rdata: Any, chosen: int) -> int:
        """PJSIP thread: the account of the SRTP mode of the request's trunk. PJSIP's own
        choice stands for a request it gave to an account not ours to choose among (one a
        registration brought in)."""
        ours = {acc.getId(): acc for acc in self._mode_accounts.values()}
        if chosen not in ours or self.trunk_of is None:
            return chosen
        trunk = self.trunk_of(str(rdata.srcAddress), str(rdata.wholeMsg))
        return int(self._mode_accounts[self.settings.srtp.mode_for(trunk)].getId())

    def _create_trunk_accounts(self) -> None:
        """A registering account per trunk (when this worker registers) and one placing the
        trunk's calls (the same one, unless behind the front door): see trunk_accounts."""
        s = self.settings
        for name, line in self.lines.items():
            t = line.reg.transport  # tls needs sip.tls (the config check), and --tls-port
            if not (t in s.transports or t == "tls" and s.tls is not None):
                listening = ",".join(s.transports) + (",tls" if s.tls is not None else "")
                raise SipError(
                    f"trunk {name} registers over {t} (trunks.{name}.register.transport), "
                    f"which this worker does not listen on ({listening}; --transports, sip.tls, "
                    "--tls-port)"
                )
            if s.front_door or not s.register_trunks:
                # Created first: PJSIP gives an incoming call to the first of the accounts
                # that match it equally well, and behind the front door the registering
                # account's Contact is the front door, which a call's dialog must not have.
                call = TrunkAccount(name, self._registrar_answer, self._incoming)
                call.create(calling_config(line, s, line.id_uri), False)
                self._trunk_call[name] = call
            if s.register_trunks:
                reg = TrunkAccount(name, self._registrar_answer, self._incoming)
                reg.create(registering_config(line, s, s.front_door), False)
                self._trunk_reg[name] = reg
                self._trunk_call.setdefault(name, reg)

    def _cert_refused(self, remote: str, status: int, messages: list[str]) -> None:
        """PJSIP thread: a TLS connection dropped because the far end's certificate failed
        the check (sip.tls.ca_file, verify_server; verify_peer for clients)."""
        why = self.tls_refusals.refused(remote, status, messages, time.monotonic())
        _log.warning("TLS certificate refused", remote=remote, reason=why,
                     detail="; ".join(messages))  # fmt: skip

    def _registrar_answer(self, name: str, code: int, reason: str, expires: int) -> None:
        """A registrar's final answer (PJSIP thread) → the registrations, on the loop. A
        failed TLS certificate check is reported with what the check found."""
        line = self.lines.get(name)
        if line is not None:
            reason = self.tls_refusals.explain(reason, line.next_hop_port, time.monotonic())
        try:
            self.loop.call_soon_threadsafe(self.registrations.on_answer, name, code, reason,
                                           expires)  # fmt: skip
        except RuntimeError:  # loop closed during shutdown
            pass

    async def on_trunk_account(self, name: str, fn: Callable[[Any], T]) -> T:
        """Run `fn(account)` on the owner thread with trunk `name`'s registering account."""

        def on_owner() -> T:
            acc = self._trunk_reg.get(name)
            if acc is None:
                raise SipError(f"trunk {name} is not registered by this worker")
            return fn(acc)

        return await self.run(on_owner)

    def _install_gate(self) -> None:
        """The admission gate in front of pjsua, proven by a self-check INVITE."""
        s = self.settings
        gate = self.gate
        if gate.install(self.guard.decide, self.malformed.on_dropped) and gate.prove(
            s.host, s.port, s.transports[0]
        ):
            _log.info("admission gate ready", **self._admission_summary())
            return
        gate.uninstall()
        _log.warning(
            "admission gate unavailable: INVITEs are checked after PJSIP has set up their "
            "media, so a flood can exhaust its sockets",
            reason=gate.why_not,
        )

    def _admission_summary(self) -> dict[str, Any]:
        a = self.guard.admission
        lim = a.limits
        return {
            "trunks": ",".join(t.name for t in a.trunks) or "none",
            "sources": "trunks" if a.trunks else ("any" if lim.allow_any else "private"),
            "rate": lim.rate,
            "per_source_rate": lim.per_source_rate,
            "setup_budget": a.budget,
            "trusted_proxies": ",".join(str(p) for p in lim.trusted_proxies) or "none",
        }

    def _destroy(self) -> None:
        ep = self._ep
        if ep is None:
            return
        self.draining = True  # new INVITEs get 503 while the stack goes down
        try:
            ep.hangupAllCalls()
        except Exception:  # noqa: BLE001
            pass
        deadline = time.monotonic() + 3.0
        while self.active_calls and time.monotonic() < deadline:
            time.sleep(0.05)
        # Release ended calls queued for release, then every remaining reference.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None and item[1] is None:
                try:
                    item[0]()
                except Exception:  # noqa: BLE001
                    pass
        # Stop pjmedia's clock before any port object is freed: no callback can be running.
        try:
            ep.audDevManager().setNoDev()
        except Exception:  # noqa: BLE001
            pass
        with self._lock:
            calls = list(self._calls.values())
            self._calls.clear()
        for c in calls:
            c.port = None
        del calls
        self.ports.destroy()
        trunk_accounts = {id(a): a for a in [*self._trunk_reg.values(), *self._trunk_call.values()]}
        for acc in [*self._out_accounts.values(), *self._mode_accounts.values(),
                    *trunk_accounts.values()]:  # fmt: skip
            try:
                acc.shutdown()
            except Exception:  # noqa: BLE001
                pass
        del trunk_accounts
        self._out_accounts.clear()
        self._mode_accounts.clear()
        self._trunk_reg.clear()
        self._trunk_call.clear()
        self._account = None
        try:
            ep.libDestroy()  # the gate answers INVITEs 503 (draining) until the very end
        except Exception:  # noqa: BLE001
            pass
        self.gate.uninstall(destroyed=True)
        self._ep = None

    # ---- outbound calls (asyncio → owner thread) ----

    async def make_call(
        self, uri: str, *, caller: str, called: str, trunk: str | None = None
    ) -> SipCall:
        """Dial `uri` with `caller` as the From user, or through registered `trunk`'s account
        (its user, credentials and proxy); the SipCall's `answer()` waits for the far end
        to pick up. SipError when the worker is full, draining or PJSIP refuses."""
        if self.draining:
            raise SipError("the worker is shutting down")

        def on_owner() -> SipCall:
            with self._lock:
                active = sum(1 for c in self._calls.values() if not c.ended and c.facade)
            if active >= self.settings.max_calls:
                raise SipError(f"the worker is full ({active} of {self.settings.max_calls} calls)")
            secure = uri.lower().startswith("sips:")
            if trunk is not None:
                account: SipAccount | TrunkAccount | None = self._trunk_call.get(trunk)
                if account is None:
                    raise SipError(f"no registered trunk named {trunk!r}")
                from_uri = self.lines[trunk].id_uri
            else:
                account = self._account_for(caller, secure)
                from_uri = self._id_uri(caller, secure)
            pjcall = PjCall(self, account, pj.PJSUA_INVALID_ID)
            offer = CallOffered(
                call_id=uuid.uuid4().hex[:16],
                sip_call_id="",
                called=called,
                caller=caller,
                from_uri=from_uri,
                to_uri=uri,
                source="",
                trunk=trunk or "",
            )
            facade = SipCall(self, pjcall, offer, outbound=True)
            pjcall.facade = facade
            with self._lock:
                self._calls[id(pjcall)] = pjcall
            try:
                pjcall.makeCall(uri, pj.CallOpParam(True))
            except pj.Error as exc:
                with self._lock:
                    self._calls.pop(id(pjcall), None)
                facade.detach()
                raise SipError(f"cannot call {uri}: {exc.info()}") from None
            _log.info("outgoing call", call_id=offer.call_id, uri=uri, caller=caller,
                      trunk=trunk)  # fmt: skip
            return facade

        return await self.run(on_owner)

    def _id_uri(self, user: str, secure: bool = False) -> str:
        """`sip:user@host:port`, or with `secure` (TLS listening) `sips:user@host:tls-port`:
        an account whose identity is `sips:` puts `sips:` Contacts in the dialogs that need
        them (a `sips:` call), and `sip:` ones in all others."""
        s = self.settings
        host = s.host if s.host not in ANY_HOST else "127.0.0.1"
        if secure and s.tls is not None:
            return f"sips:{user}@{host}:{s.tls.port}"
        return f"sip:{user}@{host}:{s.port}"

    def _account_config(self, user: str, srtp: str | None = None, secure: bool = False) -> Any:
        s = self.settings
        mode = srtp or s.srtp.default
        uri = self._id_uri(user, secure)
        return account_config(uri, s.host, s.rtp_port, s.rtp_port_range, mode)

    def _account_for(self, user: str, secure: bool = False) -> SipAccount:
        """An account whose identity (From) is `user` (owner thread; kept until shutdown)."""
        if user == "bot" and self._account is not None:
            return self._account  # sips: when TLS listens, which serves both kinds of call
        acc = self._out_accounts.get((user, secure))
        if acc is None:
            if len(self._out_accounts) >= 32:
                raise SipError("too many distinct caller ids for outbound calls (32)")
            acc = SipAccount(self)
            acc.create(self._account_config(user, secure=secure), False)
            self._out_accounts[(user, secure)] = acc
        return acc

    # ---- incoming calls (PJSIP thread) ----

    def _incoming(self, account: Any, prm: Any) -> None:
        pjcall = PjCall(self, account, prm.callId)
        with self._lock:
            self._calls[id(pjcall)] = pjcall
            active = sum(1 for c in self._calls.values() if not c.ended and c.facade)
        try:
            offer, raw_headers = self._offer(prm)
        except Exception as exc:  # noqa: BLE001 - a request we cannot read is refused, not fatal
            _log.warning("rejecting unreadable INVITE", error=str(exc))
            pjcall.answer(_op(400, "Bad Request"))  # released when DISCONNECTED
            return
        pjcall.source_ip = self.guard.caller_address(_host_of(offer.source), raw_headers)
        pjcall.dialog = _dialog_ids(raw_headers)
        if self.draining:
            _log.info("call refused with 503: worker is shutting down", call_id=offer.call_id)
            pjcall.answer(_op(503, "Service Unavailable", retry_after=True))
            return
        if not self.gate.active:  # the gate decided already, before media; else decide here
            verdict = self.guard.check(
                _host_of(offer.source), _port_of(offer.source), "INVITE", raw_headers,
                offer.trunk,  # a registered trunk's, by the line token of its Request-URI
            )  # fmt: skip
            if not verdict.admitted:
                pjcall.answer(_op(verdict.status, verdict.reason, headers=verdict.headers))
                return
        trunk = self.guard.trunk_of(offer.sip_call_id)
        if trunk:
            offer = dataclasses.replace(offer, trunk=trunk)
        if active >= self.settings.max_calls:
            _log.warning(
                "call rejected with 486: worker is full",
                call_id=offer.call_id,
                active=active,
                max_calls=self.settings.max_calls,
            )
            pjcall.answer(_op(486, "Busy Here"))  # released when DISCONNECTED
            return
        facade = SipCall(self, pjcall, offer)
        pjcall.facade = facade
        pjcall.answer(_op(180))
        _log.info(
            "incoming call",
            call_id=offer.call_id,
            called=offer.called,
            caller=offer.caller,
            source=offer.source,
            transport=offer.transport,
            srtp=self._mode_of(account),
            sip_call_id=offer.sip_call_id,
            trunk=offer.trunk or None,
        )
        try:
            self.loop.call_soon_threadsafe(self.on_call, facade)
        except RuntimeError:
            pass

    def _offer(self, prm: Any) -> tuple[CallOffered, dict[str, str]]:
        rdata = prm.rdata
        req = parse_request(str(rdata.wholeMsg))
        headers = {k: req.headers[k] for k in _FORWARDED_HEADERS if k in req.headers}
        headers.update(
            {k: v for k, v in req.headers.items()
             if k.lower().startswith("x-") and not k.lower().startswith(_INTERNAL_PREFIX)}
        )  # fmt: skip
        from_hdr = req.headers.get("From", "")
        to_hdr = req.headers.get("To", "")
        offer = CallOffered(
            call_id=uuid.uuid4().hex[:16],
            sip_call_id=req.headers.get("Call-ID", ""),
            called=uri_user(req.request_uri) or uri_user(to_hdr),
            caller=uri_user(from_hdr),
            from_uri=from_hdr,
            to_uri=to_hdr,
            source=str(rdata.srcAddress),
            headers=headers,
            transport=via_transport(req.headers.get("Via", "")),
            trunk=trunk_of_request(req.request_uri, self._line_tokens),
        )
        return offer, req.headers

    def _mode_of(self, account: SipAccount | TrunkAccount) -> str:
        if isinstance(account, TrunkAccount):  # a registered trunk's: its trunk's mode
            return self.settings.srtp.mode_for(account.name)
        return next((m for m, a in self._mode_accounts.items() if a is account), "?")


def _host_of(source: str) -> str:
    """`127.0.0.1:5060` / `[::1]:5060` → the address."""
    host = source.rsplit(":", 1)[0] if source.count(":") == 1 or "]" in source else source
    return host.strip("[]")


def _port_of(source: str) -> int:
    tail = source.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _dialog_ids(headers: dict[str, str]) -> DialogIds | None:
    """An incoming INVITE's From, To, Call-ID and CSeq number (None if one is unreadable)."""
    cseq = headers.get("CSeq", "").split()
    if not cseq or not cseq[0].isdigit() or not headers.get("Call-ID"):
        return None
    return DialogIds(headers["Call-ID"], headers.get("From", ""), headers.get("To", ""),
                     int(cseq[0]))  # fmt: skip


def _tls_transport(s: SipSettings) -> TlsTransport:
    tls = s.tls
    assert tls is not None
    return TlsTransport(
        cert_file=str(tls.cert_file),
        key_file=str(tls.key_file),
        ca_file=tls.trust_file(),
        verify_server=tls.verify_server,
        verify_client=tls.verify_peer,
    )
